"""Property tests (hypothesis) of the loaders against damaged input: a clear error, or the same result as the clean file.

Each test writes a clean file in a supported format, damages it the way files get damaged in practice (cut short at any
byte, a UTF-8 byte-order mark in front, ids that are not integers, NaN among the labels) and asserts that the loader
either returns exactly what it returns for the clean file or raises a ValueError/TypeError whose message is one line
and names the file or the argument.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from fico_itr.core import EvaluationSplit, check_labels
from fico_itr.data import load_array, load_fico_labels, load_karpathy, load_split, load_vse_precomp, save_split
from fico_itr.labels import coco_labels_from_instances, load_query2label
from fico_itr.ranking import Positives

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])
A = np.arange(60, dtype=np.float32).reshape(12, 5) / 7


@pytest.fixture(scope='module')
def clean(tmp_path_factory):
    "One clean file per array format, each holding `A` (the .mat files under the key 'A')."
    d = tmp_path_factory.mktemp('clean')
    np.save(d / 'a.npy', A)
    np.savez(d / 'a.npz', A=A)
    np.savez_compressed(d / 'c.npz', A=A)
    with h5py.File(d / 'a.h5', 'w') as f: f['A'] = A
    with h5py.File(d / 'c.h5', 'w') as f: f.create_dataset('A', data=A, compression='gzip')
    torch.save({'A': torch.from_numpy(A)}, d / 'a.pt')
    scipy.io.savemat(d / 'a.mat', {'A': A})
    scipy.io.savemat(d / 'c.mat', {'A': A}, do_compression=True)
    with h5py.File(d / 'v73.mat', 'w', userblock_size=512) as f: f['A'] = A.T
    with open(d / 'v73.mat', 'r+b') as f: f.write(b'MATLAB 7.3 MAT-file'.ljust(116) + b'\x00' * 8 + b'\x00\x02IM')
    return d


def clear_error(fn, name: str):
    "Run fn; None if it raised a clear error (ValueError/TypeError, one line, naming `name`), else its result."
    try: return fn()
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert '\n' not in msg, f'not one line: {msg}'
        assert name in msg, f'{name!r} not named in: {msg}'
        return None


FILES = ['a.npy', 'a.npz', 'c.npz', 'a.h5', 'c.h5', 'a.pt', 'a.mat', 'c.mat', 'v73.mat']


@SETTINGS
@given(st.sampled_from(FILES), st.floats(0, 1, exclude_max=True), st.booleans())
def test_truncated_array_file(clean, name, fraction, mmap):
    "Cut short at any byte, every array format gives a one-line error naming the file, never a different array."
    whole = (clean / name).read_bytes()
    with tempfile.TemporaryDirectory() as t:
        cut = Path(t) / f'cut_{name}'
        cut.write_bytes(whole[:int(fraction * len(whole))])
        got = clear_error(lambda: np.array(load_array(cut, None if name.endswith('.npy') else 'A', mmap=mmap)),
                          f'cut_{name}')
        if got is not None: np.testing.assert_array_equal(got, A)


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from(['ids', 'caps']), st.booleans())
def test_vse_text_cut_or_bom(cut_at, which, bom):
    "A VSE ids or captions file cut at any byte, or with a byte-order mark, loads as the clean split or is refused."
    ids = ''.join(f'{i}\n' * 5 for i in (391895, 522418, 184613, 318219))
    caps = ''.join(f'caption {j} of image {j // 5}\n' for j in range(20))
    with tempfile.TemporaryDirectory() as t:
        d = Path(t)
        (d / 'test_ids.txt').write_text(ids); (d / 'test_caps.txt').write_text(caps)
        ref = load_vse_precomp(d, 'test')
        target = d / f'test_{which}.txt'
        data = target.read_bytes()
        data = data[:cut_at % (len(data) + 1)]
        target.write_bytes((b'\xef\xbb\xbf' if bom else b'') + data)
        got = clear_error(lambda: load_vse_precomp(d, 'test'), f'test_{which}.txt')
        if got is not None:
            np.testing.assert_array_equal(got.cap2img, ref.cap2img)
            assert got.image_ids == ref.image_ids and got.captions == ref.captions


@SETTINGS
@given(st.floats(0, 1, exclude_max=True), st.booleans())
def test_karpathy_json_cut_or_bom(fraction, bom):
    "A Karpathy JSON file cut at any byte, or with a byte-order mark, loads as the clean split or is refused."
    data = {'images': [{'filepath': 'val2014', 'filename': f'COCO_val2014_{i:012d}.jpg', 'cocoid': i, 'split': 'test',
                        'sentences': [{'raw': f'a photo {i} {k}', 'sentid': 10 * i + k} for k in range(2)]}
                       for i in (1, 2, 3)]}
    whole = json.dumps(data).encode()
    with tempfile.TemporaryDirectory() as t:
        p = Path(t) / 'dataset_coco.json'
        p.write_bytes(whole); ref = load_karpathy(p)
        p.write_bytes((b'\xef\xbb\xbf' if bom else b'') + whole[:int(fraction * len(whole)) if fraction else len(whole)])
        got = clear_error(lambda: load_karpathy(p), 'dataset_coco.json')
        if got is not None:
            np.testing.assert_array_equal(got.cap2img, ref.cap2img)
            assert got.image_ids == ref.image_ids and got.captions == ref.captions


@SETTINGS
@given(st.floats(0, 1, exclude_max=True))
def test_saved_split_cut(fraction):
    "A split file written by save_split, cut short, is refused naming the file."
    sp = EvaluationSplit.uniform(6, 2, labels=np.eye(6, 3, dtype=bool), name='toy')
    with tempfile.TemporaryDirectory() as t:
        p = save_split(sp, Path(t) / 'toy.npz')
        whole = p.read_bytes(); p.write_bytes(whole[:int(fraction * len(whole))])
        assert clear_error(lambda: load_split(p), 'toy.npz') is None


ids_values = st.one_of(st.integers(0, 6), st.floats(-1, 6), st.sampled_from([np.nan, np.inf, 1e300, 2.0**62]),
                       st.text('0123456789-. ', max_size=4), st.booleans())


@SETTINGS
@given(st.lists(ids_values, min_size=1, max_size=5))
def test_coco_ids_integral_or_refused(tmp_path, ids):
    "`image_ids` of any kind: an error naming `image_ids`, or labels of exactly the integer ids given."
    ann = {'images': [{'id': i} for i in range(5)], 'categories': [],
           'annotations': [{'id': i, 'image_id': i, 'category_id': 1 + i} for i in range(5)]}
    p = tmp_path / 'instances.json'; p.write_text(json.dumps(ann))
    got = clear_error(lambda: coco_labels_from_instances(p, ids, allow_unlabelled=True), 'image_ids')
    if got is None: return
    as_int = [int(x) for x in ids]   # accepted: every id is an integer (or integral float, or digit string)
    for x, i in zip(ids, as_int): assert not isinstance(x, bool) and float(x) == i
    assert (got.sum(1) == [1 if i < 5 else 0 for i in as_int]).all()


@SETTINGS
@given(st.lists(st.lists(st.one_of(st.integers(-2, 9), st.floats(-2, 9)), max_size=4), min_size=1, max_size=4),
       st.sampled_from(['list', 'dict', 'sets', 'tuples']))
def test_positives_integral_or_refused(lists, form):
    "Positives in any accepted form: the same relevance as the clean integer lists, or an error naming `positives`."
    clean = all(float(x).is_integer() and 0 <= x < 8 for p in lists for x in p)
    given_ = {'list': lists, 'dict': dict(enumerate(lists)), 'sets': [set(p) for p in lists],
              'tuples': [tuple(p) for p in lists]}[form]
    got = clear_error(lambda: Positives(given_, 8), 'positives')
    assert (got is not None) == clean
    if got is not None:
        want = np.zeros((len(lists), 8), bool)
        for q, p in enumerate(lists): want[q, [int(x) for x in p]] = True
        np.testing.assert_array_equal(got.block(0, len(lists)), want)
        np.testing.assert_array_equal(got.counts(0, len(lists)), want.sum(1))


@SETTINGS
@given(st.integers(0, 2_999), st.sampled_from([np.nan, np.inf, 0.3, -1.0, 2.0, 1.0, 0.0]), st.booleans())
def test_label_values_every_row(row, value, as_file):
    "A non-0/1 value (or NaN) anywhere in the labels, as an array or a memmap, is refused; 0 and 1 are read as given."
    L = (np.arange(3_000 * 4).reshape(3_000, 4) % 3 == 0).astype(np.float32)
    L[row, 2] = value
    with tempfile.TemporaryDirectory() as t:
        if as_file:
            np.save(Path(t) / 'L.npy', L); arr = np.load(Path(t) / 'L.npy', mmap_mode='r')
        else: arr = L
        got = clear_error(lambda: check_labels(arr, len(L), 'labels'), '`labels`')
        assert (got is None) == (value not in (0.0, 1.0))
        if got is not None: np.testing.assert_array_equal(got, L.astype(bool))
        del arr


@SETTINGS
@given(st.sampled_from([np.nan, 0.5, -1.0, 1.0]), st.sampled_from(['.npy', '.mat']))
def test_label_files_nan_or_fraction(value, ext):
    "NaN or a fraction in a label file is refused naming the file; 0/1 labels load as given."
    L = np.eye(5, 3)
    L[4, 1] = value
    with tempfile.TemporaryDirectory() as t:
        p = Path(t) / f'labels{ext}'
        np.save(p, L) if ext == '.npy' else scipy.io.savemat(p, {'LAll': L})
        got = clear_error(lambda: load_fico_labels(p, key=None if ext == '.npy' else 'LAll'), f'labels{ext}')
        assert (got is None) == (value != 1.0)
        got = clear_error(lambda: load_query2label(p, n_classes=None), f'labels{ext}') if value != 0.5 else None
        if value == 1.0: np.testing.assert_array_equal(got, L.astype(bool))
