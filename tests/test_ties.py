"""The `expected` tie rule: exact expectations over random orders within tie groups.

Checked against (1) enumeration of every order of every tie group on small inputs, for every metric, K and AP
denominator, tie groups straddling K included; (2) the mean of many random tie orders at COCO scale (Monte Carlo);
(3) every fixed rule on tie-free scores; (4) the count path (integer scores) against the sort path.
"""
from itertools import permutations, product
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from hypothesis.extra.numpy import arrays

from fico_itr.core import EvaluationSplit, get_conventions
from fico_itr import metrics as M, ties as T
from fico_itr.ranking import RankedRelevance
from fico_itr.evaluate import evaluate, tie_report
from fico_itr.synthetic import coco5k_like
from _helpers import raises

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def every_order(scores, rel):
    "Relevance in rank order for every order of the items within each tie group of one query."
    groups = [np.flatnonzero(scores == v) for v in np.unique(scores)[::-1]]
    for perms in product(*(permutations(g) for g in groups)):
        yield rel[np.concatenate(perms)]


def enumerated_mean(scores, rel, metric):
    "Mean over every order; an order where the metric is undefined counts 0; NaN if undefined in every order."
    ranked = scores if isinstance(scores, RankedRelevance) else all_orders(scores, rel)
    vals = np.asarray(metric(ranked), dtype=np.float64)
    return np.nan if np.isnan(vals).all() else np.nan_to_num(vals, nan=0.0).mean()


def all_orders(scores, rel):
    "Every order as one RankedRelevance with a row per order (the fixed-order metrics then run vectorised)."
    return M.ranked_from_relevance(np.array(list(every_order(scores, rel))))


small = st.integers(1, 3).flatmap(lambda B: st.integers(1, 7).flatmap(lambda m: st.tuples(
    arrays(np.int16, (B, m), elements=st.integers(0, 2)),           # 3 values over up to 7 items: groups straddle K
    arrays(np.bool_, (B, m)))))


@SETTINGS
@given(small, st.sampled_from(['int16', 'float32', 'float16']))
def test_expectation_equals_the_mean_over_every_order(mats, kind):
    scores, rel = mats
    s = scores if kind == 'int16' else scores.astype(kind) / 2      # counts, the float sort, or half-precision keys
    g = T.tie_groups(s, rel)
    m = scores.shape[1]
    for q in range(len(scores)):
        sq, rq = all_orders(scores[q], rel[q]), rel[q]
        gq = T.tie_groups(s[q:q + 1], rel[q:q + 1])
        for K in list(range(1, m + 1)) + ['N', 'R']:
            if K == 'R' and not rq.any(): continue
            if not isinstance(K, str):
                np.testing.assert_allclose(T.expected_recall_at_k(gq, K)[0],
                                           enumerated_mean(sq, rq, lambda r: M.recall_at_k(r, K)) if rq.any() else np.nan)
            np.testing.assert_allclose(T.expected_precision_at_k(gq, K)[0],
                                       enumerated_mean(sq, rq, lambda r: M.precision_at_k(r, K)), atol=1e-12)
            for den in ('hits', 'min_k_r', 'r'):
                np.testing.assert_allclose(T.expected_average_precision(gq, K, den)[0],
                                           enumerated_mean(sq, rq, lambda r: M.average_precision(r, K, den)),
                                           rtol=1e-9, atol=1e-12, err_msg=f'AP@{K} {den}')
        if rq.any():
            np.testing.assert_allclose(T.expected_best_rank(gq)[0], enumerated_mean(sq, rq, M.best_rank))
    # the block's groups are the queries' groups side by side
    assert g.offsets[-1] == len(g.size) and (np.diff(g.offsets) >= 0).all()


@SETTINGS
@given(st.integers(0, 10_000), st.integers(2, 40), st.integers(1, 3))
def test_count_path_equals_sort_path(seed, values, n_rel):
    rng = np.random.default_rng(seed)
    S = rng.integers(-values, values, (20, 1000)).astype(np.int16)    # 80 values x 8 bits <= 1000: the count path
    rels = [rng.random(S.shape) < p for p in (0.01, 0.3, 0.7)[:n_rel]]
    counted = T.tie_groups_multi(S, rels)
    for rel, c in zip(rels, counted):
        sorted_ = T.tie_groups(S, rel, max_values=0)
        for f in ('n_relevant', 'offsets', 'ahead', 'size', 'relevant', 'relevant_ahead'):
            np.testing.assert_array_equal(getattr(c, f), getattr(sorted_, f), err_msg=f)


def test_without_ties_expected_equals_every_fixed_rule():
    rng = np.random.default_rng(0)
    split = EvaluationSplit.uniform(30, 5, labels=rng.random((30, 6)) < .3, name='tie-free')
    S = rng.standard_normal((30, 150))
    met = {'instance': ['R@1', 'R@5', 'MedR', 'MeanR'], 'category': ['mAP@10', 'mAP@N', 'P@10', 'R-Precision', 'PR']}
    ref = evaluate(split, S, metrics=met, conventions=get_conventions(ties='stable')).table.value
    for rule in ('expected', 'random', 'reverse', 'optimistic', 'pessimistic'):
        np.testing.assert_allclose(evaluate(split, S, metrics=met, conventions=get_conventions(ties=rule)).table.value,
                                   ref, rtol=1e-12, err_msg=rule)


def test_evaluate_with_codes_equals_enumeration_per_query():
    "Through the whole loop (Hamming codes, both granularities in one histogram, small blocks) against enumeration."
    rng = np.random.default_rng(3)
    n, cpi = 4, 2
    split = EvaluationSplit.uniform(n, cpi, labels=rng.random((n, 3)) < .5, name='tiny')
    bi, bc = rng.integers(0, 2, (n, 2)), rng.integers(0, 2, (n * cpi, 2))   # 2 bits: 3 distinct scores
    conv = get_conventions(ties='expected', ap_denominator='hits')
    met = {'instance': ['R@1', 'R@2', 'MeanR'], 'category': ['mAP@3', 'mAP@N', 'P@3']}
    res = evaluate(split, images=bi, captions=bc, measure='hamming', conventions=conv, metrics=met, block_size=3,
                   keep_per_query=True)
    S = (bi[:, None, :] == bc[None, :, :]).sum(-1)                              # agreeing bits
    inst = split.cap2img[None, :] == np.arange(n)[:, None]
    cat = (split.labels.astype(int) @ split.labels.T.astype(int) > 0)[:, split.cap2img]
    for q in range(n):
        np.testing.assert_allclose(res.per_query[('i2t', 'instance', 'R@K', 1)][q],
                                   enumerated_mean(S[q], inst[q], lambda r: M.recall_at_k(r, 1)))
        np.testing.assert_allclose(res.per_query[('i2t', 'instance', 'MeanR', None)][q],
                                   enumerated_mean(S[q], inst[q], M.best_rank))
        if cat[q].any():
            np.testing.assert_allclose(res.per_query[('i2t', 'category', 'mAP@K', 3)][q],
                                       enumerated_mean(S[q], cat[q], lambda r: M.average_precision(r, 3, 'hits')))


def test_monte_carlo_at_coco_scale_converges_to_the_expectation():
    "COCO-5K shape, 16-bit codes, images to captions: the mean of 8 random tie orders lies within 4 standard errors of the expectation."
    prob = coco5k_like(seed=1)
    hi, hc = prob.hash_codes(16)
    met = {'instance': ['R@1', 'R@10', 'MeanR'], 'category': ['mAP@10', 'mAP@100', 'P@10']}
    kw = dict(images=hi, captions=hc, measure='hamming', metrics=met, progress=False, directions=['i2t'])
    exp = evaluate(prob.split, conventions=get_conventions(ties='expected'), **kw).table
    draws = np.array([evaluate(prob.split, conventions=get_conventions(ties='random', tie_seed=s), **kw).table.value
                      for s in range(8)])
    opt = evaluate(prob.split, conventions=get_conventions(ties='optimistic'), **kw).table.value.to_numpy()
    pes = evaluate(prob.split, conventions=get_conventions(ties='pessimistic'), **kw).table.value.to_numpy()
    mean, se = draws.mean(0), draws.std(0, ddof=1) / np.sqrt(len(draws))
    gap = np.abs(mean - exp.value.to_numpy())
    assert (gap <= 4 * se + 1e-6).all(), exp.assign(mc=mean, se=se, gap=gap)
    assert ((opt - pes) > 20 * se).any()            # the test can tell rules apart: the bounds are far outside the noise
    lo, hi, e = np.minimum(opt, pes), np.maximum(opt, pes), exp.value.to_numpy()   # MeanR: lower is better
    assert ((lo - 1e-9 <= e) & (e <= hi + 1e-9)).all()


def test_tie_report_puts_the_expectation_between_the_bounds():
    prob = coco5k_like(n_images=200, seed=2)
    hi, hc = prob.hash_codes(8)
    tr = tie_report(prob.split, images=hi, captions=hc, measure='hamming', model='8-bit', progress=False)
    assert {'optimistic', 'expected', 'pessimistic', 'spread'} <= set(tr.columns)
    ok = tr.dropna(subset=['expected'])
    lo, hi = np.minimum(ok.optimistic, ok.pessimistic), np.maximum(ok.optimistic, ok.pessimistic)   # MedR/MeanR: lower is better
    assert ((lo <= ok.expected + 1e-9) & (ok.expected <= hi + 1e-9)).all()
    assert (ok.spread > 0).any()


def test_expected_refuses_what_it_cannot_mean():
    from fico_itr.ranking import rank_relevant
    from fico_itr.search import topk_search, evaluate_topk
    raises(lambda: rank_relevant(np.zeros((1, 3)), np.ones((1, 3), bool), 'expected'), 'fico_itr.ties')
    raises(lambda: T.tie_groups(np.zeros((2, 3)), np.ones((2, 4), bool)), 'same shape')
    raises(lambda: T.expected_average_precision(T.tie_groups(np.zeros((1, 3)), np.ones((1, 3), bool)), 2, 'k'), "'hits'")
    raises(lambda: T.expected_recall_at_k(T.tie_groups(np.zeros((1, 3)), np.ones((1, 3), bool)), 4), 'gallery size')
    split = EvaluationSplit.uniform(3, 1, name='t')
    top = topk_search(np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 2)
    raises(lambda: evaluate_topk(split, i2t=top, conventions=get_conventions(ties='expected')), 'top-k lists fix one order')


def test_wide_integer_scores_and_large_groups():
    "Integer scores far from zero or with a huge range, and R@K of very large tie groups (no cancellation)."
    rel = np.array([[1, 0, 1]], bool)
    for s in (np.array([[40000, 40001, 40001]], np.int32), np.array([[65534, 65535, 65535]], np.uint16),
              np.array([[2 ** 63 + 5, 2 ** 63 + 7, 2 ** 63 + 7]], np.uint64)):
        np.testing.assert_allclose(T.expected_best_rank(T.tie_groups(s, rel)), [1.5])   # item 2 tied with 1 at the top
    huge = np.array([[0, 2 ** 62, 2 ** 62]], np.int64)
    np.testing.assert_allclose(T.expected_best_rank(T.tie_groups(huge, rel)), [1.5])
    np.testing.assert_allclose(T.expected_best_rank(T.tie_groups(np.array([[0, 1, 2 ** 62 + 1]]), np.array([[0, 0, 1]], bool))), [1.0])
    from fico_itr.ranking import rank_relevant
    S = np.zeros((1, 1000), np.int64); S[0, 0], S[0, 1] = 2 ** 55, -2 ** 55
    r = np.zeros((1, 1000), bool); r[0, 1] = True
    for rule in ('stable', 'random', 'pessimistic'): assert rank_relevant(S, r, rule).first[0] == 1000, rule
    for n in (20_000, 10 ** 6, 10 ** 7, 5 * 10 ** 8):                 # one group, one relevant item, K = 1: exactly 1/n
        g = T.TieGroups(n, np.array([1]), np.array([0, 1]), np.array([0]), np.array([n]), np.array([1]), np.array([0]))
        np.testing.assert_allclose(T.expected_recall_at_k(g, 1), [1 / n], rtol=1e-12)
    g = T.TieGroups(200_000, np.array([3]), np.array([0, 1]), np.array([100_000]), np.array([20_000]), np.array([3]), np.array([0]))
    exact = 1 - np.prod([(20_000 - 3 - i) / (20_000 - i) for i in range(1)])   # K = N + 1: one slot of the group
    np.testing.assert_allclose(T.expected_recall_at_k(g, 100_001), [exact], rtol=1e-12)
