"""The device changes nothing: scores computed on a CUDA device give the same evaluation as on the CPU.

Skipped where torch sees no CUDA device (this project's CI machine); run on a GPU machine with
`python -m pytest tests/test_device.py` (bench/gpu_all.sh does, and records the result).
"""
import numpy as np
import pytest
import torch

from fico_itr.similarity import similarity, HashCodes
from fico_itr.evaluate import evaluate
from fico_itr.synthetic import coco5k_like

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')

METRICS = {'instance': ['R@1', 'R@5', 'R@10', 'MedR', 'MeanR'], 'category': ['mAP@10', 'mAP@100', 'mAP@N', 'P@10', 'PR']}


def test_hamming_on_cuda_equals_popcount_on_cpu():
    rng = np.random.default_rng(0)
    for bits in (16, 64, 200, 2048):
        a, b = rng.integers(0, 2, (300, bits)), rng.integers(0, 2, (500, bits))
        np.testing.assert_array_equal(similarity(a, b, 'hamming', device='cuda'), similarity(a, b, 'hamming', device='cpu'))


def test_float_measures_on_cuda_are_close_to_cpu():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((300, 64)), rng.standard_normal((700, 64))
    for m in ('cosine', 'inner_product', 'euclidean'):
        np.testing.assert_allclose(similarity(x, y, m, device='cuda'), similarity(x, y, m, device='cpu'), rtol=1e-4, atol=1e-4)


def test_evaluation_on_cuda_equals_cpu():
    data = coco5k_like(n_images=1000, seed=3)
    codes_i, codes_c = data.hash_codes(64)
    for kw in ({'images': codes_i, 'captions': codes_c, 'measure': 'hamming'},):   # integer scores: identical
        a = evaluate(data.split, metrics=METRICS, device='cpu', **kw)
        b = evaluate(data.split, metrics=METRICS, device='cuda', **kw)
        np.testing.assert_allclose(b.table.value, a.table.value, rtol=1e-12)
    # float scores may differ in the last bits between devices: the numbers agree to a few queries' worth
    a = evaluate(data.split, images=data.images, captions=data.captions, metrics=METRICS, device='cpu')
    b = evaluate(data.split, images=data.images, captions=data.captions, metrics=METRICS, device='cuda')
    np.testing.assert_allclose(b.table.value, a.table.value, atol=0.05)


def test_topk_search_on_cuda_equals_cpu():
    from fico_itr.search import topk_search
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((500, 64)), rng.standard_normal((3000, 64))
    a = topk_search(x, y, 50, 'inner_product', device='cpu')
    b = topk_search(x, y, 50, 'inner_product', device='cuda', gallery_block=700)
    assert (a.indices == b.indices).mean() > 0.999          # float32 sums may reorder near-equal scores
    bi, bc = rng.integers(0, 2, (500, 64)), rng.integers(0, 2, (3000, 64))
    a = topk_search(bi, bc, 50, 'hamming', device='cpu')
    b = topk_search(bi, bc, 50, 'hamming', device='cuda', gallery_block=700)
    np.testing.assert_array_equal(a.indices, b.indices)     # integer scores, stable ties: identical
    np.testing.assert_array_equal(a.scores, b.scores)
    # large gallery blocks take the GPU's chunked selection; its boundary check keeps ties exact
    for k in (10, 30):
        a = topk_search(bi, bc, k, 'hamming', device='cpu')
        b = topk_search(bi, bc, k, 'hamming', device='cuda', gallery_block=3000)
        np.testing.assert_array_equal(a.indices, b.indices)
