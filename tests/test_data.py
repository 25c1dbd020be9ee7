"""Loaders of fico_itr.data on the project's real reference files and on fixtures written here in the real formats.

Real files: the folder `shared` beside the repository (shared/data/README.md says what each is). Fixtures: Karpathy and
LAVIS JSON, MATLAB v5 (scipy.io.savemat) and v7.3 (h5py, MATLAB's header and column-major layout), .npz/.h5/.pt.
Every error path is checked for its message; where two files are involved, both must be named.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import torch

from fico_itr.core import EvaluationSplit
from fico_itr.evaluate import evaluate
from fico_itr.similarity import HashCodes
from fico_itr.data import (check_rows, hashing_split, image_id_from_file, load_array, load_fico_labels, load_karpathy,
                           load_lavis_annotations, load_mirflickr25k, load_split, load_vse_image_features,
                           load_vse_precomp, mat_version, save_split, split_source, with_labels)

from _helpers import DATA, raises
COCO, F30K, MIR = DATA / 'coco_karpathy_test', DATA / 'f30k_karpathy_test', DATA / 'mirflickr25k'


def write_mat73(path, arrays: dict, compression=None):
    "A MATLAB v7.3 file as MATLAB writes it: 512-byte MAT header (userblock), HDF5, every array stored transposed."
    with h5py.File(path, 'w', userblock_size=512) as f:
        for k, v in arrays.items():
            v = np.asarray(v)
            f.create_dataset(k, data=(v.astype(np.uint8) if v.dtype == bool else v).T, compression=compression)
            cls = {'float64': 'double', 'float32': 'single', 'bool': 'logical'}.get(v.dtype.name, v.dtype.name)
            f[k].attrs['MATLAB_class'] = np.bytes_(cls)
    head = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .'
    with open(path, 'r+b') as f: f.write(head.ljust(116) + b'\x00' * 8 + b'\x00\x02IM')


@pytest.fixture(scope='module')
def coco():
    return load_vse_precomp(COCO, 'testall')


@pytest.fixture(scope='module')
def f30k():
    return load_vse_precomp(F30K, 'test')


# ----------------------------------------------------------------------------------------------------------------------
# VSE / SCAN precomputed layout, real files
# ----------------------------------------------------------------------------------------------------------------------
def test_coco_testall_and_dev(coco):
    caps = (COCO / 'testall_caps.txt').read_text().splitlines()
    ids = [int(s) for s in (COCO / 'testall_ids.txt').read_text().split()]
    assert (coco.n_images, coco.n_captions) == (5000, 25000)
    assert (coco.captions_per_image == 5).all()
    np.testing.assert_array_equal(coco.cap2img, np.repeat(np.arange(5000), 5))
    assert coco.image_ids == ids[::5] and coco.image_ids[:2] == [391895, 60623]
    assert coco.captions == [c.strip() for c in caps]
    assert coco.image_files is None and coco.caption_ids is None
    assert coco.name == 'coco_karpathy_test/testall'
    assert 'testall_caps.txt' in coco.source and 'testall_ids.txt' in coco.source
    dev = load_vse_precomp(COCO, 'dev', name='coco-dev')
    assert (dev.n_images, dev.n_captions, dev.name) == (1000, 5000, 'coco-dev')
    assert not set(dev.image_ids) & set(coco.image_ids)


def test_f30k_test_with_id_mapping(f30k):
    mapping = json.loads((F30K / 'id_mapping.json').read_text())
    assert (f30k.n_images, f30k.n_captions) == (1000, 5000)
    assert f30k.image_ids[:3] == [25, 34, 51]
    assert f30k.image_files == [mapping[str(i)] for i in f30k.image_ids]
    assert f30k.image_files[0] == '1007129816.jpg'
    assert 'id_mapping.json' in f30k.source


def test_coco_1k_folds_are_the_vse_blocks(coco):
    caps = [c.strip() for c in (COCO / 'testall_caps.txt').read_text().splitlines()]
    ids = [int(s) for s in (COCO / 'testall_ids.txt').read_text().split()]
    folds = list(coco.folds(5))
    assert len(folds) == 5
    for f, (sub, imgs, capidx) in enumerate(folds):
        assert (sub.n_images, sub.n_captions) == (1000, 5000)
        np.testing.assert_array_equal(imgs, np.arange(1000 * f, 1000 * f + 1000))
        np.testing.assert_array_equal(capidx, np.arange(5000 * f, 5000 * f + 5000))
        assert sub.captions == caps[5000 * f:5000 * f + 5000]
        assert sub.image_ids == ids[5000 * f:5000 * f + 5000:5]
        np.testing.assert_array_equal(sub.cap2img, np.repeat(np.arange(1000), 5))


def _vse_i2t(sims):
    "VSE++ evaluation.py i2t (argsort[::-1], 5 captions per image), with a stable sort so that ties are deterministic."
    ranks = np.zeros(sims.shape[0])
    for index in range(sims.shape[0]):
        inds = np.argsort(sims[index], kind='stable')[::-1]
        ranks[index] = min(np.where(inds == i)[0][0] for i in range(5 * index, 5 * index + 5))
    return ranks


def _vse_t2i(sims):
    "VSE++ evaluation.py t2i."
    sims = sims.T
    ranks = np.zeros(sims.shape[0])
    for c in range(sims.shape[0]):
        inds = np.argsort(sims[c], kind='stable')[::-1]
        ranks[c] = np.where(inds == c // 5)[0][0]
    return ranks


def _vse_numbers(ranks):
    r = [100.0 * (ranks < k).mean() for k in (1, 5, 10)]
    return r + [np.floor(np.median(ranks)) + 1, ranks.mean() + 1]


def test_coco_1k_fold_mean_equals_vse_code_on_consecutive_blocks(coco):
    "evaluate(..., conventions='vse') on the loaded split = VSE++'s code on sims[1000f:, 5000f:] blocks of the files."
    rng = np.random.default_rng(0)
    # multiples of 1/16 in 6-D: every dot product is exact in float32 and float64; ties exercise the tie rule too
    ims = (rng.integers(-8, 9, (5000, 6)) / 16).astype(np.float32)
    cap = (rng.integers(-8, 9, (25000, 6)) / 16).astype(np.float32)
    cap[::5] += ims  # the first caption of each image leans towards it, so that R@K is not near zero
    cap[::5] = np.round(cap[::5] * 16) / 16
    res = evaluate(coco, images=ims, captions=cap, measure='inner_product', conventions='vse')
    fold_name = [d for d in res.table.dataset.unique() if '5-fold mean' in d]
    assert len(fold_name) == 1 and '1000 images each' in fold_name[0]
    vse = {'i2t': [], 't2i': []}
    for f in range(5):
        sims = ims[1000 * f:1000 * (f + 1)].astype(np.float64) @ cap[5000 * f:5000 * (f + 1)].astype(np.float64).T
        vse['i2t'].append(_vse_numbers(_vse_i2t(sims))); vse['t2i'].append(_vse_numbers(_vse_t2i(sims)))
    for d in ('i2t', 't2i'):
        want = np.mean(vse[d], axis=0)
        got = [res.get(m, d, dataset=fold_name[0]) for m in ('R@1', 'R@5', 'R@10', 'MedR', 'MeanR')]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    assert res.get('R@10', 'i2t', dataset=fold_name[0]) > 5  # the check is not vacuous


# ----------------------------------------------------------------------------------------------------------------------
# VSE layout: fixtures and errors
# ----------------------------------------------------------------------------------------------------------------------
def test_vse_errors_name_both_files(tmp_path):
    (tmp_path / 'test_caps.txt').write_text('a dog\na cat\na bird\n')
    (tmp_path / 'test_ids.txt').write_text('1\n1\n')
    raises(lambda: load_vse_precomp(tmp_path, 'test'), 'test_caps.txt has 3 lines', 'test_ids.txt has 2')
    raises(lambda: load_vse_precomp(tmp_path, 'testall'), 'testall_caps.txt does not exist', 'splits found there: test',
           exc=FileNotFoundError)
    raises(lambda: load_vse_precomp(tmp_path / 'nope'), '`folder`', exc=FileNotFoundError)
    raises(lambda: load_vse_precomp(tmp_path / 'test_caps.txt'), 'is a file')
    raises(lambda: load_vse_precomp(3), '`folder` must be a path', exc=TypeError)
    (tmp_path / 'test_ids.txt').write_text('1\n\n2\n')
    raises(lambda: load_vse_precomp(tmp_path, 'test'), 'test_ids.txt line 2 is empty')
    (tmp_path / 'test_ids.txt').write_text('1\n1\n2\n')
    sp = load_vse_precomp(tmp_path, 'test')
    np.testing.assert_array_equal(sp.cap2img, [0, 0, 1]); assert sp.image_ids == [1, 2]
    raises(lambda: load_vse_precomp(tmp_path, 'test', captions_per_image=2), 'does not hold blocks of 2')
    (tmp_path / 'id_mapping.json').write_text(json.dumps({'1': 'one.jpg'}))
    raises(lambda: load_vse_precomp(tmp_path, 'test'), 'test_ids.txt', 'id_mapping.json', "first: 2")
    (tmp_path / 'id_mapping.json').write_text(json.dumps({'1': 'one.jpg', '2': 'two.jpg'}))
    assert load_vse_precomp(tmp_path, 'test').image_files == ['one.jpg', 'two.jpg']
    (tmp_path / 'id_mapping.json').write_text('{not json')
    raises(lambda: load_vse_precomp(tmp_path, 'test'), 'id_mapping.json is not valid JSON')
    (tmp_path / 'id_mapping.json').unlink()
    (tmp_path / 'test_ids.txt').unlink()
    raises(lambda: load_vse_precomp(tmp_path, 'test'), 'test_ids.txt does not exist', 'pass captions_per_image=k',
           exc=FileNotFoundError)
    raises(lambda: load_vse_precomp(tmp_path, 'test', captions_per_image=2), 'not a multiple of captions_per_image=2')
    for bad in (0, 2.5, '3', True):
        raises(lambda: load_vse_precomp(tmp_path, 'test', captions_per_image=bad), '`captions_per_image` must be a positive int')
    np.save(tmp_path / 'test_ims.npy', np.ones((3, 2)))   # VSE++ without ids: one row per caption line
    assert load_vse_image_features(tmp_path, 'test', captions_per_image=3)[1] == 3
    (tmp_path / 'test_ims.npy').unlink()
    assert load_vse_precomp(tmp_path, 'test', captions_per_image=3).n_images == 1
    (tmp_path / 'test_caps.txt').write_bytes('caf\xe9\n'.encode('latin-1'))
    raises(lambda: load_vse_precomp(tmp_path, 'test', captions_per_image=1), 'test_caps.txt is not UTF-8', 'iconv')


def test_vse_ids_first_appearance_and_string_ids(tmp_path):
    (tmp_path / 'x_caps.txt').write_text('a\r\nb\r\nc\r\nd\r\n')
    (tmp_path / 'x_ids.txt').write_text('img9\nimg4\nimg9\n007\n')
    sp = load_vse_precomp(tmp_path, 'x')
    np.testing.assert_array_equal(sp.cap2img, [0, 1, 0, 2])
    assert sp.image_ids == ['img9', 'img4', '007'] and sp.captions == ['a', 'b', 'c', 'd']


def _f30k_copy(tmp_path):
    d = tmp_path / 'f30k'; d.mkdir()
    for n in ('test_caps.txt', 'test_ids.txt', 'id_mapping.json'): (d / n).write_bytes((F30K / n).read_bytes())
    return d


def test_vse_image_features_layouts(tmp_path):
    d = _f30k_copy(tmp_path)
    feats = np.random.default_rng(0).standard_normal((1000, 3, 4)).astype(np.float32)  # region features, 3-D
    np.save(d / 'test_ims.npy', feats)
    ims, per = load_vse_image_features(d, 'test')
    assert per == 1 and isinstance(ims, np.memmap); np.testing.assert_array_equal(ims, feats)
    ims, per = load_vse_image_features(d, 'test', mmap=False)
    assert per == 1 and not isinstance(ims, np.memmap)
    np.save(d / 'test_ims.npy', feats.repeat(5, 0))
    ims, per = load_vse_image_features(d, 'test')
    assert per == 5 and ims.shape == (1000, 3, 4) and isinstance(ims, np.memmap)
    np.testing.assert_array_equal(ims, feats)
    np.save(d / 'test_ims.npy', np.random.default_rng(1).standard_normal((5000, 4)))
    raises(lambda: load_vse_image_features(d, 'test'), 'rows of the first image differ', 'test_ims.npy', 'test_ids.txt')
    for rows in (999, 2500, 5001):
        np.save(d / 'test_ims.npy', np.zeros((rows, 4)))
        raises(lambda: load_vse_image_features(d, 'test'), f'test_ims.npy has {rows:,} rows', 'test_caps.txt',
               'test_ids.txt', 'one row per image (1,000) or one per caption line (5,000)')
    (d / 'test_ims.npy').unlink()
    raises(lambda: load_vse_image_features(d, 'test'), 'test_ims.npy does not exist', exc=FileNotFoundError)


def test_vse_image_features_uneven_captions(tmp_path):
    (tmp_path / 't_caps.txt').write_text('a\nb\nc\n'); (tmp_path / 't_ids.txt').write_text('1\n1\n2\n')
    np.save(tmp_path / 't_ims.npy', np.zeros((3, 2)))
    raises(lambda: load_vse_image_features(tmp_path, 't'), 't_ims.npy', 't_ids.txt', 'same number per image')
    np.save(tmp_path / 't_ims.npy', np.ones((2, 2)))
    assert load_vse_image_features(tmp_path, 't')[1] == 1


# ----------------------------------------------------------------------------------------------------------------------
# Karpathy JSON
# ----------------------------------------------------------------------------------------------------------------------
def _karpathy_coco(cocoid, split, sentids, folder='val2014'):
    return {'filepath': folder, 'filename': f'COCO_{folder}_{cocoid:012d}.jpg', 'imgid': sentids[0], 'split': split,
            'cocoid': cocoid, 'sentids': list(sentids),
            'sentences': [{'tokens': ['a', 'man'], 'raw': f'A man {s}.', 'imgid': sentids[0], 'sentid': s}
                          for s in sentids]}


def _karpathy_f30k(imgid, split, filename):
    sids = list(range(5 * imgid, 5 * imgid + 5))
    return {'filename': filename, 'imgid': imgid, 'split': split, 'sentids': sids,
            'sentences': [{'tokens': ['x'], 'raw': f'Flickr {s}', 'imgid': imgid, 'sentid': s} for s in sids]}


def test_karpathy_coco(tmp_path):
    p = tmp_path / 'dataset_coco.json'
    p.write_text(json.dumps({'dataset': 'coco', 'images': [
        _karpathy_coco(391895, 'test', [770337, 771687, 772707, 776154, 781998]),
        _karpathy_coco(57870, 'restval', [1, 2, 3, 4, 5]),
        _karpathy_coco(9, 'train', [6, 7, 8, 9, 10], 'train2014'),
        _karpathy_coco(60623, 'test', [11, 12, 13, 14, 15, 16]),
        _karpathy_coco(184613, 'val', [17, 18, 19, 20, 21])]}))
    sp = load_karpathy(p)
    assert (sp.n_images, sp.n_captions, sp.name) == (2, 11, 'dataset_coco/test')
    np.testing.assert_array_equal(sp.cap2img, [0] * 5 + [1] * 6)
    assert sp.image_ids == [391895, 60623]
    assert sp.caption_ids == [770337, 771687, 772707, 776154, 781998, 11, 12, 13, 14, 15, 16]
    assert sp.captions[0] == 'A man 770337.' and sp.image_files[1] == 'val2014/COCO_val2014_000000060623.jpg'
    assert sp.source == str(p)
    tr = load_karpathy(p, ('train', 'restval'), name='coco-train')
    assert tr.image_ids == [57870, 9] and tr.image_files[1] == 'train2014/COCO_train2014_000000000009.jpg'
    assert load_karpathy(p, 'val').image_ids == [184613]
    raises(lambda: load_karpathy(p, 'testall'), "`split` 'testall' is not a Karpathy split", 'restval')


def test_karpathy_f30k_ids_match_vse_indices(tmp_path, f30k):
    "Flickr30K: imgid is the index the VSE files use, and filename matches id_mapping.json."
    mapping = json.loads((F30K / 'id_mapping.json').read_text())
    p = tmp_path / 'dataset_flickr30k.json'
    imgs = [_karpathy_f30k(i, 'test' if i in (25, 34) else 'train', mapping[str(i)]) for i in (0, 25, 30, 34)]
    p.write_text(json.dumps({'dataset': 'flickr30k', 'images': imgs}))
    sp = load_karpathy(p)
    assert sp.image_ids == [25, 34] == f30k.image_ids[:2]
    assert sp.image_files == f30k.image_files[:2]
    assert sp.caption_ids[:2] == [125, 126]


def test_karpathy_errors(tmp_path):
    p = tmp_path / 'k.json'
    p.write_text(json.dumps([1, 2]))
    raises(lambda: load_karpathy(p), 'k.json is not a Karpathy split file')
    p.write_text(json.dumps({'images': [_karpathy_coco(1, 'train', [1])]}))
    raises(lambda: load_karpathy(p), "no image in split 'test'", "{'train': 1}")
    bad = _karpathy_coco(1, 'test', [1]); del bad['filename']
    p.write_text(json.dumps({'images': [bad]}))
    raises(lambda: load_karpathy(p), "no 'filename' field", 'k.json')
    bad = _karpathy_coco(1, 'test', [1]); bad['sentences'] = []; bad['sentids'] = []
    p.write_text(json.dumps({'images': [bad]}))
    raises(lambda: load_karpathy(p), 'has no sentences')
    bad = _karpathy_coco(1, 'test', [1, 2]); bad['sentids'] = [2, 1]
    p.write_text(json.dumps({'images': [bad]}))
    raises(lambda: load_karpathy(p), "'sentids' [2, 1] disagree")
    raises(lambda: load_karpathy(tmp_path / 'none.json'), 'does not exist', exc=FileNotFoundError)


# ----------------------------------------------------------------------------------------------------------------------
# LAVIS / BLIP annotations
# ----------------------------------------------------------------------------------------------------------------------
def test_lavis_coco_and_flickr(tmp_path):
    coco = [{'image': 'val2014/COCO_val2014_000000391895.jpg', 'caption': [f'c{i}' for i in range(5)]},
            {'image': 'val2014/COCO_val2014_000000060623.jpg', 'caption': [f'd{i}' for i in range(7)]},
            {'image': 'val2014/COCO_val2014_000000483108.jpg', 'caption': [f'e{i}' for i in range(5)]}]
    p = tmp_path / 'coco_karpathy_test.json'; p.write_text(json.dumps(coco))
    sp = load_lavis_annotations(p)
    assert (sp.n_images, sp.n_captions, sp.name) == (3, 17, 'coco_karpathy_test')
    assert list(sp.captions_per_image) == [5, 7, 5] and sp.captions[5] == 'd0'
    assert sp.image_ids == [391895, 60623, 483108] and sp.image_files[0] == 'val2014/COCO_val2014_000000391895.jpg'
    fl = [{'image': 'flickr30k-images/1007129816.jpg', 'caption': ['x'] * 5},
          {'image': 'flickr30k-images/1009434119.jpg', 'caption': ['y'] * 5}]
    p = tmp_path / 'flickr30k_test.json'; p.write_text(json.dumps(fl))
    sp = load_lavis_annotations(p, name='f30k-lavis')
    assert sp.image_ids == [1007129816, 1009434119] and sp.name == 'f30k-lavis'
    assert image_id_from_file('train2014/COCO_train2014_000000000009.jpg') == 9
    assert image_id_from_file('images/cat.jpg') is None


def test_lavis_train_layout_and_errors(tmp_path):
    p = tmp_path / 'a.json'
    p.write_text(json.dumps([{'image': 'x/cat.jpg', 'caption': 'a'}, {'image': 'x/dog.jpg', 'caption': 'b'},
                             {'image': 'x/cat.jpg', 'caption': 'c'}]))
    sp = load_lavis_annotations(p)
    np.testing.assert_array_equal(sp.cap2img, [0, 1, 0]); assert sp.image_ids is None
    assert sp.image_files == ['x/cat.jpg', 'x/dog.jpg'] and sp.captions == ['a', 'b', 'c']
    cases = [({'images': []}, 'expected a non-empty JSON list'), ([], 'expected a non-empty JSON list'),
             ([{'image': 'a.jpg'}], "entry 0 of"),
             ([{'image': 'a.jpg', 'caption': []}], 'needs a non-empty list of caption strings'),
             ([{'image': 'a.jpg', 'caption': ['x']}, {'image': 'a.jpg', 'caption': ['y']}], "lists image 'a.jpg' more than once"),
             ([{'image': 'a.jpg', 'caption': ['x']}, {'image': 'b.jpg', 'caption': 'y'}], 'mixes entries')]
    for data, frag in cases:
        p.write_text(json.dumps(data))
        raises(lambda: load_lavis_annotations(p), frag, 'a.json')


# ----------------------------------------------------------------------------------------------------------------------
# load_array: every container
# ----------------------------------------------------------------------------------------------------------------------
A = np.arange(12, dtype=np.float32).reshape(4, 3)
B = np.arange(10, dtype=np.int16).reshape(2, 5)


def test_npy_npz(tmp_path):
    np.save(tmp_path / 'a.npy', A)
    a = load_array(tmp_path / 'a.npy'); assert isinstance(a, np.memmap); np.testing.assert_array_equal(a, A)
    assert not isinstance(load_array(str(tmp_path / 'a.npy'), mmap=False), np.memmap)
    raises(lambda: load_array(tmp_path / 'a.npy', 'x'), 'is a .npy file holding one array')
    np.save(tmp_path / 'o.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
    raises(lambda: load_array(tmp_path / 'o.npy', mmap=False), 'o.npy holds Python objects and cannot be loaded without pickle')
    np.savez(tmp_path / 'one.npz', A); np.testing.assert_array_equal(load_array(tmp_path / 'one.npz'), A)
    np.savez_compressed(tmp_path / 'ab.npz', images=A, captions=B)
    np.testing.assert_array_equal(load_array(tmp_path / 'ab.npz', 'captions'), B)
    raises(lambda: load_array(tmp_path / 'ab.npz'), "holds 2 arrays ('images', 'captions')", 'pass `key`')
    raises(lambda: load_array(tmp_path / 'ab.npz', 'texts'), "`key` 'texts' is not in", "'images', 'captions'")
    np.savez(tmp_path / 'obj.npz', x=np.array([None], dtype=object))
    raises(lambda: load_array(tmp_path / 'obj.npz'), "'x' in", 'without pickle')


def test_h5(tmp_path):
    with h5py.File(tmp_path / 'e.hdf5', 'w') as f:
        f['emb/images'] = A
        f.create_dataset('emb/captions', data=B, compression='gzip')
        f['names'] = np.array([b'a', b'b'])
    a = load_array(tmp_path / 'e.hdf5', 'emb/images')
    assert isinstance(a, np.memmap); np.testing.assert_array_equal(a, A)   # contiguous: mapped
    b = load_array(tmp_path / 'e.hdf5', 'emb/captions')
    assert not isinstance(b, np.memmap); np.testing.assert_array_equal(b, B)   # compressed: read
    raises(lambda: load_array(tmp_path / 'e.hdf5'), "holds 3 datasets", "'emb/captions', 'emb/images', 'names'")
    raises(lambda: load_array(tmp_path / 'e.hdf5', 'emb'), "`key` 'emb' is not in")
    raises(lambda: load_array(tmp_path / 'e.hdf5', 'names'), "has dtype |S1", 'only numeric arrays')
    with h5py.File(tmp_path / 'one.h5', 'w') as f: f['x'] = B
    np.testing.assert_array_equal(load_array(tmp_path / 'one.h5', mmap=False), B)


def test_pt(tmp_path):
    torch.save(torch.from_numpy(A), tmp_path / 't.pt')
    np.testing.assert_array_equal(load_array(tmp_path / 't.pt'), A)
    raises(lambda: load_array(tmp_path / 't.pt', 'images'), 'holds a single tensor, not a dict')
    torch.save({'images': torch.from_numpy(A), 'captions': torch.from_numpy(B), 'epoch': 3}, tmp_path / 'd.pth')
    np.testing.assert_array_equal(load_array(tmp_path / 'd.pth', 'captions'), B)
    raises(lambda: load_array(tmp_path / 'd.pth'), "holds 2 tensors ('images', 'captions')")
    raises(lambda: load_array(tmp_path / 'd.pth', 'epoch'), "`key` 'epoch' is not in")
    torch.save([torch.from_numpy(A), torch.from_numpy(B)], tmp_path / 'l.pt')
    np.testing.assert_array_equal(load_array(tmp_path / 'l.pt', 1), B)
    torch.save(torch.from_numpy(A).bfloat16(), tmp_path / 'bf.pt')
    bf = load_array(tmp_path / 'bf.pt'); assert bf.dtype == np.float32; np.testing.assert_array_equal(bf, A)
    torch.save(torch.from_numpy(A), tmp_path / 'legacy.pt', _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(load_array(tmp_path / 'legacy.pt'), A)   # cannot be mapped: read
    torch.save({'opt': torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)}, tmp_path / 'obj.pt')
    raises(lambda: load_array(tmp_path / 'obj.pt'), 'weights_only=True', 'obj.pt')
    torch.save(3, tmp_path / 'int.pt')
    raises(lambda: load_array(tmp_path / 'int.pt'), 'holds a int')   # file content: a ValueError


def test_mat_v5_and_v73(tmp_path):
    L = np.random.default_rng(0).random((7, 3)) < 0.4
    X = np.random.default_rng(1).standard_normal((7, 5, 2))
    scipy.io.savemat(tmp_path / 'v5.mat', {'LAll': L.astype(np.uint8), 'X': X})
    scipy.io.savemat(tmp_path / 'v7.mat', {'LAll': L.astype(np.uint8)}, do_compression=True)
    write_mat73(tmp_path / 'v73.mat', {'LAll': L.astype(np.uint8), 'X': X})
    write_mat73(tmp_path / 'v73z.mat', {'LAll': L, 'X': X}, compression='gzip')
    assert [mat_version(tmp_path / f) for f in ('v5.mat', 'v7.mat', 'v73.mat')] == ['5', '5', '7.3']
    with h5py.File(tmp_path / 'v73.mat', 'r') as f:
        assert f['LAll'].shape == (3, 7) and f['X'].shape == (2, 5, 7)   # what h5py alone sees
    for name in ('v5.mat', 'v73.mat', 'v73z.mat'):
        np.testing.assert_array_equal(load_array(tmp_path / name, 'LAll'), L.astype(np.uint8))
        np.testing.assert_array_equal(load_array(tmp_path / name, 'X'), X)
        raises(lambda: load_array(tmp_path / name), "holds 2 variables ('LAll', 'X')", 'pass `key`')
        raises(lambda: load_array(tmp_path / name, 'YAll'), "`key` 'YAll' is not in", "'LAll', 'X'")
    assert load_array(tmp_path / 'v73z.mat', 'LAll').dtype == bool   # MATLAB logical
    np.testing.assert_array_equal(load_array(tmp_path / 'v7.mat'), L.astype(np.uint8))
    scipy.io.savemat(tmp_path / 'sp.mat', {'S': __import__('scipy.sparse').sparse.csc_matrix(L.astype(float))})
    np.testing.assert_array_equal(load_array(tmp_path / 'sp.mat'), L.astype(float))
    scipy.io.savemat(tmp_path / 'cell.mat', {'C': np.array(['ab', 'cd'], dtype=object)})
    raises(lambda: load_array(tmp_path / 'cell.mat'), "variable 'C'", 'only numeric arrays')
    (tmp_path / 'junk.mat').write_bytes(b'\x00' * 200)
    raises(lambda: load_array(tmp_path / 'junk.mat'), 'junk.mat is truncated or corrupt: it cannot be read as a MATLAB file')
    with h5py.File(tmp_path / 'grp.mat', 'w') as f: f.create_group('S')['x'] = A; f['T'] = A   # no MAT header
    assert mat_version(tmp_path / 'grp.mat') == '7.3'   # any HDF5 file named .mat is read as v7.3: transposed
    np.testing.assert_array_equal(load_array(tmp_path / 'grp.mat', 'T'), A.T)
    raises(lambda: load_array(tmp_path / 'grp.mat', 'S'), "'S' in", 'is an HDF5 group', 'full(X)')


def test_unknown_and_missing(tmp_path):
    (tmp_path / 'a.csv').write_text('1,2')
    raises(lambda: load_array(tmp_path / 'a.csv'), "unknown array format '.csv'", '.npy, .npz, .h5, .hdf5, .pt, .pth, .mat')
    raises(lambda: load_array(tmp_path / 'a.npy'), '`path`', 'does not exist', exc=FileNotFoundError)
    raises(lambda: load_array(tmp_path), 'is a folder')


# ----------------------------------------------------------------------------------------------------------------------
# labels, MIRFlickr-25K, hashing split
# ----------------------------------------------------------------------------------------------------------------------
def test_fico_labels(tmp_path, f30k, coco):
    L = np.random.default_rng(0).random((1000, 17)) < 0.2
    scipy.io.savemat(tmp_path / 'flickr30k-karpathy-test-lall.mat', {'LAll': L.astype(np.uint8)})
    write_mat73(tmp_path / 'coco-karpathy-testall-lall.mat', {'LAll': L.astype(np.float64)})
    for n in ('flickr30k-karpathy-test-lall.mat', 'coco-karpathy-testall-lall.mat'):
        got = load_fico_labels(tmp_path / n, f30k)
        assert got.dtype == bool and got.shape == (1000, 17); np.testing.assert_array_equal(got, L)
    sp = with_labels(f30k, tmp_path / 'flickr30k-karpathy-test-lall.mat')
    assert sp.labels.shape == (1000, 17) and 'with labels from' in sp.source and 'test_ids.txt' in sp.source
    raises(lambda: load_fico_labels(tmp_path / 'flickr30k-karpathy-test-lall.mat', EvaluationSplit.uniform(999, 5)),
           'flickr30k-karpathy-test-lall.mat has 1,000 rows', "split 'split' (built in memory) has 999 images")
    raises(lambda: with_labels(coco, tmp_path / 'coco-karpathy-testall-lall.mat'), 'coco-karpathy-testall-lall.mat',
           'has 1,000 rows', 'testall_caps.txt', 'testall_ids.txt', '5,000 images')
    write_mat73(tmp_path / 't.mat', {'LAll': L.T.astype(np.uint8)})
    raises(lambda: load_fico_labels(tmp_path / 't.mat', f30k), 'looks transposed', 't.mat', 'test_ids.txt')
    scipy.io.savemat(tmp_path / 's.mat', {'LAll': L * 0.7})
    raises(lambda: load_fico_labels(tmp_path / 's.mat'), 'is not multi-hot', 's.mat')
    scipy.io.savemat(tmp_path / 'n.mat', {'LAll': np.where(L, np.nan, 0.0)})
    raises(lambda: load_fico_labels(tmp_path / 'n.mat'), 'contains NaN or Inf')
    scipy.io.savemat(tmp_path / 'y.mat', {'YAll': L})
    raises(lambda: load_fico_labels(tmp_path / 'y.mat'), "`key` 'LAll' is not in", "'YAll'")
    np.save(tmp_path / 'l.npy', L[0].astype(np.uint8))
    raises(lambda: load_fico_labels(tmp_path / 'l.npy', key=None), 'labels are a 2-D')
    raises(lambda: with_labels(f30k, L[:10]), '`labels` (an array passed in memory, not a file) has 10 rows', 'test_ids.txt')


def test_mirflickr25k_real():
    assert mat_version(MIR / 'mirflickr25k-lall.mat') == mat_version(MIR / 'mirflickr25k-yall.mat') == '5'
    mir = load_mirflickr25k(MIR)
    assert len(mir) == 20015 and mir.labels.shape == (20015, 24) and mir.labels.dtype == bool
    assert mir.texts.shape == (20015, 1386) and mir.images is None
    assert mir.labels.any(1).all() and set(np.unique(mir.texts)) <= {0, 1}
    assert set(mir.files) == {'labels', 'texts'}
    sp = mir.as_split()
    assert (sp.n_images, sp.n_captions) == (20015, 20015) and sp.labels.shape == (20015, 24)
    assert 'mirflickr25k-lall.mat' in split_source(sp)


def test_mirflickr25k_v73_equals_v5(tmp_path):
    mir = load_mirflickr25k(MIR)
    d = tmp_path / 'mir'; d.mkdir()
    write_mat73(d / 'mirflickr25k-lall.mat', {'LAll': mir.labels.astype(np.float64)})
    write_mat73(d / 'MIRFLICKR25K-YALL.mat', {'YAll': mir.texts}, compression='gzip')
    m = load_mirflickr25k(d)
    np.testing.assert_array_equal(m.labels, mir.labels); np.testing.assert_array_equal(m.texts, mir.texts)
    write_mat73(d / 'mirflickr25k-iall.mat', {'IAll': np.zeros((2, 2, 3, 20015), np.uint8)})
    raises(lambda: load_mirflickr25k(d), "'IAll' in", 'mirflickr25k-iall.mat', 'mirflickr25k-lall.mat', 'image_axis')
    m = load_mirflickr25k(d, image_axis=-1)
    assert m.images.shape == (20015, 2, 2, 3) and 'images' in m.files
    assert load_mirflickr25k(d, with_images=False).images is None
    write_mat73(d / 'mirflickr25k-iall.mat', {'IAll': np.arange(20015 * 4, dtype=np.float32).reshape(20015, 4)})
    m = load_mirflickr25k(d)
    assert isinstance(m.images, np.memmap) and m.images[3, 1] == 13   # contiguous v7.3: mapped, transposed back


def test_mirflickr25k_errors(tmp_path):
    raises(lambda: load_mirflickr25k(tmp_path), 'no *lall*.mat file', exc=FileNotFoundError)
    scipy.io.savemat(tmp_path / 'a-lall.mat', {'LAll': np.eye(4, dtype=np.uint8)})
    scipy.io.savemat(tmp_path / 'a-yall.mat', {'YAll': np.ones((3, 6), np.uint8)})
    raises(lambda: load_mirflickr25k(tmp_path), 'a-yall.mat has 3 rows', 'a-lall.mat has 4')
    scipy.io.savemat(tmp_path / 'b-lall.mat', {'LAll': np.eye(4, dtype=np.uint8)})
    raises(lambda: load_mirflickr25k(tmp_path), 'matching *lall*.mat', 'a-lall.mat, b-lall.mat')


def test_hashing_split():
    hs = hashing_split(20015, 2000, 10000, seed=0)
    assert (len(hs.query), len(hs.database), len(hs.train)) == (2000, 18015, 10000)
    np.testing.assert_array_equal(np.sort(np.concatenate([hs.query, hs.database])), np.arange(20015))
    assert not set(hs.train) - set(hs.database)
    np.random.seed(3); perm = np.random.permutation(20015)
    np.testing.assert_array_equal(hashing_split(20015, 2000, seed=3).query, perm[:2000])
    assert not np.array_equal(hashing_split(20015, seed=1).query, hs.query)
    np.testing.assert_array_equal(hashing_split(20015, 2000, seed=0).query, hs.query)
    np.testing.assert_array_equal(hashing_split(10, 3, 2, shuffle=False).train, [3, 4])
    assert len(hashing_split(load_mirflickr25k(MIR)).query) == 2000
    raises(lambda: hashing_split(100, 0), '`n_query`=0 must be between 1 and n_items-1=99')
    raises(lambda: hashing_split(100, 10, 91), '`n_train`=91 exceeds the 90 database items')
    raises(lambda: hashing_split(100, 2.5), '`n_query` must be a non-negative int', exc=TypeError)


# ----------------------------------------------------------------------------------------------------------------------
# save / load round trip
# ----------------------------------------------------------------------------------------------------------------------
FIELDS = ('cap2img', 'labels', 'n_images', 'name', 'image_ids', 'caption_ids', 'captions', 'image_files')


def _same(a, b):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray): np.testing.assert_array_equal(x, y)
        else: assert list(x) == list(y) if x is not None and not isinstance(x, (int, str)) else x == y, f


def test_round_trip_same_evaluation(tmp_path, f30k):
    rng = np.random.default_rng(0)
    sp = with_labels(f30k, rng.random((1000, 8)) < 0.25)
    back = load_split(save_split(sp, tmp_path / 's.npz'))
    _same(sp, back)
    assert back.labels.dtype == bool and back.source.startswith(str(tmp_path / 's.npz'))
    assert 'test_ids.txt' in back.source
    S = rng.random((1000, 5000)).astype(np.float32)
    pd.testing.assert_frame_equal(evaluate(back, S).table, evaluate(sp, S).table)
    # an uneven in-memory split with numpy ids, string caption ids and non-ASCII captions, no labels
    cap2img = np.repeat(np.arange(12), rng.integers(1, 4, 12))
    n = len(cap2img)
    small = EvaluationSplit(cap2img, None, 12, 'tiny', np.arange(100, 112), [f's{i}' for i in range(n)],
                            [f'caf\u00e9 {i}' for i in range(n)], tuple(f'i/{i}.jpg' for i in range(12)))
    back = load_split(save_split(small, tmp_path / 't.npz'))
    _same(small, back); assert back.image_ids == list(range(100, 112)) and back.labels is None
    S = rng.random((12, n))
    kw = dict(metrics=('R@1', 'R@5', 'MedR', 'MeanR'), conventions='lavis')
    pd.testing.assert_frame_equal(evaluate(back, S, **kw).table, evaluate(small, S, **kw).table)


def test_round_trip_coco_folds(tmp_path, coco):
    back = load_split(save_split(coco, tmp_path / 'coco.npz'))
    _same(coco, back)
    for (a, ia, ca), (b, ib, cb) in zip(coco.folds(5), back.folds(5)):
        _same(a, b); np.testing.assert_array_equal(ca, cb)


def test_save_load_errors(tmp_path, f30k):
    raises(lambda: save_split(f30k, tmp_path / 's.split'), 'must end in .npz')
    raises(lambda: save_split(f30k.cap2img, tmp_path / 's.npz'), '`split` must be an EvaluationSplit', exc=TypeError)
    odd = EvaluationSplit.uniform(2, 1); odd.image_ids = [(1, 2), (3, 4)]
    raises(lambda: save_split(odd, tmp_path / 'o.npz'), '`image_ids` holds (1, 2)', exc=TypeError)
    np.savez(tmp_path / 'x.npz', a=np.zeros(3))
    raises(lambda: load_split(tmp_path / 'x.npz'), "lacks 'cap2img' and 'meta'")
    np.save(tmp_path / 'x.npy', np.zeros(3))
    raises(lambda: load_split(tmp_path / 'x.npy'), 'is a .npy array')
    (tmp_path / 'junk.npz').write_bytes(b'not a zip')
    raises(lambda: load_split(tmp_path / 'junk.npz'), 'junk.npz is truncated or corrupt: it cannot be read as a .npz archive')
    meta = np.frombuffer(json.dumps({'format': 'fico-itr split v9'}).encode(), np.uint8)
    np.savez(tmp_path / 'v9.npz', cap2img=np.zeros(2, np.int64), meta=meta)
    raises(lambda: load_split(tmp_path / 'v9.npz'), "has format 'fico-itr split v9'")


# ----------------------------------------------------------------------------------------------------------------------
# check_rows
# ----------------------------------------------------------------------------------------------------------------------
def test_check_rows(f30k):
    ni, nc = 1000, 5000
    S = np.zeros((ni, nc), np.float32)
    assert check_rows(f30k, S, 'similarity', 'sims.npy') is S
    assert check_rows(f30k, S, 'i2t_similarity') is S and check_rows(f30k, S.T, 't2i_similarity') is not None
    for what, arr, frags in [
            ('similarity', S.T, ['`similarity` in file sims.npy has shape (5000, 1000)', 'looks transposed', '`t2i_similarity`']),
            ('t2i_similarity', S, ['a t2i matrix is captions x images']),
            ('similarity', np.zeros((nc, nc)), ['unique_image_rows(S, 5)']),
            ('similarity', np.zeros((ni, 4999)), ['needs (1000, 5000)', 'different splits or releases']),
            ('similarity', np.zeros(ni), ['a similarity matrix is 2-D']),
            ('images', np.zeros((nc, 8)), ['`images` in file sims.npy has 5,000 rows', 'one row per caption (5 per image']),
            ('captions', np.zeros((ni, 8)), ['are these the image embeddings']),
            ('images', np.zeros((8, ni)), ['looks transposed']),
            ('labels', np.zeros((999, 3)), ['`labels` in file sims.npy has 999 rows', '1,000 images']),
            ('captions', np.float32(1), ['is a scalar'])]:
        raises(lambda: check_rows(f30k, arr, what, 'sims.npy'), *frags, 'sims.npy', 'test_caps.txt', 'test_ids.txt',
               "split 'f30k_karpathy_test/test'")
    assert check_rows(f30k, HashCodes.from_bits(np.zeros((nc, 16))), 'captions') is not None
    raises(lambda: check_rows(f30k, HashCodes.from_bits(np.zeros((ni + 1, 16))), 'images'), '1,001 rows', '(an array passed in memory, not a file)')
    assert check_rows(f30k, torch.zeros(ni, 4), 'images') is not None
    raises(lambda: check_rows(f30k, S, 'texts'), "`what` 'texts' is not one of")
    raises(lambda: check_rows(S, S, 'similarity'), '`split` must be an EvaluationSplit', exc=TypeError)


def test_embeddings_files_against_real_split(tmp_path, f30k):
    "The usual pairing: a split from text files, embeddings from an array file; check_rows names both on mismatch."
    rng = np.random.default_rng(0)
    np.savez(tmp_path / 'emb.npz', images=rng.standard_normal((1000, 16)), captions=rng.standard_normal((4995, 16)))
    img = check_rows(f30k, load_array(tmp_path / 'emb.npz', 'images'), 'images', tmp_path / 'emb.npz')
    assert img.shape == (1000, 16)
    raises(lambda: check_rows(f30k, load_array(tmp_path / 'emb.npz', 'captions'), 'captions', tmp_path / 'emb.npz'),
           'emb.npz has 4,995 rows', 'test_caps.txt', '5,000 captions')


# ----------------------------------------------------------------------------------------------------------------------
# every number right or refused (issue 13): damaged files are one-line errors naming them; a BOM is not an image id
# ----------------------------------------------------------------------------------------------------------------------
def write_every_format(d: Path) -> dict:
    "The array A in every supported format; name -> key to read it with."
    np.save(d / 'a.npy', A)
    np.savez_compressed(d / 'a.npz', A=A)
    with h5py.File(d / 'a.h5', 'w') as f: f['A'] = A
    torch.save({'A': torch.from_numpy(A)}, d / 'a.pt')
    scipy.io.savemat(d / 'a.mat', {'A': A})
    write_mat73(d / 'v73.mat', {'A': A})
    return {'a.npy': None, 'a.npz': 'A', 'a.h5': 'A', 'a.pt': 'A', 'a.mat': 'A', 'v73.mat': 'A'}


@pytest.mark.parametrize('mmap', [True, False])
def test_truncated_files_name_the_file(tmp_path, mmap):
    "Item 10: a file cut in half is 'truncated or corrupt' with its path, in one line (a .npy no longer 'needs pickle')."
    for name, key in write_every_format(tmp_path).items():
        np.testing.assert_array_equal(load_array(tmp_path / name, key, mmap=mmap), A)
        whole = (tmp_path / name).read_bytes()
        cut = tmp_path / f'cut_{name}'; cut.write_bytes(whole[:len(whole) // 2])
        msg = raises(lambda: load_array(cut, key, mmap=mmap), f'{cut} is truncated or corrupt', 'copy or save it again')
        assert '\n' not in msg and 'pickle' not in msg, msg
        cut.write_bytes(b'')
        raises(lambda: load_array(cut, key, mmap=mmap), f'{cut} is truncated or corrupt')


def test_npy_needing_pickle_and_npz_misnamed(tmp_path):
    "Object arrays still say they need pickle; a .npy saved as .npz says so."
    np.save(tmp_path / 'o.npy', np.array([{'a': 1}], dtype=object), allow_pickle=True)
    raises(lambda: load_array(tmp_path / 'o.npy'), 'o.npy holds Python objects and cannot be loaded without pickle')
    np.save(tmp_path / 'x.npy', A); (tmp_path / 'x.npy').rename(tmp_path / 'x.npz')
    raises(lambda: load_array(tmp_path / 'x.npz'), 'x.npz is a .npy array saved under a .npz name')


def test_truncated_split_and_label_files(tmp_path, f30k):
    "Item 10: the split and label loaders built on load_array report a cut file the same way."
    p = save_split(EvaluationSplit.uniform(4, 2, name='toy'), tmp_path / 'toy.npz')
    whole = p.read_bytes(); p.write_bytes(whole[:len(whole) - 10])
    raises(lambda: load_split(p), 'toy.npz is truncated or corrupt')
    L = np.eye(1000, 4, dtype=np.uint8)
    scipy.io.savemat(tmp_path / 'lab.mat', {'LAll': L})
    whole = (tmp_path / 'lab.mat').read_bytes(); (tmp_path / 'lab.mat').write_bytes(whole[:len(whole) // 2])
    raises(lambda: with_labels(f30k, tmp_path / 'lab.mat'), 'lab.mat is truncated or corrupt')


def test_labels_file_named_in_memory(tmp_path, f30k):
    "Item 10: labels from a file named '(in memory)' and labels passed in memory are told apart in errors and sources."
    odd = tmp_path / '(in memory).mat'
    scipy.io.savemat(odd, {'LAll': np.eye(999, 4, dtype=np.uint8)})
    from_file = raises(lambda: with_labels(f30k, odd), f'`labels` in file {odd} has 999 rows')
    in_memory = raises(lambda: with_labels(f30k, np.eye(999, 4, dtype=bool)),
                       '`labels` (an array passed in memory, not a file) has 999 rows')
    assert from_file.split(' has ')[0] != in_memory.split(' has ')[0]
    scipy.io.savemat(odd, {'LAll': np.eye(1000, 4, dtype=np.uint8)})
    assert with_labels(f30k, odd).source.endswith(f'with labels from file {odd}')
    assert with_labels(f30k, np.eye(1000, 4, dtype=bool)).source.endswith('with labels in memory')


def test_vse_files_with_byte_order_mark(tmp_path):
    "Item 13: a UTF-8 BOM in front of *_ids.txt and *_caps.txt does not split the first image in two."
    ids, caps = '10\n10\n22\n22\n', 'a dog\na dog running\na cat\na cat sleeping\n'
    (tmp_path / 'test_ids.txt').write_text(ids); (tmp_path / 'test_caps.txt').write_text(caps)
    clean = load_vse_precomp(tmp_path, 'test')
    (tmp_path / 'test_ids.txt').write_bytes(b'\xef\xbb\xbf' + ids.encode())
    (tmp_path / 'test_caps.txt').write_bytes(b'\xef\xbb\xbf' + caps.encode())
    bom = load_vse_precomp(tmp_path, 'test')
    assert (bom.n_images, bom.image_ids, bom.captions) == (2, [10, 22], clean.captions)
    np.testing.assert_array_equal(bom.cap2img, clean.cap2img)


def test_json_with_byte_order_mark(tmp_path):
    "Item 13: Karpathy and LAVIS JSON files written with a BOM load as without it."
    data = [{'image': 'val2014/COCO_val2014_000000000001.jpg', 'caption': ['a', 'b']}]
    (tmp_path / 'l.json').write_bytes(b'\xef\xbb\xbf' + json.dumps(data).encode())
    sp = load_lavis_annotations(tmp_path / 'l.json')
    assert (sp.n_images, sp.image_ids, sp.captions) == (1, [1], ['a', 'b'])


def test_vse_text_cut_short(tmp_path):
    "Item 10: an ids or captions file cut inside its last line (no final line break, or inside a character) is refused."
    (tmp_path / 'test_caps.txt').write_text('a\nb\nc\nd\n')
    (tmp_path / 'test_ids.txt').write_text('10\n10\n22\n2')   # '22' cut to '2': same line count, a different split
    raises(lambda: load_vse_precomp(tmp_path, 'test'), 'test_ids.txt does not end with a line break', "'2'", 'cut short')
    (tmp_path / 'test_ids.txt').write_text('10\n10\n22\n22\n')
    (tmp_path / 'test_caps.txt').write_bytes('a\nb\nc\nd caf\u00e9\n'.encode()[:-2])
    raises(lambda: load_vse_precomp(tmp_path, 'test'), 'test_caps.txt is truncated: it ends inside a UTF-8 character')


def test_content_errors_are_value_errors(tmp_path):
    "What a file holds, when it is wrong, is a ValueError naming the file (the CLI answers those in one line)."
    np.save(tmp_path / 's.npy', np.array(['a', 'b']))
    raises(lambda: load_array(tmp_path / 's.npy'), 's.npy holds <U1 values', 'only real numeric arrays')
    np.savez(tmp_path / 'c.npz', z=np.ones(3, complex))
    raises(lambda: load_array(tmp_path / 'c.npz', 'z'), "c.npz ['z'] holds complex128 values")
    bad = {'images': [{'filename': 'a.jpg', 'cocoid': 1, 'split': 'test', 'sentences': ['a dog']}]}
    (tmp_path / 'k.json').write_text(json.dumps(bad))
    raises(lambda: load_karpathy(tmp_path / 'k.json'), 'k.json is malformed', 'Karpathy split file')
    meta = json.dumps({'format': 'fico-itr split v1', 'name': 'x'}).encode()
    np.savez(tmp_path / 'm.npz', cap2img=np.arange(2), meta=np.frombuffer(meta, np.uint8))
    raises(lambda: load_split(tmp_path / 'm.npz'), 'm.npz is not a split written by save_split', 'lacks n_images')


@pytest.mark.parametrize('mmap', [True, False])
def test_vse_image_features_truncated(tmp_path, mmap):
    "Item 10: a cut {split}_ims.npy is 'truncated or corrupt' with its path, not numpy's bare mmap message."
    d = _f30k_copy(tmp_path)
    np.save(d / 'test_ims.npy', np.zeros((1000, 8), np.float32))
    whole = (d / 'test_ims.npy').read_bytes(); (d / 'test_ims.npy').write_bytes(whole[:len(whole) - 100])
    raises(lambda: load_vse_image_features(d, 'test', mmap=mmap), f"{d / 'test_ims.npy'} is truncated or corrupt")
