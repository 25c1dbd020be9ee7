"""fico_itr.compat against PyPI fico-itr 1.0.0 itself, run in a subprocess from its own install folder.

1.0.0 imports as `fico_itr` too, so it lives in .peers/fico-itr-1.0.0 (tools/test.sh installs it there) and runs in a
child process with that folder first on sys.path. Inputs are continuous random scores (no ties), where every tie
rule gives the same numbers: compat must match 1.0.0 exactly (up to float rounding).
"""
import json, os, subprocess, sys, textwrap
from pathlib import Path
import numpy as np
import pytest

from _helpers import raises
from fico_itr import compat

PEER = Path(os.environ.get('FICO_ITR_1_PATH', Path(__file__).resolve().parents[1] / '.peers' / 'fico-itr-1.0.0'))


def run_peer(tmp_path, code: str, **arrays):
    "Run `code` under fico-itr 1.0.0 with `arrays` loaded as variables; it must assign a JSON-able `out`."
    if not (PEER / 'fico_itr' / 'tasks.py').exists():
        msg = f'fico-itr 1.0.0 is not installed in {PEER} (tools/test.sh installs it)'
        if os.environ.get('CI'): pytest.fail(msg)
        pytest.skip(msg)
    np.savez(tmp_path / 'in.npz', **arrays)
    prog = textwrap.dedent(f'''
        import sys, json, warnings
        sys.path.insert(0, {str(PEER)!r})
        import numpy as np
        import fico_itr
        assert fico_itr.__version__ == '1.0.0', fico_itr.__file__
        from fico_itr import instance_retrieval, category_retrieval, compute_similarity
        warnings.simplefilter('ignore')
        d = np.load({str(tmp_path / 'in.npz')!r})
        globals().update({{k: d[k] for k in d.files}})
    ''') + textwrap.dedent(code) + '\nprint(json.dumps(out, default=float))\n'
    r = subprocess.run([sys.executable, '-c', prog], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def close(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a: np.testing.assert_allclose(a[k], b[k], rtol=1e-9, err_msg=k)
    else: np.testing.assert_allclose(a, b, rtol=1e-9)


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    n, cpi = 40, 5
    S = rng.standard_normal((n, n * cpi))
    L = (rng.random((n, 6)) < 0.35).astype(np.float64)
    L[L.sum(1) == 0, 0] = 1
    return S, L, cpi


def test_rectangular_instance_and_category(tmp_path, problem):
    S, L, cpi = problem
    peer = run_peer(tmp_path, '''
        out = {'inst': instance_retrieval(S, captions_per_image=5),
               'cat': [category_retrieval(S, L, k=k, captions_per_image=5) for k in (5, 10, None)]}
    ''', S=S, L=L)
    mine_i2t, mine_t2i = compat.instance_retrieval(S, captions_per_image=5)
    close(mine_i2t, peer['inst'][0]); close(mine_t2i, peer['inst'][1])
    for k, ref in zip((5, 10, None), peer['cat']):
        close(compat.category_retrieval(S, L, k=k, captions_per_image=5), ref)


def test_square_duplicated_image_matrix(tmp_path, problem):
    S, L, cpi = problem
    Sq = np.repeat(S, cpi, axis=0)                    # the VSRN/UCCH layout: each image row repeated per caption
    peer = run_peer(tmp_path, '''
        out = {'inst': instance_retrieval(Sq, captions_per_image=5),
               'cat': [category_retrieval(Sq, L, k=k, captions_per_image=5) for k in (10, None)]}
    ''', Sq=Sq, L=L)
    i2t, t2i = compat.instance_retrieval(Sq, captions_per_image=5)
    close(i2t, peer['inst'][0]); close(t2i, peer['inst'][1])
    for k, ref in zip((10, None), peer['cat']):
        close(compat.category_retrieval(Sq, L, k=k, captions_per_image=5), ref)


def test_uneven_caption_maps_list_counts_and_dict(tmp_path):
    rng = np.random.default_rng(3)
    counts = rng.integers(3, 8, 30)
    cap2img = np.repeat(np.arange(30), counts)
    S = rng.standard_normal((30, len(cap2img)))
    L = (rng.random((30, 5)) < 0.4).astype(np.float64); L[L.sum(1) == 0, 1] = 1
    peer = run_peer(tmp_path, '''
        m = {int(c): int(i) for c, i in enumerate(cap2img)}
        out = {'list': instance_retrieval(S, captions_per_image=cap2img.tolist()),
               'counts': instance_retrieval(S, captions_per_image=counts.tolist()),
               'dict': instance_retrieval(S, captions_per_image=m),
               'cat': category_retrieval(S, L, k=20, captions_per_image=cap2img.tolist())}
    ''', S=S, L=L, cap2img=cap2img, counts=counts)
    for key, cpi in (('list', cap2img.tolist()), ('counts', counts.tolist()),
                     ('dict', {int(c): int(i) for c, i in enumerate(cap2img)})):
        i2t, t2i = compat.instance_retrieval(S, captions_per_image=cpi)
        close(i2t, peer[key][0]); close(t2i, peer[key][1])
    close(compat.category_retrieval(S, L, k=20, captions_per_image=cap2img.tolist()), peer['cat'])


def test_separate_t2i_matrices_and_class_labels(tmp_path, problem):
    S, L, cpi = problem
    T = S + np.random.default_rng(1).standard_normal(S.shape) * 0.5   # a second (t2i) scorer
    y = np.random.default_rng(2).integers(0, 4, len(S))               # one class per image
    peer = run_peer(tmp_path, '''
        out = {'inst': instance_retrieval(S, t2i_sim=T, captions_per_image=5),
               'cat': category_retrieval(S, L, k=10, sim2=T.T, captions_per_image=5),
               'cls': category_retrieval(S, y, k=None, captions_per_image=5)}
    ''', S=S, T=T, L=L, y=y)
    for t2i_sim in (T, T.T):     # images x captions (README) or captions x images (LAVIS, the paper tutorial's BLIP-2)
        i2t, t2i = compat.instance_retrieval(S, t2i_sim=t2i_sim, captions_per_image=5)
        close(i2t, peer['inst'][0]); close(t2i, peer['inst'][1])
    close(compat.category_retrieval(S, L, k=10, sim2=T.T, captions_per_image=5), peer['cat'])
    close(compat.category_retrieval(S, y, k=None, captions_per_image=5), peer['cls'])


def test_compute_similarity_matches(tmp_path):
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((30, 16)), rng.standard_normal((50, 16))
    bx, by = rng.integers(0, 2, (30, 64)), rng.integers(0, 2, (50, 64))
    peer = run_peer(tmp_path, '''
        out = {m: compute_similarity(x, y, m).tolist() for m in ('cosine', 'euclidean', 'inner_product')}
        out['hamming'] = compute_similarity(bx, by, 'hamming').tolist()
    ''', x=x, y=y, bx=bx, by=by)
    for m in ('cosine', 'euclidean', 'inner_product'):
        np.testing.assert_allclose(compat.compute_similarity(x, y, m), peer[m], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(compat.compute_similarity(bx, by, 'hamming'), peer['hamming'])


def test_hamming_ties_1_0_0_lies_between_the_optimistic_and_pessimistic_orders(tmp_path):
    """With tied Hamming scores 1.0.0's order comes from numpy's unstable argsort (not reproducible: on this numpy even
    15 tied floats come out in neither index order). Both its numbers and compat's must lie between the optimistic
    and the pessimistic tie orders, which the engine computes exactly."""
    from fico_itr.core import EvaluationSplit, get_conventions
    from fico_itr.evaluate import evaluate
    rng = np.random.default_rng(11)
    bi, bc = rng.integers(0, 2, (40, 8)), rng.integers(0, 2, (200, 8))
    L = (rng.random((40, 4)) < 0.4).astype(np.float64); L[L.sum(1) == 0, 0] = 1
    peer = run_peer(tmp_path, '''
        S = compute_similarity(bi, bc, 'hamming')
        out = {'inst': instance_retrieval(S, captions_per_image=5), 'cat': category_retrieval(S, L, k=None, captions_per_image=5)}
    ''', bi=bi, bc=bc, L=L)
    S = compat.compute_similarity(bi, bc, 'hamming')
    mine = compat.instance_retrieval(S, captions_per_image=5), compat.category_retrieval(S, L, k=None, captions_per_image=5)
    split = EvaluationSplit.uniform(40, 5, labels=L)
    metrics = {'instance': ['R@1', 'R@5', 'R@10'], 'category': ['mAP@N']}   # (AP@K with K < N is not bounded so)
    bound = {t: evaluate(split, S, metrics=metrics, conventions=get_conventions('fico-itr', ties=t)) for t in ('optimistic', 'pessimistic')}
    for d, i in (('i2t', 0), ('t2i', 1)):
        for k in ('R@1', 'R@5', 'R@10'):
            lo, hi = bound['pessimistic'].get(k, d), bound['optimistic'].get(k, d)
            assert lo <= peer['inst'][i][k] <= hi and lo <= mine[0][i][k] <= hi, (d, k)
        lo, hi = bound['pessimistic'].get('mAP@N', d, 'category') / 100, bound['optimistic'].get('mAP@N', d, 'category') / 100
        assert lo - 1e-12 <= peer['cat'][i] <= hi + 1e-12 and lo - 1e-12 <= mine[1][i] <= hi + 1e-12, d
    assert bound['pessimistic'].get('R@1', 'i2t') < bound['optimistic'].get('R@1', 'i2t')   # the ties do matter here


@pytest.mark.parametrize('call, message', [
    (lambda S, L: compat.instance_retrieval(S.T, captions_per_image=5), 'pass `similarity_matrix.T`'),
    (lambda S, L: compat.category_retrieval(S.T, L, captions_per_image=5), 'pass `sim1.T`'),
    (lambda S, L: compat.category_retrieval(S, L, sim2=S, captions_per_image=5), 'silently returned the i2t mAP'),
    (lambda S, L: compat.instance_retrieval(S, t2i_sim=S[:, :100], captions_per_image=5), '`t2i_sim` has shape (40, 100)'),
    (lambda S, L: compat.instance_retrieval(S, captions_per_image=4), 'Mismatch: 40 images x 4'),
    (lambda S, L: compat.category_retrieval(S, L[:30], captions_per_image=5), '`labels` has 30 rows'),
    (lambda S, L: compat.instance_retrieval(np.where(S > 2, np.nan, S), captions_per_image=5), 'NaN or Inf'),
    (lambda S, L: compat.compute_similarity(S, S, 'hamming'), 'is not binary'),
])
def test_where_1_0_0_guessed_compat_raises(problem, call, message):
    S, L, cpi = problem
    with pytest.raises(ValueError, match=None) as e: call(S, L)
    assert message in str(e.value)


# ----------------------------------------------------------------------------------------------------------------------
# issue 13, items 2, 7 and 12: where compat guessed like 1.0.0, it now refuses
# ----------------------------------------------------------------------------------------------------------------------
def issue13_scores(seed=0):
    "The issue's reproduction: 20 images x 5 captions, S = noise + 3 on each image's own captions."
    rng = np.random.default_rng(seed)
    return rng.standard_normal((20, 100)) + 3 * np.repeat(np.eye(20), 5, 1)


@pytest.mark.parametrize('noise', [0.0, 1e-6])   # rows repeated exactly, or re-encoded in another batch
def test_square_auto_refuses_repeated_image_rows(noise):
    "Item 2: R@1 17.8/12.8 came back for a VSRN/UCCH matrix under the default captions_per_image='auto'."
    from fico_itr.core import EvaluationSplit
    from fico_itr.evaluate import evaluate
    S = issue13_scores()
    Sq = np.repeat(S, 5, axis=0)
    Sq = Sq + noise * np.random.default_rng(1).standard_normal(Sq.shape)
    L = np.eye(4)[np.arange(20) % 4]
    for call in (lambda: compat.instance_retrieval(Sq), lambda: compat.instance_i2t(Sq), lambda: compat.instance_t2i(Sq),
                 lambda: compat.category_retrieval(Sq, L)):
        raises(call, 'row 0 repeats in the next 4 row(s)', 'pass captions_per_image=5')
    i2t, t2i = compat.instance_retrieval(Sq, captions_per_image=5)
    res = evaluate(EvaluationSplit.uniform(20, 5), S, conventions='fico-itr')
    assert (i2t['R@1'], t2i['R@1']) == (res.get('R@1', 'i2t'), res.get('R@1', 't2i')) == (100.0, 85.0)
    one_each = compat.instance_retrieval(Sq, captions_per_image=1)      # what 'auto' read it as: 100 images, 1 caption each
    assert (one_each[0]['R@1'], one_each[1]['R@1']) != (100.0, 85.0)


def test_square_auto_with_one_caption_per_image_is_1_0_0s(tmp_path):
    "A square matrix without repeated rows is one caption per image under 'auto', as in 1.0.0."
    rng = np.random.default_rng(4)
    S = rng.standard_normal((60, 60)) + 2 * np.eye(60)
    L = (rng.random((60, 5)) < 0.4).astype(np.float64); L[L.sum(1) == 0, 0] = 1
    peer = run_peer(tmp_path, "out = {'inst': instance_retrieval(S), 'cat': category_retrieval(S, L, k=10)}", S=S, L=L)
    i2t, t2i = compat.instance_retrieval(S)
    close(i2t, peer['inst'][0]); close(t2i, peer['inst'][1])
    close(compat.category_retrieval(S, L, k=10), peer['cat'])
    np.testing.assert_array_equal(compat.instance_retrieval(S, captions_per_image=1)[0]['R@1'], i2t['R@1'])


def test_category_labels_are_checked_like_the_engines(problem):
    "Item 7: ±1 multi-hot labels gave mAP 0.700 (1.0.0: 1.0, every item relevant); a -1 class became the last class."
    from fico_itr.core import EvaluationSplit
    S, L, cpi = problem
    raises(lambda: compat.category_retrieval(S, L * 2 - 1, captions_per_image=5), '`labels` must be multi-hot (0/1)')
    with pytest.raises(ValueError): EvaluationSplit.uniform(40, 5, labels=L * 2 - 1)   # the engine refuses them too
    y = np.random.default_rng(2).integers(0, 4, len(S))
    raises(lambda: compat.category_retrieval(S, np.where(y == 3, -1, y), captions_per_image=5),
           'negative class -1', 'np.unique(labels, return_inverse=True)')
    raises(lambda: compat.category_retrieval(S, y + 0.5, captions_per_image=5), '`labels` must hold whole numbers')
    close(compat.category_retrieval(S, y, captions_per_image=5), compat.category_retrieval(S, np.eye(4)[y], captions_per_image=5))


def test_category_classes_need_not_be_0_to_C(tmp_path, problem):
    "1-D labels are compared for equality, as in 1.0.0, whatever the class numbers (no np.eye(max + 1) of 10**9 rows)."
    S, L, cpi = problem
    y = np.random.default_rng(3).choice([7, 40, 10**9], len(S))
    peer = run_peer(tmp_path, "out = category_retrieval(S, y, k=20, captions_per_image=5)", S=S, y=y)
    close(compat.category_retrieval(S, y, k=20, captions_per_image=5), peer)


@pytest.mark.parametrize('k', [2.5, 0, -3, True, '10', 10.0])
def test_category_k_must_be_a_positive_int(problem, k):
    "Item 12: k=2.5 was truncated to 2 (1.0.0 failed inside numpy's slicing); k=0 meant the whole gallery."
    S, L, cpi = problem
    raises(lambda: compat.category_retrieval(S, L, k=k, captions_per_image=5), f'k={k!r}: use an int >= 1', 'k=None')
    close(compat.category_retrieval(S, L, k=np.int64(10), captions_per_image=5), compat.category_retrieval(S, L, k=10, captions_per_image=5))


def test_caption_maps_must_be_whole_numbers(problem):
    S, L, cpi = problem
    raises(lambda: compat.instance_retrieval(S, captions_per_image=np.repeat(np.arange(40), 5) + 0.5), 'must hold whole numbers')
    raises(lambda: compat.instance_retrieval(S, captions_per_image={0.5: 0}), 'captions_per_image maps caption 0.5')
