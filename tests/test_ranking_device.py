"""Ranking on the scores' device (torch) gives exactly the numpy path's per-query values, under every tie rule.

The torch path runs on CPU tensors everywhere, and on CUDA tensors where torch sees a CUDA device (bench/gpu_all.sh's
`tests` step runs this file on the GPU machine).
"""
import numpy as np
import pytest
import torch

from fico_itr.core import get_conventions
from fico_itr.evaluate import _block_values, DEFAULT_METRICS, _parse_metric
from fico_itr.ranking import SameItem, SharedLabel
from fico_itr.similarity import iter_score_blocks

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
RULES = ['stable', 'reverse', 'optimistic', 'pessimistic', 'random']


def _problem(seed, n_images=40, per_image=3, dim=6, levels=3):
    "Embeddings with few distinct values, so that many scores tie exactly; labels with 5 classes."
    rng = np.random.default_rng(seed)
    images = rng.integers(-levels, levels + 1, (n_images, dim)).astype(np.float32)
    captions = np.repeat(images, per_image, axis=0) + rng.integers(-1, 2, (n_images * per_image, dim))
    labels = rng.random((n_images, 5)) < .3
    labels[~labels.any(1), 0] = True
    cap2img = np.repeat(np.arange(n_images), per_image)
    return images, captions.astype(np.float32), labels, cap2img


def _assert_same(got: dict, want: dict):
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(want[key]), err_msg=str(key))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('ties', RULES)
def test_block_values_on_device_equal_numpy(device, ties):
    images, captions, labels, cap2img = _problem(seed=RULES.index(ties))
    specs = {g: [_parse_metric(m) for m in DEFAULT_METRICS[g]] for g in ('instance', 'category')}
    rels = {'instance': SameItem(np.arange(len(images)), cap2img), 'category': SharedLabel(labels, labels, None, cap2img)}
    n_ties = 0
    for preset in ('default', 'fico-itr', 'torchmetrics'):
        conv = get_conventions(preset, ties=ties)
        for measure in ('inner_product', 'cosine', 'euclidean'):
            cpu = iter_score_blocks(images, captions, measure, block_size=16, device='cpu')
            dev = iter_score_blocks(images, captions, measure, block_size=16, device=device, on_device=True)
            for (s, e, a), (_, _, b) in zip(cpu, dev):
                assert torch.is_tensor(b) and b.device.type == device
                np.testing.assert_array_equal(b.cpu().numpy(), a)   # the same float32 scores, so the same numbers
                n_ties += int((np.diff(np.sort(a, 1), axis=1) == 0).sum())
                for g, rel in rels.items():
                    r = rel.block(s, e)
                    _assert_same(_block_values(b, r, specs[g], conv, g), _block_values(a, r, specs[g], conv, g))
    assert n_ties > 1000   # the problem really has ties for the rules to break


def test_block_values_float64_tensors_take_the_numpy_path():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((8, 120))          # float64 scores that float32 keys would round
    rel = rng.random((8, 120)) < .3
    specs = [_parse_metric(m) for m in DEFAULT_METRICS['category']]
    conv = get_conventions('default')
    _assert_same(_block_values(torch.from_numpy(S), rel, specs, conv, 'category'), _block_values(S, rel, specs, conv, 'category'))


def test_hamming_scores_stay_numpy_on_device():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 2, (10, 32)), rng.integers(0, 2, (20, 32))
    blocks = list(iter_score_blocks(a, b, 'hamming', block_size=4, device='cpu', on_device=True))
    assert all(isinstance(s, np.ndarray) and s.dtype == np.int16 for _, _, s in blocks)


def test_on_device_refuses_overflow():
    x = np.full((2, 64), 9e18, np.float32)   # each value passes the check; their dot products overflow float32
    with pytest.raises(ValueError, match='row 0 against `gallery` row 0 are NaN or Inf'):
        list(iter_score_blocks(x, x, 'inner_product', device='cpu', on_device=True))


@pytest.mark.parametrize('preset', ['default', 'fico-itr', 'lavis'])
def test_evaluate_takes_the_device_path(monkeypatch, preset):
    "`evaluate` on a CUDA device ranks on the device; told that its device is CUDA, the CPU run goes down the torch path and returns the numpy path's table."
    import sys
    import pandas as pd
    from fico_itr.core import EvaluationSplit
    E = sys.modules['fico_itr.evaluate']
    images, captions, labels, cap2img = _problem(3, n_images=120)   # galleries past the default K=100
    split = EvaluationSplit(cap2img, labels, len(images), 'ties')
    want = E.evaluate(split, images=images, captions=captions, conventions=preset, block_size=16).table
    calls = []
    for name in ('_rank_relevant_torch', '_first_relevant_rank_torch'):
        f = getattr(E, name)
        monkeypatch.setattr(E, name, lambda *a, _f=f, **k: (calls.append(1), _f(*a, **k))[1])
    monkeypatch.setattr(E, 'resolve_device', lambda device=None: torch.device('cuda'))
    got = E.evaluate(split, images=images, captions=captions, conventions=preset, block_size=16).table
    assert calls, 'the torch ranking path was not taken'
    pd.testing.assert_frame_equal(got, want)
