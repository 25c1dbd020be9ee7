"""Cross-checks of fico-itr against the peers whose conventions it names (see metric-conventions.md).

Every peer is run on the same tie-free inputs (continuous, pairwise-distinct scores) and compared with fico-itr
through the preset that claims to reproduce it; the hand-computed pitfalls P1-P11 of the reference follow.

* fico-itr 1.0.0 (PyPI) runs in a subprocess: it also imports as `fico_itr`.
* torchmetrics, ranx, pytrec_eval and eccv_caption are called in-process on per-query rankings.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fico_itr.core import EvaluationSplit, get_conventions
from fico_itr.evaluate import evaluate, _block_values, reduce_values
from fico_itr.metrics import (_PR_LEVELS, average_precision, hits_at_k, median_rank, mean_rank, pr_curve_11pt,
                              precision_at_k, recall_at_k, _reduce_mean)
from fico_itr.ranking import rank_relevant

# eccv_caption warns at import when the optional ujson is missing: harmless here
pytestmark = pytest.mark.filterwarnings('ignore:failed to import `ujson`:UserWarning')

REPO = Path(__file__).resolve().parents[1]
FICO1_DEFAULT = REPO / '.peers' / 'fico-itr-1.0.0'


# ----------------------------------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------------------------------
def distinct_scores(rng, n, m, low=0.05, high=1.0, dtype=np.float64):
    "An n x m score matrix of pairwise-distinct values in [low, high]: no ties along any row or column."
    if dtype == np.float32:  # random draws in float32 collide; a permutation of an even grid cannot
        grid = (rng.permutation(n * m) + 1.0) / (n * m + 1.0)
        S = (low + (high - low) * grid).astype(np.float32).reshape(n, m)
    else:
        S = low + (high - low) * rng.random((n, m))
    assert len(np.unique(S)) == S.size, 'the helper must not produce ties'
    return S


def multi_hot(rng, n, c, p=0.25, empty_rows=()):
    "Random multi-hot labels, at least one label per row except the rows in `empty_rows` (no label at all)."
    L = rng.random((n, c)) < p
    L[np.arange(n), rng.integers(0, c, n)] = True
    L[list(empty_rows)] = False
    return L


def uneven_cap2img(rng, n_images, lo=1, hi=7):
    "A shuffled caption -> image map with lo..hi captions per image (every image has one)."
    counts = rng.integers(lo, hi + 1, n_images)
    c2i = np.repeat(np.arange(n_images), counts)
    rng.shuffle(c2i)
    assert len(c2i) != n_images
    return c2i


def category_relevance(labels, cap2img):
    "images x captions: True where the image and the caption's image share a label."
    L = labels.astype(np.int64)
    return (L @ L[cap2img].T) > 0


def in_rank_order(rel_rows):
    "Relevance lists already in rank order, as (scores, rel) with strictly decreasing scores along each row."
    rel = np.atleast_2d(np.asarray(rel_rows, dtype=bool))
    m = rel.shape[1]
    return np.tile(np.arange(m, 0, -1, dtype=np.float64), (len(rel), 1)), rel


def ranked_lists(rel_rows, ties='stable'):
    return rank_relevant(*in_rank_order(rel_rows), ties=ties)


def preset_values(scores, rel, conventions, metrics, granularity='category'):
    """Reported values (scaled and reduced under the preset) of `metrics` on one block of queries: the path evaluate()
    takes for every block, usable with arbitrary query/gallery relevance."""
    conv = get_conventions(conventions)
    specs = [_spec(m) for m in metrics]
    vals = _block_values(np.asarray(scores), np.asarray(rel, bool), specs, conv, granularity)
    rows = reduce_values(vals, specs, conv)
    out = {}
    for m, (fam, k) in zip(metrics, specs):
        if fam == 'PR': out[m] = np.array([v for f, _, v in rows if f == 'PR'])
        else: out[m] = next(v for f, kk, v in rows if f == fam and kk == ('' if k is None else str(k)))
    return out


def _spec(name):
    from fico_itr.evaluate import _parse_metric
    return _parse_metric(name)


def directions(S, rel):
    "(name, query x gallery scores, relevance) for i2t and t2i of an images x captions problem."
    return [('i2t', S, rel), ('t2i', S.T, rel.T)]


# ----------------------------------------------------------------------------------------------------------------------
# 1. fico-itr 1.0.0 (PyPI), in a subprocess
# ----------------------------------------------------------------------------------------------------------------------
PEER_RUNNER = r'''
import json, sys, warnings
from pathlib import Path
peer, spec, out_path = sys.argv[1:4]
sys.path.insert(0, peer)
import numpy as np
import fico_itr
here = Path(fico_itr.__file__).resolve().parent
assert here == (Path(peer) / 'fico_itr').resolve(), f'imported the wrong fico_itr: {here}'
assert fico_itr.__version__ == '1.0.0', fico_itr.__version__
from fico_itr import instance_retrieval, category_retrieval
out = []
for job in json.loads(Path(spec).read_text()):
    S = np.load(job['S'])
    cpi = np.load(job['cap2img']).tolist() if 'cap2img' in job else job['cpi']   # a list: caption -> image
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)   # 1.0.0 warns when it transposes or rounds ratios
        if job['task'] == 'instance':
            i2t, t2i = instance_retrieval(S, captions_per_image=cpi)
            out.append({'i2t': {k: float(v) for k, v in i2t.items()}, 't2i': {k: float(v) for k, v in t2i.items()}})
        else:
            L = np.load(job['labels'])
            res = {}
            for k in job['ks']:
                a, b = category_retrieval(S, L, k=k, captions_per_image=cpi)
                res[str(k)] = [float(a), float(b)]
            out.append(res)
Path(out_path).write_text(json.dumps(out))
'''


@pytest.fixture
def fico1_path():
    p = Path(os.environ.get('FICO_ITR_1_PATH', FICO1_DEFAULT))
    if not (p / 'fico_itr' / '__init__.py').is_file():
        msg = (f'fico-itr 1.0.0 not found at {p} (set FICO_ITR_1_PATH, or install it there with '
               f'`pip install --no-deps --target {FICO1_DEFAULT} fico-itr==1.0.0`)')
        if os.environ.get('CI'): pytest.fail(msg)
        pytest.skip(msg)
    return p


def run_fico1(peer, tmp_path, jobs):
    "Run fico-itr 1.0.0 on `jobs` (arrays given as numpy values, written to .npy files) and return its results."
    spec = []
    for i, job in enumerate(jobs):
        j = {}
        for key, val in job.items():
            if isinstance(val, np.ndarray):
                f = tmp_path / f'job{i}_{key}.npy'; np.save(f, val); j[key] = str(f)
            else: j[key] = val
        spec.append(j)
    (tmp_path / 'spec.json').write_text(json.dumps(spec))
    (tmp_path / 'runner.py').write_text(PEER_RUNNER)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, str(tmp_path / 'runner.py'), str(peer), str(tmp_path / 'spec.json'),
                           str(tmp_path / 'out.json')], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f'fico-itr 1.0.0 failed:\n{proc.stderr}'
    return json.loads((tmp_path / 'out.json').read_text())


INSTANCE_KEYS = [('R@1', 'R@1'), ('R@5', 'R@5'), ('R@10', 'R@10'), ('MedR', 'MedianR'), ('MeanR', 'MeanR')]


def test_fico1_instance_uniform_and_uneven(fico1_path, tmp_path):
    "instance_retrieval of 1.0.0 (cpi=5, 'auto', and an uneven shuffled caption map) == the 'fico-itr' preset."
    rng = np.random.default_rng(101)
    S5 = distinct_scores(rng, 30, 150)                       # 30 images x 5 captions each
    S5[np.arange(30), 5 * np.arange(30)] += 0.3              # make R@1 / R@5 informative (not all near 0)
    c2i = uneven_cap2img(rng, 25)
    Su = distinct_scores(rng, 25, len(c2i), dtype=np.float32)
    Su[c2i, np.arange(len(c2i))] += np.float32(0.25)
    assert len(np.unique(Su)) == Su.size
    peer = run_fico1(fico1_path, tmp_path, [
        {'task': 'instance', 'S': S5, 'cpi': 5},
        {'task': 'instance', 'S': S5, 'cpi': 'auto'},
        {'task': 'instance', 'S': Su, 'cap2img': c2i},
    ])
    ours5 = evaluate(EvaluationSplit.uniform(30, 5), S5, conventions='fico-itr', granularities=['instance'])
    oursu = evaluate(EvaluationSplit(c2i), Su, conventions='fico-itr', granularities=['instance'])
    for got, ours in ((peer[0], ours5), (peer[1], ours5), (peer[2], oursu)):
        for d in ('i2t', 't2i'):
            mine = [ours.get(m, d, 'instance') for m, _ in INSTANCE_KEYS]
            theirs = [got[d][k] for _, k in INSTANCE_KEYS]
            np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-9, err_msg=d)
    # the data is not degenerate: recalls strictly between 0 and 100 somewhere
    assert 0 < peer[0]['i2t']['R@1'] < 100 and 0 < peer[2]['t2i']['R@5'] < 100


def test_fico1_category_map(fico1_path, tmp_path):
    "category_retrieval of 1.0.0, mAP@k for k = 10, 100, None (multi-hot, one label-less image) == 'fico-itr' preset."
    rng = np.random.default_rng(102)
    L = multi_hot(rng, 40, 6, p=0.2, empty_rows=[3])
    S = distinct_scores(rng, 40, 200)
    c2i = uneven_cap2img(rng, 36, 2, 6)
    L2 = multi_hot(rng, 36, 5, p=0.2)
    S2 = distinct_scores(rng, 36, len(c2i))
    peer = run_fico1(fico1_path, tmp_path, [
        {'task': 'category', 'S': S, 'labels': L, 'cpi': 5, 'ks': [10, 100, None]},
        {'task': 'category', 'S': S2, 'labels': L2, 'cap2img': c2i, 'ks': [10, None]},
    ])
    names = {10: 'mAP@10', 100: 'mAP@100', None: 'mAP@N'}
    for got, split, sim, ks in ((peer[0], EvaluationSplit.uniform(40, 5, labels=L), S, [10, 100, None]),
                                (peer[1], EvaluationSplit(c2i, labels=L2), S2, [10, None])):
        for d, col in (('i2t', 0), ('t2i', 1)):
            dks = [k for k in ks if not (d == 't2i' and k == 100)]  # 36/40 images: no t2i mAP@100
            res = evaluate(split, sim, conventions='fico-itr', granularities=['category'], directions=[d],
                           metrics={'category': [names[k] for k in dks]})
            mine = [res.get(names[k], d, 'category') for k in dks]
            theirs = [100 * got[str(k)][col] for k in dks]
            np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-10, err_msg=d)


def test_fico1_reverse_tie_rule_P4(fico1_path, tmp_path):
    "P4 through the real 1.0.0: argsort[::-1] ranks tied caption 1 ahead of the GT -> i2t R@1 = 66.7, as the preset."
    S = np.array([[.5, .5, .1], [.2, .9, .1], [0., 0., 1.]])
    peer = run_fico1(fico1_path, tmp_path, [{'task': 'instance', 'S': S, 'cpi': 1}])[0]
    ours = evaluate(EvaluationSplit.uniform(3, 1), S, conventions='fico-itr', granularities=['instance'],
                    metrics={'instance': ['R@1', 'MedR', 'MeanR']})   # K <= gallery size (1.0.0 allows R@5 of 3)
    np.testing.assert_allclose(peer['i2t']['R@1'], 200 / 3)
    np.testing.assert_allclose(ours.get('R@1', 'i2t'), peer['i2t']['R@1'])
    np.testing.assert_allclose(ours.get('R@1', 't2i'), peer['t2i']['R@1'])
    for d in ('i2t', 't2i'):
        np.testing.assert_allclose([ours.get('MedR', d), ours.get('MeanR', d)], [peer[d]['MedianR'], peer[d]['MeanR']])


# ----------------------------------------------------------------------------------------------------------------------
# 2. torchmetrics 1.9 functional retrieval
# ----------------------------------------------------------------------------------------------------------------------
def _torchmetrics_means(S, rel, ks_ap, ks_p, ks_hit):
    import torch
    from torchmetrics.functional.retrieval import (retrieval_average_precision, retrieval_hit_rate,
                                                   retrieval_precision)
    out = {}
    P, T = torch.from_numpy(np.ascontiguousarray(S)), torch.from_numpy(np.ascontiguousarray(rel))
    for k in ks_ap:
        top = None if k == 'N' else k
        out[f'mAP@{k}'] = float(np.mean([retrieval_average_precision(p, t, top_k=top).item() for p, t in zip(P, T)]))
    for k in ks_p:
        out[f'P@{k}'] = float(np.mean([retrieval_precision(p, t, top_k=k).item() for p, t in zip(P, T)]))
    for k in ks_hit:
        out[f'R@{k}'] = float(np.mean([retrieval_hit_rate(p, t, top_k=k).item() for p, t in zip(P, T)]))
    return out


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_torchmetrics_positive_scores(dtype):
    "AP@K (top_k), P@K and HitRate@K of torchmetrics == the 'torchmetrics' preset (category and instance R@K)."
    rng = np.random.default_rng(201 if dtype == np.float64 else 202)
    L = multi_hot(rng, 30, 5, p=0.2, empty_rows=[7])          # image 7: no relevant caption (torchmetrics -> 0)
    split = EvaluationSplit.uniform(30, 4, labels=L)
    S = distinct_scores(rng, 30, 120, low=0.01, dtype=dtype)  # all > 0: the score <= 0 rule does not bite
    S[split.cap2img, np.arange(120)] += dtype(0.2)
    assert len(np.unique(S)) == S.size
    cat = {'category': ['mAP@5', 'mAP@10', 'mAP@N', 'P@5', 'P@10', 'R@1', 'R@5'],
           'instance': ['R@1', 'R@5', 'R@10']}
    res = evaluate(split, S, conventions='torchmetrics', metrics=cat, granularities=['category', 'instance'])
    inst_rel = split.cap2img[None, :] == np.arange(30)[:, None]
    for d, Sq, R in directions(S, category_relevance(L, split.cap2img)):
        tm = _torchmetrics_means(Sq, R, [5, 10, 'N'], [5, 10], [1, 5])
        for name, v in tm.items():
            np.testing.assert_allclose(res.get(name, d, 'category'), v, rtol=1e-6, atol=1e-7, err_msg=f'{d} {name}')
    for d, Sq, R in directions(S, inst_rel):
        tm = _torchmetrics_means(Sq, R, [], [], [1, 5, 10])
        for name, v in tm.items():
            np.testing.assert_allclose(res.get(name, d, 'instance'), v, rtol=1e-6, atol=1e-7, err_msg=f'{d} {name}')
    assert 0 < res.get('mAP@10', 'i2t', 'category') < 1


@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_torchmetrics_nonpositive_rule_P6(dtype):
    "P6: torchmetrics >= 1.7.4 counts items scored <= 0 as non-relevant for AP and P; the preset reproduces it."
    rng = np.random.default_rng(203 if dtype == np.float64 else 204)
    L = multi_hot(rng, 24, 5, p=0.25)
    split = EvaluationSplit.uniform(24, 3, labels=L)
    S = distinct_scores(rng, 24, 72, low=-0.5, high=0.5, dtype=dtype)  # mixed signs: about half the items <= 0
    S[0, :] -= dtype(1.0)                                      # one image whose every caption scores < 0
    assert len(np.unique(S)) == S.size
    rel = category_relevance(L, split.cap2img)
    names = ['mAP@5', 'mAP@10', 'mAP@N', 'P@5', 'P@10']
    res = evaluate(split, S, conventions='torchmetrics', metrics={'category': names}, granularities=['category'])
    plain = evaluate(split, S, conventions=get_conventions('torchmetrics', nonpositive_irrelevant=False),
                     metrics={'category': names}, granularities=['category'])
    for d, Sq, R in directions(S, rel):
        tm = _torchmetrics_means(Sq, R, [5, 10, 'N'], [5, 10], [])
        for name in names:
            # torchmetrics sums AP terms in float32: agreement to float32 precision
            np.testing.assert_allclose(res.get(name, d, 'category'), tm[name], rtol=1e-6, atol=1e-7,
                                       err_msg=f'{d} {name}')
        # the rule really bites (either way: dropping low-scored relevant items can raise AP over the hits)
        assert abs(plain.get('mAP@N', d, 'category') - res.get('mAP@N', d, 'category')) > 1e-3
        assert plain.get('P@10', d, 'category') > res.get('P@10', d, 'category')
    # the reference's worked example (the P1 ranking), shifted by -1: AP@2 0.5 -> 0, P@2 0.5 -> 0
    import torch
    from torchmetrics.functional.retrieval import retrieval_average_precision, retrieval_precision
    scores, rel1 = in_rank_order([[0, 1, 0, 0, 1, 1]])
    for shift, ap2 in ((0.0, 0.5), (-10.0, 0.0)):
        p, t = torch.tensor(scores[0] + shift), torch.tensor(rel1[0])
        got = preset_values(scores + shift, rel1, 'torchmetrics', ['mAP@2', 'P@2'])
        np.testing.assert_allclose([got['mAP@2'], got['P@2']], [ap2, ap2])
        np.testing.assert_allclose([retrieval_average_precision(p, t, top_k=2).item(),
                                    retrieval_precision(p, t, top_k=2).item()], [ap2, ap2])


def test_torchmetrics_hit_rate_ignores_nonpositive_rule_P6():
    "P6: HitRate stays 1.0 on the shifted ranking; the preset's R@K (= HitRate) should too."
    import torch
    from torchmetrics.functional.retrieval import retrieval_hit_rate
    scores, rel = in_rank_order([[0, 1, 0, 0, 1, 1]])
    shifted = scores - 10.0
    assert retrieval_hit_rate(torch.tensor(shifted[0]), torch.tensor(rel[0]), top_k=2).item() == 1.0
    got = preset_values(shifted, rel, 'torchmetrics', ['R@2'])
    np.testing.assert_allclose(got['R@2'], 1.0)               # the rule leaves the hit rate alone


def test_torchmetrics_r_precision_has_no_nonpositive_rule():
    "torchmetrics 1.9 retrieval_r_precision counts hits in the top R whatever their scores; the preset's R-Precision too."
    import torch
    from torchmetrics.functional.retrieval import retrieval_r_precision, retrieval_precision
    split = EvaluationSplit(np.array([0, 1, 0, 0, 1, 0]), labels=np.array([[1, 0], [0, 1]]))
    S = np.array([[.9, .5, -.1, -.2, .3, -.3], [.1, .2, .3, .4, .5, .6]])
    rel = category_relevance(split.labels, split.cap2img)
    peer = [retrieval_r_precision(torch.tensor(p), torch.tensor(t)).item() for p, t in zip(S, rel)]
    np.testing.assert_allclose(peer, [0.5, 0.5])
    for ties in ('stable', 'expected'):   # the rank path and the tie-group path
        res = evaluate(split, S, conventions=get_conventions('torchmetrics', ties=ties), granularities=['category'],
                       metrics={'category': ['R-Precision', 'P@4']}, directions=['i2t'], keep_per_query=True)
        np.testing.assert_allclose(res.per_query[('i2t', 'category', 'R-Precision', 'R')], peer)
        np.testing.assert_allclose(res.get('R-Precision', 'i2t', 'category'), np.mean(peer))
        # P@K keeps the rule (torchmetrics' retrieval_precision applies it: image 0 keeps 1 relevant caption above 0)
        tm_p4 = [retrieval_precision(torch.tensor(p), torch.tensor(t), top_k=4).item() for p, t in zip(S, rel)]
        np.testing.assert_allclose(res.per_query[('i2t', 'category', 'P@K', 4)], tm_p4)


# ----------------------------------------------------------------------------------------------------------------------
# 3. ranx and pytrec_eval (trec_eval as pinned in 2016)
# ----------------------------------------------------------------------------------------------------------------------
def _qrels_run(Sq, R):
    "pytrec_eval / ranx dicts: string ids zero-padded so that sorted ids (ranx sorts queries) keep the row order."
    qrels = {f'q{i:04d}': {f'd{j:04d}': 1 for j in np.flatnonzero(R[i])} for i in range(len(R))}
    run = {f'q{i:04d}': {f'd{j:04d}': float(Sq[i, j]) for j in range(Sq.shape[1])} for i in range(len(Sq))}
    return qrels, run


def _category_problem(seed, n_images, cpi, n_classes=5, p=0.2):
    rng = np.random.default_rng(seed)
    L = multi_hot(rng, n_images, n_classes, p=p)   # every image has a label: every query has a relevant item
    split = EvaluationSplit.uniform(n_images, cpi, labels=L)
    S = distinct_scores(rng, n_images, n_images * cpi)
    S[split.cap2img, np.arange(split.n_captions)] += 0.2
    return split, S, category_relevance(L, split.cap2img)


def _pr_curve(res, d):
    t = res.table
    t = t[(t.metric == 'PR') & (t.direction == d) & (t.granularity == 'category')]
    assert list(t.k) == [f'{x:.1f}' for x in _PR_LEVELS]
    return t.value.to_numpy()


def test_ranx_against_ranx_preset():
    "ranx map@k, precision@k, hit_rate@k and 11-point interpolated precision == the 'ranx' preset."
    from ranx import Qrels, Run, evaluate as ranx_evaluate
    from ranx.metrics import interpolated_precision_at_recall
    split, S, rel = _category_problem(301, 25, 4)
    names = ['mAP@5', 'mAP@10', 'mAP@N', 'P@5', 'P@10', 'R@1', 'R@5', 'PR']
    res = evaluate(split, S, conventions='ranx', metrics={'category': names}, granularities=['category'])
    for d, Sq, R in directions(S, rel):
        qrels, run = Qrels(_qrels_run(Sq, R)[0]), Run(_qrels_run(Sq, R)[1])
        got = ranx_evaluate(qrels, run, ['map@5', 'map@10', 'map', 'precision@5', 'precision@10', 'hit_rate@1',
                                         'hit_rate@5'], make_comparable=True)
        mine = [res.get(n, d, 'category') for n in names[:-1]]
        theirs = [got[m] for m in ['map@5', 'map@10', 'map', 'precision@5', 'precision@10', 'hit_rate@1', 'hit_rate@5']]
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12, err_msg=d)
        ipr = interpolated_precision_at_recall(qrels.to_typed_list(), run.to_typed_list()).mean(0)
        np.testing.assert_allclose(_pr_curve(res, d), ipr, rtol=1e-9, atol=1e-12, err_msg=f'{d} PR')
    assert 0 < res.get('mAP@10', 'i2t', 'category') < 1


def test_pytrec_eval_against_trec_eval_preset():
    "pytrec_eval map_cut_K, map, P_K, success_K and iprec_at_recall_* == the 'trec_eval' preset."
    import pytrec_eval
    split, S, rel = _category_problem(302, 30, 5)
    names = ['mAP@5', 'mAP@10', 'mAP@N', 'P@5', 'P@10', 'R@1', 'R@5', 'R@10', 'PR']
    res = evaluate(split, S, conventions='trec_eval', metrics={'category': names}, granularities=['category'])
    trec = ['map_cut_5', 'map_cut_10', 'map', 'P_5', 'P_10', 'success_1', 'success_5', 'success_10']
    for d, Sq, R in directions(S, rel):
        qrels, run = _qrels_run(Sq, R)
        ev = pytrec_eval.RelevanceEvaluator(qrels, {'map_cut.5,10', 'map', 'P.5,10', 'success.1,5,10',
                                                    'iprec_at_recall'})
        per_q = ev.evaluate(run)
        assert len(per_q) == len(R)                     # no query dropped
        mean = {m: np.mean([v[m] for v in per_q.values()]) for m in next(iter(per_q.values()))}
        mine = [res.get(n, d, 'category') for n in names[:-1]]
        np.testing.assert_allclose(mine, [mean[m] for m in trec], rtol=1e-9, atol=1e-12, err_msg=d)
        ipr = [mean[f'iprec_at_recall_{x:.2f}'] for x in _PR_LEVELS]
        np.testing.assert_allclose(_pr_curve(res, d), ipr, rtol=1e-9, atol=1e-12, err_msg=f'{d} PR')
    # R-Precision: trec's Rprec == fico's precision_at_k(ranked, 'R') on the same rankings
    Sq, R = S, rel
    qrels, run = _qrels_run(Sq, R)
    rp = pytrec_eval.RelevanceEvaluator(qrels, {'Rprec'}).evaluate(run)
    np.testing.assert_allclose(precision_at_k(rank_relevant(Sq, R), 'R'), [rp[f'q{i:04d}']['Rprec'] for i in range(len(R))],
                               rtol=1e-12)


def test_pytrec_eval_tied_scores_reverse_docno():
    """Beyond the tie-free checks: trec_eval breaks score ties by reverse docno order; with zero-padded docnos in
    gallery order that is the 'trec_eval' preset's 'reverse' rule, so even heavily tied scores agree."""
    import pytrec_eval
    rng = np.random.default_rng(304)
    L = multi_hot(rng, 20, 4, p=0.3)
    split = EvaluationSplit.uniform(20, 3, labels=L)
    S = rng.integers(0, 4, (20, 60)).astype(np.float64)       # 4 score levels: ties everywhere
    rel = category_relevance(L, split.cap2img)
    names = ['mAP@5', 'mAP@10', 'mAP@N', 'P@5', 'P@10', 'R@1', 'PR']
    res = evaluate(split, S, conventions='trec_eval', metrics={'category': names}, granularities=['category'])
    stable = evaluate(split, S, conventions=get_conventions('trec_eval', ties='stable'), metrics={'category': names},
                      granularities=['category'])
    for d, Sq, R in directions(S, rel):
        qrels, run = _qrels_run(Sq, R)
        per_q = pytrec_eval.RelevanceEvaluator(qrels, {'map_cut.5,10', 'map', 'P.5,10', 'success.1',
                                                       'iprec_at_recall'}).evaluate(run)
        mean = {m: np.mean([v[m] for v in per_q.values()]) for m in next(iter(per_q.values()))}
        trec = ['map_cut_5', 'map_cut_10', 'map', 'P_5', 'P_10', 'success_1']
        np.testing.assert_allclose([res.get(n, d, 'category') for n in names[:-1]], [mean[m] for m in trec],
                                   rtol=1e-9, atol=1e-12, err_msg=d)
        np.testing.assert_allclose(_pr_curve(res, d), [mean[f'iprec_at_recall_{x:.2f}'] for x in _PR_LEVELS],
                                   rtol=1e-9, atol=1e-12)
        assert abs(stable.get('mAP@10', d, 'category') - res.get('mAP@10', d, 'category')) > 1e-3  # ties matter


def test_ranx_pytrec_eval_agree_per_query_on_random_relevance():
    "Arbitrary query/gallery relevance (not label-derived): per-query AP@K (denominator R) and 11-pt PR agree."
    import pytrec_eval
    from ranx import Qrels, Run
    from ranx.metrics import average_precision as ranx_ap, interpolated_precision_at_recall
    rng = np.random.default_rng(303)
    Sq = distinct_scores(rng, 40, 60)
    R = rng.random((40, 60)) < rng.uniform(0.02, 0.3, (40, 1))
    R[np.arange(40), rng.integers(0, 60, 40)] = True
    ranked = rank_relevant(Sq, R, 'stable')
    qrels, run = _qrels_run(Sq, R)
    per_q = pytrec_eval.RelevanceEvaluator(qrels, {'map_cut.10', 'map', 'iprec_at_recall'}).evaluate(run)
    order = [f'q{i:04d}' for i in range(40)]
    np.testing.assert_allclose(average_precision(ranked, 10, 'r'), [per_q[q]['map_cut_10'] for q in order], rtol=1e-12)
    np.testing.assert_allclose(average_precision(ranked, 'N', 'r'), [per_q[q]['map'] for q in order], rtol=1e-12)
    np.testing.assert_allclose(pr_curve_11pt(ranked, 'trec_2016'),
                               [[per_q[q][f'iprec_at_recall_{x:.2f}'] for x in _PR_LEVELS] for q in order], rtol=1e-12)
    rq, rr = Qrels(qrels), Run(run)
    np.testing.assert_allclose(ranx_ap(rq.to_typed_list(), rr.to_typed_list(), 10), average_precision(ranked, 10, 'r'),
                               rtol=1e-12)
    np.testing.assert_allclose(interpolated_precision_at_recall(rq.to_typed_list(), rr.to_typed_list()),
                               pr_curve_11pt(ranked, 'trec_2016'), rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# 4. eccv_caption 0.1.0 metric functions
# ----------------------------------------------------------------------------------------------------------------------
def _eccv_problem(seed, nq, ng, max_pos=8):
    rng = np.random.default_rng(seed)
    S = distinct_scores(rng, nq, ng)
    rel = np.zeros((nq, ng), bool)
    for q in range(nq):
        rel[q, rng.choice(ng, rng.integers(1, max_pos + 1), replace=False)] = True
    return S, rel


def _eccv_dicts(Sq, R):
    targets = {q: [int(j) for j in np.argsort(-Sq[q], kind='stable')] for q in range(len(Sq))}
    gts = {q: [int(j) for j in np.flatnonzero(R[q])] for q in range(len(R))}
    return targets, gts


def test_eccv_metric_functions_against_fico_metrics():
    "eccv_caption's rprecision / mAP@R / recall_at_k on ranked id lists == precision_at_k(ranked, 'R') / AP@R (den R) / recall_at_k."
    from eccv_caption import _metrics as E
    S, rel = _eccv_problem(401, 30, 80)
    ranked = rank_relevant(S, rel, 'stable')
    targets, gts = _eccv_dicts(S, rel)
    # the pure per-query functions
    np.testing.assert_allclose(precision_at_k(ranked, 'R'), [E.rprecision(targets[q], set(gts[q])) for q in range(30)],
                               rtol=1e-12)
    for K in (1, 5, 10):
        np.testing.assert_allclose(recall_at_k(ranked, K), [E.recall_at_k(targets[q], set(gts[q]), K) for q in range(30)])
    # mAP@R as eccv builds it: (1/R) sum_{r<=R} rprecision(top r) * rel_r
    map_r = [np.mean([E.rprecision(targets[q], set(gts[q]), r) if targets[q][r - 1] in gts[q] else 0
                      for r in range(1, len(gts[q]) + 1)]) for q in range(30)]
    np.testing.assert_allclose(average_precision(ranked, 'R', 'r'), map_r, rtol=1e-12)
    # the dataset-level aggregates
    agg = E.compute_eccv_metrics(targets, gts)
    np.testing.assert_allclose([_reduce_mean(average_precision(ranked, 'R', 'r')), _reduce_mean(precision_at_k(ranked, 'R')),
                                _reduce_mean(recall_at_k(ranked, 1))],
                               [agg['eccv_map_at_r'], agg['eccv_rprecision'], agg['eccv_r1']], rtol=1e-12)
    np.testing.assert_allclose(_reduce_mean(precision_at_k(ranked, 'R')), E.compute_rprecision(targets, gts), rtol=1e-12)
    for K in (5, 10):
        np.testing.assert_allclose(_reduce_mean(recall_at_k(ranked, K)), E.compute_r_at_k(targets, gts, K), rtol=1e-12)
    assert 0 < agg['eccv_map_at_r'] < 1


def test_eccv_preset_extended_positives():
    "evaluate(..., conventions='eccv', positives=...) == eccv_caption's aggregates, in both directions."
    from eccv_caption import _metrics as E
    rng = np.random.default_rng(402)
    split = EvaluationSplit.uniform(20, 5)
    S = distinct_scores(rng, 20, 100)
    S[split.cap2img, np.arange(100)] += 0.3
    # extended positives: the own image/captions plus a few random extra ones (as ECCV Caption's machine-verified)
    rel = split.cap2img[None, :] == np.arange(20)[:, None]
    rel |= rng.random((20, 100)) < 0.04
    positives = {'i2t': [np.flatnonzero(r) for r in rel], 't2i': [np.flatnonzero(c) for c in rel.T]}
    res = evaluate(split, S, conventions='eccv', positives=positives, granularities=['extended', 'instance'])
    for d, Sq, R in directions(S, rel):
        targets, gts = _eccv_dicts(Sq, R)
        agg = E.compute_eccv_metrics(targets, gts)
        np.testing.assert_allclose([res.get('mAP@R', d, 'extended'), res.get('R-Precision', d, 'extended'),
                                    res.get('R@1', d, 'extended')],
                                   [agg['eccv_map_at_r'], agg['eccv_rprecision'], agg['eccv_r1']], rtol=1e-12,
                                   err_msg=d)
        for K in (5, 10):
            np.testing.assert_allclose(res.get(f'R@{K}', d, 'extended'), E.compute_r_at_k(targets, gts, K), rtol=1e-12)
    # instance R@K in fractions, as eccv's (and CLIP_benchmark's) units
    inst = split.cap2img[None, :] == np.arange(20)[:, None]
    targets, gts = _eccv_dicts(S, inst)
    np.testing.assert_allclose(res.get('R@1', 'i2t', 'instance'), E.compute_r_at_k(targets, gts, 1), rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# 5. the reference's worked examples
# ----------------------------------------------------------------------------------------------------------------------
P1_REL = [0, 1, 0, 0, 1, 1]   # R = 3, relevant at ranks 2, 5, 6


def test_P1_ap_normalisation_metric_functions():
    r = ranked_lists([P1_REL])
    np.testing.assert_allclose(average_precision(r, 2, 'hits'), [0.5])        # fico / torchmetrics / UCCH / DJSRH
    np.testing.assert_allclose(average_precision(r, 2, 'min_k_r'), [0.25])
    np.testing.assert_allclose(average_precision(r, 2, 'r'), [1 / 6])         # trec map_cut.2 / ranx map@2
    np.testing.assert_allclose(average_precision(r, 'R', 'r'), [1 / 6])       # eccv mAP@R
    for den in ('hits', 'min_k_r', 'r'):                                        # K = 1: no hit in the top 1 -> 0
        np.testing.assert_allclose(_reduce_mean(average_precision(r, 1, den), 'zero'), 0.0)


def test_P1_through_presets_and_peers():
    "P1 through evaluate's presets and the real peers on the same single ranking."
    import pytrec_eval
    import torch
    from eccv_caption import _metrics as E
    from torchmetrics.functional.retrieval import retrieval_average_precision
    scores, rel = in_rank_order([P1_REL])
    np.testing.assert_allclose(preset_values(scores, rel, 'fico-itr', ['mAP@2'])['mAP@2'], 50.0)
    np.testing.assert_allclose(preset_values(scores, rel, 'torchmetrics', ['mAP@2'])['mAP@2'], 0.5)
    np.testing.assert_allclose(preset_values(scores, rel, 'ucch', ['mAP@2'])['mAP@2'], 0.5)
    np.testing.assert_allclose(preset_values(scores, rel, 'trec_eval', ['mAP@2'])['mAP@2'], 1 / 6)
    np.testing.assert_allclose(preset_values(scores, rel, 'ranx', ['mAP@2'])['mAP@2'], 1 / 6)
    np.testing.assert_allclose(preset_values(scores, rel, 'eccv', ['mAP@R'], 'extended')['mAP@R'], 1 / 6)
    np.testing.assert_allclose(preset_values(scores, rel, get_conventions('dcmh', ap_denominator='min_k_r'),
                                             ['mAP@2'])['mAP@2'], 0.25)
    # the peers themselves
    np.testing.assert_allclose(retrieval_average_precision(torch.tensor(scores[0]), torch.tensor(rel[0]), top_k=2).item(),
                               0.5)
    qrels, run = _qrels_run(scores, rel)
    np.testing.assert_allclose(pytrec_eval.RelevanceEvaluator(qrels, {'map_cut.2'}).evaluate(run)['q0000']['map_cut_2'],
                               1 / 6)
    targets, gts = _eccv_dicts(scores, rel)
    np.testing.assert_allclose(E.compute_eccv_metrics(targets, gts)['eccv_map_at_r'], 1 / 6)


def test_P1_through_evaluate():
    "P1 on a real split: image 0 ranks its 6 captions by relevance [0,1,0,0,1,1] (category level)."
    # image 0 and 1 share label A, image 2 has label B; captions in image 0's rank order
    cap2img = np.array([2, 0, 2, 2, 1, 1])
    split = EvaluationSplit(cap2img, labels=np.array([[1, 0], [1, 0], [0, 1]]))
    rng = np.random.default_rng(501)
    S = np.vstack([np.arange(6, 0, -1) / 10, rng.random((2, 6))])
    out = {}
    for preset in ('fico-itr', 'trec_eval', 'ucch'):
        res = evaluate(split, S, conventions=preset, metrics={'category': ['mAP@1', 'mAP@2', 'mAP@N']},
                       granularities=['category'], directions=['i2t'], keep_per_query=True)
        out[preset] = {k: res.per_query[('i2t', 'category', 'mAP@K', k)][0] for k in (1, 2, 'N')}
    np.testing.assert_allclose([out['fico-itr'][2], out['trec_eval'][2]], [0.5, 1 / 6])
    assert np.isnan(out['fico-itr'][1]) and out['trec_eval'][1] == 0.0     # no hit in the top 1: 'hits' -> NaN (-> 0)
    np.testing.assert_allclose(out['fico-itr']['N'], (1 / 2 + 2 / 5 + 3 / 6) / 3)
    np.testing.assert_allclose(out['trec_eval']['N'], (1 / 2 + 2 / 5 + 3 / 6) / 3)


def test_P2_empty_queries():
    "Two queries, AP@2 = {1.0, 0.0 (relevant only beyond K)}: zero -> 0.5 (fico / torchmetrics), skip -> 1.0 (UCCH)."
    import torch
    from torchmetrics.functional.retrieval import retrieval_average_precision
    rows = [[1, 0, 0, 0], [0, 0, 1, 1]]
    ap = average_precision(ranked_lists(rows), 2, 'hits')
    np.testing.assert_allclose(_reduce_mean(ap, 'zero'), 0.5)
    np.testing.assert_allclose(_reduce_mean(ap, 'skip'), 1.0)
    scores, rel = in_rank_order(rows)
    np.testing.assert_allclose(preset_values(scores, rel, 'fico-itr', ['mAP@2'])['mAP@2'], 50.0)
    np.testing.assert_allclose(preset_values(scores, rel, 'dcmh', ['mAP@2'])['mAP@2'], 0.5)
    np.testing.assert_allclose(preset_values(scores, rel, 'torchmetrics', ['mAP@2'])['mAP@2'], 0.5)
    np.testing.assert_allclose(preset_values(scores, rel, 'ucch', ['mAP@2'])['mAP@2'], 1.0)
    tm = [retrieval_average_precision(torch.tensor(s), torch.tensor(r), top_k=2).item() for s, r in zip(scores, rel)]
    np.testing.assert_allclose(np.mean(tm), 0.5)


def test_P3_hamming_ties():
    "Query 1111, four DB codes all at distance 1, relevant = items 2 and 3: AP 0.417 (index order) vs 1.0 (reversed)."
    tied = np.full((1, 4), -1.0)
    rel = np.array([[0, 0, 1, 1]], bool)
    np.testing.assert_allclose(average_precision(rank_relevant(tied, rel, 'stable'), 'N'), [(1 / 3 + 2 / 4) / 2])
    np.testing.assert_allclose(average_precision(rank_relevant(tied, rel, 'reverse'), 'N'), [1.0])
    # through evaluate with real hash codes: captions 0, 1 -> image 1 (label B), captions 2, 3 -> image 0 (label A)
    split = EvaluationSplit(np.array([1, 1, 0, 0]), labels=np.array([[1, 0], [0, 1]]))
    img = np.array([[1, 1, 1, 1], [0, 0, 0, 0]])
    cap = np.array([[0, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]])
    got = {}
    for preset in ('fico-itr', 'dcmh', 'trec_eval'):
        res = evaluate(split, images=img, captions=cap, measure='hamming', conventions=preset, directions=['i2t'],
                       granularities=['category'], metrics={'category': ['mAP@N']}, keep_per_query=True)
        got[preset] = res.per_query[('i2t', 'category', 'mAP@K', 'N')][0]
    np.testing.assert_allclose([got['fico-itr'], got['dcmh'], got['trec_eval']], [5 / 12, 5 / 12, 1.0])


def test_P4_instance_ties():
    "S = [[.5,.5,.1],[.2,.9,.1],[0,0,1]], cpi=1: reverse ties (fico 1.0.0, VSE, LAVIS) R@1 66.7; stable 100."
    S = np.array([[.5, .5, .1], [.2, .9, .1], [0., 0., 1.]])
    split = EvaluationSplit.uniform(3, 1)
    kw = dict(granularities=['instance'], metrics={'instance': ['R@1']})
    np.testing.assert_allclose(evaluate(split, S, conventions='fico-itr', **kw).get('R@1', 'i2t'), 200 / 3)
    np.testing.assert_allclose(evaluate(split, S, conventions='lavis', **kw).get('R@1', 'i2t'), 200 / 3)
    np.testing.assert_allclose(evaluate(split, S, conventions='default', **kw).get('R@1', 'i2t'), 100.0)
    np.testing.assert_allclose(evaluate(split, S, conventions='clip_benchmark', **kw).get('R@1', 'i2t'), 1.0)


def test_P7_recall_definitions():
    "5 GT captions, one in the top K: ITR R@K = 1 (HitRate), torchmetrics / ranx / trec recall = 0.2."
    import pytrec_eval
    import torch
    from ranx import Qrels, Run, evaluate as ranx_evaluate
    from torchmetrics.functional.retrieval import retrieval_hit_rate, retrieval_recall
    split = EvaluationSplit.uniform(2, 5)
    # image 0: own caption 0 first, then image 1's five captions, then its own captions 1..4 (and symmetrically)
    S = np.array([[1.0, .1, .2, .3, .4, .9, .8, .7, .6, .5],
                  [.9, .8, .7, .6, .5, 1.0, .1, .2, .3, .4]])
    res = evaluate(split, S, conventions='default', granularities=['instance'], directions=['i2t'],
                   metrics={'instance': ['R@5']})
    np.testing.assert_allclose(res.get('R@5', 'i2t'), 100.0)
    rel = split.cap2img[None, :] == np.arange(2)[:, None]
    ranked = rank_relevant(S, rel)
    np.testing.assert_allclose(recall_at_k(ranked, 5), [1.0, 1.0])
    np.testing.assert_allclose(hits_at_k(ranked, 5) / ranked.n_relevant, [0.2, 0.2])
    P, T = torch.tensor(S), torch.tensor(rel)
    np.testing.assert_allclose([retrieval_recall(p, t, top_k=5).item() for p, t in zip(P, T)], [0.2, 0.2])
    np.testing.assert_allclose([retrieval_hit_rate(p, t, top_k=5).item() for p, t in zip(P, T)], [1.0, 1.0])
    qrels, run = _qrels_run(S, rel)
    np.testing.assert_allclose(ranx_evaluate(Qrels(qrels), Run(run), 'recall@5'), 0.2)
    trec = pytrec_eval.RelevanceEvaluator(qrels, {'recall.5'}).evaluate(run)
    np.testing.assert_allclose([trec['q0000']['recall_5'], trec['q0001']['recall_5']], [0.2, 0.2])


def test_P9_median_rank():
    "rank0 = [0,1,2,3]: floor(median)+1 = 2 (VSE / fico), not the 1-based median 2.5; MeanR = 2.5."
    np.testing.assert_allclose(median_rank(np.array([1., 2., 3., 4.])), 2.0)
    np.testing.assert_allclose(mean_rank(np.array([1., 2., 3., 4.])), 2.5)
    # image i has i other captions scored above its own (0.5): rank0 = i
    S = np.where(np.arange(4)[None, :] < np.arange(4)[:, None], 0.9, 0.1)
    np.fill_diagonal(S, 0.5)
    for preset in ('fico-itr', 'default', 'lavis'):
        res = evaluate(EvaluationSplit.uniform(4, 1), S, conventions=preset, granularities=['instance'],
                       directions=['i2t'], metrics={'instance': ['MedR', 'MeanR', 'R@1']})
        np.testing.assert_allclose([res.get('MedR', 'i2t'), res.get('MeanR', 'i2t'), res.get('R@1', 'i2t')],
                                   [2.0, 2.5, 25.0], err_msg=preset)


P11_REL = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0]   # R = 3, relevant at ranks 1, 5, 9
P11_TEXTBOOK = [1, 1, 1, 1, .4, .4, .4, 1 / 3, 1 / 3, 1 / 3, 1 / 3]
P11_TREC2016 = [1, 1, 1, 1, .4, .4, .4, .4, 1 / 3, 1 / 3, 1 / 3]     # r = 0.7: int(0.7*3 + 0.9) = 2 hits -> .4
P11_TRECV10 = [1, 1, 1, 1, 1, .4, .4, .4, .4, 1 / 3, 1 / 3]          # round(r*R): r = 0.4 -> 1.0, r = 0.8 -> .4


def test_P11_pr_curve_rules():
    r = ranked_lists([P11_REL])
    np.testing.assert_allclose(pr_curve_11pt(r, 'textbook')[0], P11_TEXTBOOK)
    np.testing.assert_allclose(pr_curve_11pt(r, 'trec_2016')[0], P11_TREC2016)
    np.testing.assert_allclose(pr_curve_11pt(r, 'trec_v10')[0], P11_TRECV10)
    scores, rel = in_rank_order([P11_REL])
    np.testing.assert_allclose(preset_values(scores, rel, 'default', ['PR'])['PR'], 100 * np.array(P11_TEXTBOOK))
    np.testing.assert_allclose(preset_values(scores, rel, 'trec_eval', ['PR'])['PR'], P11_TREC2016)
    np.testing.assert_allclose(preset_values(scores, rel, 'ranx', ['PR'])['PR'], P11_TREC2016)
    np.testing.assert_allclose(preset_values(scores, rel, 'trec_eval_v10', ['PR'])['PR'], P11_TRECV10)


def test_P11_against_ranx_and_pytrec_eval():
    import pytrec_eval
    from ranx import Qrels, Run
    from ranx.metrics import interpolated_precision_at_recall
    scores, rel = in_rank_order([P11_REL])
    qrels, run = _qrels_run(scores, rel)
    trec = pytrec_eval.RelevanceEvaluator(qrels, {'iprec_at_recall'}).evaluate(run)['q0000']
    np.testing.assert_allclose([trec[f'iprec_at_recall_{x:.2f}'] for x in _PR_LEVELS], P11_TREC2016)
    ranx_curve = interpolated_precision_at_recall(Qrels(qrels).to_typed_list(), Run(run).to_typed_list())[0]
    np.testing.assert_allclose(ranx_curve, P11_TREC2016)


def test_ranked_from_relevance_is_usable():
    "The exported helper the notebook uses for P1 / P11 should work from the installed module."
    from fico_itr.metrics import ranked_from_relevance
    r = ranked_from_relevance([P1_REL])
    np.testing.assert_array_equal(r.per_query()[0], [2, 5, 6])
