"""Property tests (hypothesis) and brute-force cross-checks of the ranking and metric code.

Every metric is compared against a direct, loop-based definition on small inputs, and the evaluation loop is checked
for the invariances a user relies on: permuting the gallery with its labels, the block size, the thread count and
the tie rule (on tie-free scores) change nothing; metrics stay in their bounds and are monotone where they should be.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from hypothesis.extra.numpy import arrays

from fico_itr.core import EvaluationSplit, get_conventions, TIE_RULES
from fico_itr.ranking import rank_relevant, _first_relevant_rank
from fico_itr import metrics as M
from fico_itr.evaluate import evaluate

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIXED_RULES = [t for t in TIE_RULES if t not in ('random', 'expected')]   # one deterministic order each


# ---------------------------------------------------------------- brute force, one query at a time
def brute_order(scores, rel, ties):
    "Gallery indices in rank order under a tie rule, by Python's stable sort on explicit keys."
    m = len(scores)
    def key(i):
        tb = {'stable': (0, i), 'reverse': (0, -i), 'optimistic': (0 if rel[i] else 1, i),
              'pessimistic': (1 if rel[i] else 0, i)}[ties]
        return (-scores[i],) + tb
    return sorted(range(m), key=key)


def brute_metrics(scores, rel, ties, K, den):
    order = brute_order(scores, rel, ties)
    hits = [bool(rel[i]) for i in order]
    R = sum(hits)
    ranks = [p + 1 for p, h in enumerate(hits) if h]
    first = ranks[0] if ranks else 0
    inK = [r for r in ranks if r <= K]
    num = sum((j + 1) / r for j, r in enumerate(ranks) if r <= K)
    d = {'hits': len(inK), 'min_k_r': min(K, R), 'r': R}[den]
    ap = num / d if d else np.nan
    pk = len(inK) / K
    pr = []
    for i in range(11):
        need = max(1, -(-i * R // 10))
        pr.append(max(j / r for j, r in enumerate(ranks, 1) if j >= need) if R else np.nan)
    return dict(first=first, ranks=ranks, ap=ap, pk=pk, pr=pr, R=R)


score_mats = st.integers(1, 6).flatmap(lambda B: st.integers(1, 12).flatmap(lambda m: st.tuples(
    arrays(np.int16, (B, m), elements=st.integers(0, 3)),          # few values: many ties
    arrays(np.bool_, (B, m)))))


@SETTINGS
@given(score_mats, st.sampled_from(FIXED_RULES), st.sampled_from(['hits', 'min_k_r', 'r']), st.integers(1, 12),
       st.booleans())
def test_ranking_and_metrics_match_brute_force(mats, ties, den, K, as_float):
    scores, rel = mats
    K = min(K, scores.shape[1])
    s = scores.astype(np.float32) / 3 if as_float else scores
    ranked = rank_relevant(s, rel, ties)
    counted = _first_relevant_rank(s, rel, ties)
    ap = M.average_precision(ranked, K, den)
    pk = M.precision_at_k(ranked, K)
    pr = M.pr_curve_11pt(ranked)
    for q in range(len(scores)):
        b = brute_metrics(list(s[q]), list(rel[q]), ties, K, den)
        assert ranked.per_query()[q].tolist() == b['ranks']
        assert ranked.first[q] == counted.first[q] == b['first']
        np.testing.assert_allclose(ap[q], b['ap'], equal_nan=True)
        np.testing.assert_allclose(pk[q], b['pk'])
        np.testing.assert_allclose(pr[q], b['pr'], equal_nan=True)


# ---------------------------------------------------------------- the evaluation loop
def random_problem(seed, n_images=12, cpi=3, n_classes=4, dim=6):
    rng = np.random.default_rng(seed)
    labels = rng.random((n_images, n_classes)) < 0.4
    labels[~labels.any(1), 0] = True
    split = EvaluationSplit.uniform(n_images, cpi, labels=labels, name='prop')
    S = rng.standard_normal((n_images, n_images * cpi))  # continuous: no ties
    return split, S


METRICS = {'instance': ['R@1', 'R@3', 'R@5', 'MedR', 'MeanR'],
           'category': ['mAP@1', 'mAP@3', 'mAP@5', 'mAP@N', 'P@1', 'P@5', 'PR', 'R-Precision', 'mAP@R']}


def values(res):
    t = res.table
    return dict(zip(zip(t.direction, t.granularity, t.metric, t.k), t.value))


@SETTINGS
@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_permuting_the_gallery_changes_nothing(seed, pseed):
    split, S = random_problem(seed)
    rng = np.random.default_rng(pseed)
    base = values(evaluate(split, S, metrics=METRICS))
    pc = rng.permutation(split.n_captions)                       # captions with their images
    pi = rng.permutation(split.n_images)                         # images with their labels and captions
    inv = np.argsort(pi)
    split2 = EvaluationSplit(inv[split.cap2img[pc]], labels=split.labels[pi], name='prop')
    S2 = S[pi][:, pc]
    perm = values(evaluate(split2, S2, metrics=METRICS))
    assert base.keys() == perm.keys()
    for k in base:
        np.testing.assert_allclose(perm[k], base[k], rtol=1e-9, err_msg=str(k))


@SETTINGS
@given(st.integers(0, 10_000), st.integers(1, 40), st.integers(1, 2))
def test_block_size_and_threads_change_nothing(seed, block, threads):
    split, S = random_problem(seed)
    a = evaluate(split, S, metrics=METRICS)
    b = evaluate(split, S, metrics=METRICS, block_size=block, n_threads=threads)
    np.testing.assert_array_equal(b.table.value, a.table.value)   # per-query sums: not a bit moves
    assert (a.table.drop(columns='value') == b.table.drop(columns='value')).all().all()


@SETTINGS
@given(st.integers(0, 10_000))
def test_without_ties_every_tie_rule_agrees(seed):
    split, S = random_problem(seed)
    ref = evaluate(split, S, metrics=METRICS).table.value
    for t in TIE_RULES:
        np.testing.assert_allclose(evaluate(split, S, metrics=METRICS, conventions=get_conventions(ties=t)).table.value,
                                   ref, rtol=1e-12)


@SETTINGS
@given(st.integers(0, 10_000), st.booleans())
def test_bounds_monotonicity_and_tie_order(seed, quantise):
    split, S = random_problem(seed)
    if quantise: S = np.round(S)                      # heavy ties
    def run(ties, den='hits'):
        return evaluate(split, S, metrics=METRICS, conventions=get_conventions(ties=ties, ap_denominator=den))
    res = run('stable')
    t = res.table
    pct = t[~t.metric.isin(['MedR', 'MeanR', 'rsum'])].value
    assert ((pct >= 0) & (pct <= 100 + 1e-9)).all()
    for d, gallery in (('i2t', split.n_captions), ('t2i', split.n_images)):
        r = [res.get(f'R@{k}', d) for k in (1, 3, 5)]
        assert r[0] <= r[1] <= r[2]
        assert 1 <= res.get('MedR', d) <= gallery and 1 <= res.get('MeanR', d) <= gallery
        # with the AP denominator R, mAP@K only grows with K
        rr = run('stable', 'r')
        m = [rr.get(f'mAP@{k}', d, 'category') for k in (1, 3, 5)] + [rr.get('mAP@N', d, 'category')]
        assert all(a <= b + 1e-9 for a, b in zip(m, m[1:]))
        # any tie order lies between the optimistic and the pessimistic one
        opt, pes = run('optimistic'), run('pessimistic')
        for name, g in (('R@1', 'instance'), ('R@5', 'instance'), ('mAP@N', 'category'), ('P@5', 'category')):
            for rule in ('stable', 'reverse', 'random', 'expected'):
                v = run(rule).get(name, d, g)
                assert pes.get(name, d, g) - 1e-9 <= v <= opt.get(name, d, g) + 1e-9, (name, d, rule)


def test_memmap_matrix_gives_the_same_numbers(tmp_path):
    split, S = random_problem(3)
    path = tmp_path / 'S.npy'
    np.save(path, S.astype(np.float32))
    mm = np.load(path, mmap_mode='r')
    a = evaluate(split, S.astype(np.float32), metrics=METRICS)
    b = evaluate(split, mm, metrics=METRICS, block_size=5)
    np.testing.assert_allclose(b.table.value, a.table.value, rtol=1e-12)


def test_json_round_trip(tmp_path):
    from fico_itr.evaluate import Results
    split, S = random_problem(4)
    res = evaluate(split, S, metrics=METRICS, conventions=get_conventions('lavis', rerank_depth=3))
    back = Results.from_json(res.to_json(tmp_path / 'r.json'))
    np.testing.assert_allclose(back.table.value, res.table.value, equal_nan=True)
    assert (back.table.convention == res.table.convention).all()
    assert np.isnan(back.get('R@5', 'i2t')) and not np.isnan(back.get('R@3', 'i2t'))
