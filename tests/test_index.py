"""fico_itr.indexes: FAISS wrappers against the exact search, the two recall definitions, the Table 7 protocol and the
coarse-to-fine pipeline (k = gallery size is the FG-only search)."""
import warnings
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

faiss = pytest.importorskip('faiss')
from fico_itr.core import EvaluationSplit
from fico_itr.evaluate import evaluate
from fico_itr.similarity import HashCodes, similarity
from fico_itr.search import TopK, topk_search, evaluate_topk, merge_topk
from fico_itr.indexes import (FlatIndex, HNSWIndex, BinaryFlatIndex, BinaryIVFIndex, _build_index, _packed_codes,
                            one_recall_at_k, overlap_recall_at_k, _synthetic_dataset, _lsh_codes, _rerank_candidates,
                            _SyntheticRows, coarse_to_fine, coarse_to_fine_sweep, _TwoStage)
from fico_itr.paper import table7, table7_sampled, _compare_table7, _PAPER_TABLE7
from _helpers import raises


@pytest.fixture(scope='module')
def floats():
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 48)).astype(np.float32), rng.standard_normal((3000, 48)).astype(np.float32)


@pytest.fixture(scope='module')
def clustered():
    "An easy set: 100 tight clusters of 40 points in 32-D, queries near the points."
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((100, 32)) * 4
    g = (np.repeat(centres, 40, 0) + rng.standard_normal((4000, 32)) * .3).astype(np.float32)
    q = (g[rng.choice(4000, 200, replace=False)] + rng.standard_normal((200, 32)) * .1).astype(np.float32)
    return q, g


# --- FAISS flat against the exact search --------------------------------------------------------------------------

@pytest.mark.parametrize('measure', ['inner_product', 'cosine'])
def test_flat_equals_exact_search(floats, measure):
    q, g = floats
    exact = topk_search(q, g, 100, measure, device='cpu')
    top = FlatIndex(g, measure).search(q, 100)
    assert isinstance(top, TopK) and top.scores.dtype == np.float32 and top.indices.dtype == np.int64
    np.testing.assert_array_equal(top.indices, exact.indices)            # tie-free data: identical lists
    np.testing.assert_allclose(top.scores, exact.scores, atol=1e-4)
    assert (np.diff(top.scores, axis=1) <= 0).all()
    for k in (1, 10, 100):
        assert one_recall_at_k(top, exact, k) == 1.0
        assert overlap_recall_at_k(top, exact, k) == 1.0


def test_flat_records_times(floats):
    q, g = floats
    idx = FlatIndex(g)
    top = idx.search(q, 5)
    assert idx.build_seconds >= 0 and idx.search_seconds == top.seconds >= 0
    assert repr(idx) == 'FlatIndex(3,000 x 48-D inner_product, cpu)'         # the seconds are in `timing`, not the repr
    assert idx.timing == f'built in {idx.build_seconds:.3f} s; last search {top.seconds:.3f} s'


# --- binary indexes against exact Hamming ------------------------------------------------------------------------

@pytest.mark.parametrize('n_bits', [16, 64])
def test_binary_flat_equals_exact_hamming(n_bits):
    rng = np.random.default_rng(n_bits)
    bq, bg = rng.integers(0, 2, (50, n_bits)), rng.integers(0, 2, (2500, n_bits))
    k = 40
    exact = topk_search(bq, bg, k, 'hamming', device='cpu')
    top = BinaryFlatIndex(HashCodes.from_bits(bg)).search(HashCodes.from_bits(bq), k)
    # with ties (16 bits: ~40 items per distance), compare the lists as multisets of distances ...
    np.testing.assert_array_equal(np.sort(top.scores, 1), np.sort(exact.scores, 1))
    # ... the scores are the true agreeing bits of the items returned ...
    full = similarity(bq, bg, 'hamming')
    np.testing.assert_array_equal(np.take_along_axis(full, top.indices, 1), top.scores)
    # ... and every item strictly better than the k-th score is in both lists
    kth = exact.scores[:, -1:]
    for i in range(len(bq)):
        assert set(top.indices[i][top.scores[i] > kth[i]]) == set(exact.indices[i][exact.scores[i] > kth[i]])
    # in-list order: more agreeing bits first, then lower index (the engine's stable rule)
    key = (n_bits - top.scores.astype(np.int64)) * 10_000 + top.indices
    assert (np.diff(key, axis=1) > 0).all()


def test_packed_layout_matches_hashcodes():
    bits = np.random.default_rng(2).integers(0, 2, (10, 24))
    p, n = _packed_codes(HashCodes.from_bits(bits))
    np.testing.assert_array_equal(p, np.packbits(bits, axis=1))
    assert n == 24


def test_binary_ivf_full_probe_is_exact():
    rng = np.random.default_rng(3)
    bq, bg = rng.integers(0, 2, (30, 32)), rng.integers(0, 2, (2000, 32))
    ivf = BinaryIVFIndex(bg, nlist=8, nprobe=8)                          # every list scanned: an exact scan
    exact = topk_search(bq, bg, 20, 'hamming', device='cpu')
    np.testing.assert_array_equal(np.sort(ivf.search(bq, 20).scores, 1), np.sort(exact.scores, 1))
    assert ivf.params == {'nlist': 8, 'nprobe': 8}


def test_hnsw_and_ivf_recall_floor(clustered):
    q, g = clustered
    exact = topk_search(q, g, 10, 'inner_product', device='cpu')
    top = HNSWIndex(g, M=16, ef_search=32).search(q, 10)
    for k in (1, 10):
        r1, ro = one_recall_at_k(top, exact, k), overlap_recall_at_k(top, exact, k)
        assert 0 <= r1 <= 1 and 0 <= ro <= 1
        assert r1 >= 0.95 and ro >= 0.9
    R = np.random.default_rng(0).standard_normal((32, 64))
    cq, cg = HashCodes.from_bits(q @ R >= 0), HashCodes.from_bits(g @ R >= 0)
    flat_h = topk_search(cq, cg, 100, 'hamming', device='cpu')
    ivf = BinaryIVFIndex(cg, nprobe=8).search(cq, 100)                   # nlist = 63
    assert 0 <= one_recall_at_k(ivf, flat_h, 100) <= 1
    assert one_recall_at_k(ivf, flat_h, 100) >= 0.8                       # clusters: the neighbour is in a probed list
    assert one_recall_at_k(ivf, exact, 100) >= 0.8                        # and the FG neighbour within the CG top 100


def test_missing_slots_are_marked():
    rng = np.random.default_rng(4)
    ivf = BinaryIVFIndex(rng.integers(0, 2, (700, 8)), nlist=16, nprobe=1)
    with pytest.warns(UserWarning, match='top-k slots are empty'):
        top = ivf.search(rng.integers(0, 2, (5, 8)), 200)
    miss = top.indices < 0
    assert miss.any() and np.isneginf(top.scores[miss]).all() and not np.isneginf(top.scores[~miss]).any()
    exact = TopK(np.zeros((5, 200), np.float32), np.tile(np.arange(200), (5, 1)))
    assert overlap_recall_at_k(top, exact, 200) <= (~miss).mean()


# --- recall definitions on hand-made cases -------------------------------------------------------------------------

def test_recall_definitions():
    exact = np.array([[0, 1, 2, 3], [5, 6, 7, 8], [1, 2, 3, 4]])
    approx = np.array([[1, 0, 9, 9], [9, 8, 7, 5], [1, 2, 3, 4]])
    assert one_recall_at_k(approx, exact, 1) == pytest.approx(1 / 3)
    assert one_recall_at_k(approx, exact, 2) == pytest.approx(2 / 3)
    assert one_recall_at_k(approx, exact, 4) == 1.0
    np.testing.assert_array_equal(one_recall_at_k(approx, exact, 2, per_query=True), [True, False, True])
    np.testing.assert_allclose(overlap_recall_at_k(approx, exact, 2, per_query=True), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(overlap_recall_at_k(approx, exact, 4, per_query=True), [0.5, 0.75, 1.0])
    # 1-recall is never below overlap at k = 1, equal there
    assert one_recall_at_k(approx, exact, 1) == overlap_recall_at_k(approx, exact, 1)
    # missing slots never match, even against a missing exact slot
    assert overlap_recall_at_k(np.array([[-1, -1]]), np.array([[-1, 3]]), 2) == 0.0
    assert one_recall_at_k(np.array([[-1]]), np.array([[-1]]), 1) == 0.0
    # TopK and arrays are interchangeable; blocks do not change the answer
    t = TopK(np.zeros(approx.shape, np.float32), approx)
    assert overlap_recall_at_k(t, exact, 4) == overlap_recall_at_k(approx, exact, 4, block=1)


def test_recall_errors():
    a = np.zeros((2, 3), np.int64)
    raises(lambda: one_recall_at_k(a, a, 4), '`k`=4 but `approx` lists hold only 3 items')
    raises(lambda: overlap_recall_at_k(a, a[:, :2], 3), 'the overlap needs the exact top 3')
    raises(lambda: one_recall_at_k(a, a[:1], 1), '`approx` has 2 queries but `exact` has 1')
    raises(lambda: one_recall_at_k(a, a, 0), '`k` must be a positive int')
    raises(lambda: one_recall_at_k(a.astype(float), a, 1), '`approx` must be a TopK or an integer index array', exc=TypeError)


# --- errors of the wrappers ----------------------------------------------------------------------------------------

def test_index_errors(floats):
    q, g = floats
    flat = FlatIndex(g)
    raises(lambda: flat.search(q, 3001), 'K=3001 but the gallery has only 3000')
    raises(lambda: flat.search(q[:, :8], 3), 'queries have dimension 8 but the index holds 48-D vectors')
    raises(lambda: FlatIndex(g, 'hamming'), "unknown measure 'hamming'", 'use a binary index')
    raises(lambda: FlatIndex(HashCodes.from_bits(np.ones((3, 8)))), 'use BinaryFlatIndex', exc=TypeError)
    raises(lambda: BinaryFlatIndex(np.ones((3, 12))), '12-bit codes', 'multiple of 8 bits')
    raises(lambda: BinaryFlatIndex(g), '`gallery` is not binary')
    raises(lambda: BinaryFlatIndex(np.ones((3, 16))).search(np.ones((2, 8)), 1), '8-bit codes but the index holds 16-bit')
    raises(lambda: BinaryIVFIndex(np.ones((30, 16)), nlist=31), '`nlist` must be an int in 1..30')
    raises(lambda: BinaryIVFIndex(np.ones((30, 16)), nprobe=0), '`nprobe` must be a positive int')
    raises(lambda: HNSWIndex(g, M=0), '`M` must be a positive int')
    raises(lambda: _build_index('lsh', g), "unknown index kind 'lsh'")
    raises(lambda: FlatIndex(g, device='tpu'), "`device` must be 'cpu', 'cuda' or None")
    if faiss.get_num_gpus() == 0:
        raises(lambda: FlatIndex(g, device='cuda'), 'faiss-gpu', "device='cpu'")


# --- coarse-to-fine ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('measure', ['cosine', 'inner_product', 'euclidean'])
def test_coarse_to_fine_full_depth_is_fg_only(floats, measure):
    q, g = floats
    g = g[:800]
    rng = np.random.default_rng(5)
    cq, cg = HashCodes.from_bits(rng.integers(0, 2, (len(q), 64))), HashCodes.from_bits(rng.integers(0, 2, (len(g), 64)))
    fg_only = topk_search(q, g, len(g), measure, device='cpu')
    ts = coarse_to_fine(cg, q, g, len(g), cg_queries=cq, measure=measure)     # codes unrelated to the vectors
    assert isinstance(ts, _TwoStage)
    np.testing.assert_array_equal(ts.top.indices, fg_only.indices)
    np.testing.assert_allclose(ts.top.scores, fg_only.scores, atol=1e-5)
    top10 = coarse_to_fine(BinaryFlatIndex(cg), q, g, len(g), cg_queries=cq, measure=measure, final_k=10)
    np.testing.assert_array_equal(top10.top.indices, topk_search(q, g, 10, measure, device='cpu').indices)
    assert ts.seconds == pytest.approx(ts.coarse_seconds + ts.rerank_seconds) and ts.per_query_ms > 0


def test_coarse_to_fine_candidates_and_scorer(floats):
    q, g = floats
    exact = topk_search(q, g, 50, 'cosine', device='cpu')
    shuffled = TopK(exact.scores, exact.indices[:, ::-1].copy(), 0.25)
    ts = coarse_to_fine(shuffled, q, g, 50)                                 # precomputed candidates, any order
    np.testing.assert_array_equal(ts.top.indices, exact.indices)
    assert ts.coarse_seconds == 0.25
    # a pair scorer replaces the FG vectors: here minus the index, so lists come back sorted by index
    r = _rerank_candidates(exact.indices, None, None, scorer=lambda rows, c: -c.astype(np.float32))
    np.testing.assert_array_equal(r.indices, np.sort(exact.indices, 1))
    raises(lambda: coarse_to_fine(shuffled, q, g, 60), '`k`=60 but the candidate lists hold 50')
    raises(lambda: _rerank_candidates(exact.indices, None, None, scorer=lambda rows, c: c[:, :3]), '`scorer` returned shape')
    raises(lambda: _rerank_candidates(exact.indices, q[:, :8], g), '`fg_queries` have dimension 8 but `fg_gallery` has 48')


def test_sweep_full_depth_equals_fg_only():
    from fico_itr.synthetic import coco5k_like
    data = coco5k_like(n_images=200, seed=3)
    ci, cc = data.hash_codes(64, seed=3)
    sw = coarse_to_fine_sweep(data.split, (data.images, data.captions), (ci, cc), ks=(20, 200, 1000))
    for d, full_k in (('i2t', 1000), ('t2i', 200)):
        s = sw[sw.direction == d].set_index(['method', 'k'])
        fg = s.loc['FG only'].iloc[0]
        cgo = s.loc['CG only'].iloc[0]
        full = s.loc[('CG -> FG rerank', full_k)]
        for m in ('R@1', 'R@5', 'R@10', 'mAP@10'):
            assert full[m] == pytest.approx(fg[m], abs=1e-9)
        # the CG-only numbers are those of the exact Hamming search under the stable tie rule
        ref = evaluate_topk(data.split, **{d: topk_search(*((ci, cc) if d == 'i2t' else (cc, ci)), 100, 'hamming', device='cpu')})
        assert cgo['R@1'] == pytest.approx(ref.get('R@1', d, 'instance'), abs=1e-9)
    assert (sw.ms_per_query > 0).all()


# --- the Table 7 protocol ------------------------------------------------------------------------------------------

def test_synthetic_dataset_matches_faiss():
    from faiss.contrib.datasets import SyntheticDataset
    ref = SyntheticDataset(96, 50, 700, 120, seed=11)
    xq, xb = _synthetic_dataset(120, 700, d=96, n_train=50, seed=11, chunk=97, n_threads=3)
    np.testing.assert_allclose(xb, ref.get_database(), atol=1e-6)
    np.testing.assert_allclose(xq, ref.get_queries(), atol=1e-6)
    c1, c2 = _lsh_codes(xq, 64, seed=4), _lsh_codes(xq, 64, seed=4, block=7)
    np.testing.assert_array_equal(c1.words, c2.words)


def test_table7_small():
    df = table7([(200, 2000)], k=100, d=64, recall_ks=(1, 10, 100), rerank_ks=(50,), log=None)
    r = df.set_index('index')
    assert set(r.index) == {'FG Flat', 'FG HNSW', 'CG Flat', 'CG IVF', 'CG Flat + FG rerank (k=50)'}
    assert (r.loc['FG Flat', ['R@1', 'R@10', 'R@100', 'overlap@100']] == 100).all()
    vals = df[['R@1', 'R@10', 'R@100', 'overlap@10']].to_numpy()
    assert ((vals >= 0) & (vals <= 100) | np.isnan(vals)).all()
    # reranking the CG top 50 finds the exact neighbour whenever the CG top 50 holds it; its lists hold 50 items
    assert np.isnan(r.loc['CG Flat + FG rerank (k=50)', 'R@100'])
    cg50 = one_recall_at_k(BinaryFlatIndex(_lsh_codes(_synthetic_dataset(200, 2000, d=64)[1], 64, seed=1338)).search(
        _lsh_codes(_synthetic_dataset(200, 2000, d=64)[0], 64, seed=1338), 50), topk_search(
        *_synthetic_dataset(200, 2000, d=64), 1, 'inner_product', device='cpu'), 50)
    assert r.loc['CG Flat + FG rerank (k=50)', 'R@1'] == pytest.approx(100 * cg50)
    assert r.loc['CG Flat', 'overlap@100'] <= r.loc['CG Flat', 'R@100']
    torch_df = table7([(200, 2000)], k=100, d=64, recall_ks=(1, 100), indexes=('FG Flat', 'CG Flat'), flat='torch', log=None)
    t = torch_df.set_index('index')
    assert t.loc['CG Flat', 'R@100'] == pytest.approx(r.loc['CG Flat', 'R@100'], abs=1.0)   # same neighbours, either exact search
    cmp = _compare_table7(df)
    assert cmp['paper R@1'].isna().all()
    raises(lambda: table7(flat='numpy'), "`flat` must be 'faiss' or 'torch'")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 120), st.integers(1, 4), st.lists(st.integers(1, 60), min_size=1, max_size=6),
       st.integers(0, 2 ** 32 - 1))
def test_chunk_by_chunk_merge_equals_one_search(n_q, m, n_values, cuts, seed):
    "table7_sampled's running merge (the best k so far, then the next chunk) is the exact top k, ties included, chunks in any order."
    rng = np.random.default_rng(seed)
    q = rng.integers(-1, 2, (n_q, 3)).astype(np.float32)
    g = rng.integers(0, n_values, (m, 3)).astype(np.float32)          # few distinct scores: ties everywhere
    k = int(rng.integers(1, m + 1))
    bounds = sorted({0, m, *[c % m for c in np.cumsum(cuts)]})
    parts = list(zip(bounds[:-1], bounds[1:]))
    full = topk_search(q, g, k, 'inner_product', device='cpu')
    for order in (parts, parts[::-1], [parts[i] for i in rng.permutation(len(parts))]):   # chunks in any order
        merged = None
        for s, e in order:
            part = topk_search(q, g[s:e], min(k, e - s), 'inner_product', device='cpu')
            merged = merge_topk([part], [s], k) if merged is None else merge_topk([merged, part], [0, s], k)
        np.testing.assert_array_equal(merged.indices, full.indices)
        np.testing.assert_array_equal(merged.scores, full.scores)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50), st.integers(2, 400), st.integers(1, 4), st.integers(0, 2 ** 32 - 1))
def test_flat_index_cuts_ties_by_lower_index(n_q, m, n_values, seed):
    "FAISS's flat IP search cuts ties at the k-th score by a higher index; FlatIndex gives topk_search's lists (issue 13, item 4)."
    rng = np.random.default_rng(seed)
    q = rng.integers(-1, 2, (n_q, 3)).astype(np.float32)
    g = rng.integers(0, n_values, (m, 3)).astype(np.float32)          # integer scores: exact in both engines
    k = int(rng.integers(1, m + 1))
    got, ref = FlatIndex(g).search(q, k), topk_search(q, g, k, 'inner_product', device='cpu')
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_array_equal(got.scores, ref.scores)


def test_flat_index_tie_example_of_the_issue():
    img, cap = np.array([[1, 0], [0, 1]], np.float32), np.array([[1, 0], [1, 0], [1, 0], [0, 1]], np.float32)
    split = EvaluationSplit(np.array([1, 1, 0, 0]))
    top = FlatIndex(cap).search(img, 3)
    assert top.indices.tolist() == [[0, 1, 2], [3, 0, 1]]
    assert evaluate_topk(split, top, metrics=['R@1']).get('R@1', 'i2t') == 0.0
    assert evaluate(split, img @ cap.T, metrics=['R@1']).get('R@1', 'i2t') == 0.0


def test_synthetic_rows_match_faiss():
    from faiss.contrib.datasets import SyntheticDataset
    ref = SyntheticDataset(40, 30, 900, 150, seed=5)
    rows = _SyntheticRows(150, 900, d=40, n_train=30, seed=5)
    np.testing.assert_allclose(rows.gallery(100, 400, n_threads=2), ref.get_database()[100:400], atol=1e-6)
    np.testing.assert_allclose(rows.gallery(850, 10_000), ref.get_database()[850:], atol=1e-6)
    np.testing.assert_allclose(rows.queries([0, 149, 7]), ref.get_queries()[[0, 149, 7]], atol=1e-6)
    raises(lambda: rows.gallery(-3, 2), '`start` must lie in 0..2')
    raises(lambda: rows.queries([1.7]), 'query numbers must be integers', exc=TypeError)
    raises(lambda: _SyntheticRows(5, 5, n_train=-1), '`n_train` must be an int >= 0')


def test_table7_sampled():
    kw = dict(k=50, d=32, recall_ks=(1, 10, 50), log=None)
    full = table7([(150, 900)], indexes=('FG Flat', 'CG Flat', 'CG IVF'), flat='torch', **kw)
    every = table7_sampled(150, 900, n_sample=150, chunk=200, **kw)           # every query: the full run's numbers
    cols = ['R@1', 'R@10', 'R@50', 'overlap@10', 'overlap@50']
    np.testing.assert_array_equal(every[cols].to_numpy(), full[cols].to_numpy())
    assert (every[['R@1_se', 'R@10_se', 'R@50_se']] == 0).all().all()          # no sampling, no sampling error
    part = table7_sampled(150, 900, n_sample=60, sample_seed=3, chunk=256, **kw).set_index('index')
    # the sampled row is the full run's per-query hits averaged over the sampled queries
    xq, xb = _synthetic_dataset(150, 900, d=32)
    proj = np.random.default_rng(1338).standard_normal((32, 64)).astype(np.float32)
    hits = one_recall_at_k(BinaryFlatIndex(_lsh_codes(xb, projection=proj)).search(_lsh_codes(xq, projection=proj), 50),
                           topk_search(xq, xb, 50, 'inner_product', device='cpu'), 10, per_query=True)
    pick = np.sort(np.random.default_rng(3).choice(150, 60, replace=False))
    assert part.loc['CG Flat', 'R@10'] == pytest.approx(100 * hits[pick].mean())
    p = hits[pick].mean()                    # the standard error of a mean of 60 of 150 drawn without replacement
    assert part.loc['CG Flat', 'R@10_se'] == pytest.approx(100 * np.sqrt(p * (1 - p) / 60 * (150 - 60) / 149))
    assert part.loc['CG Flat', 'search_s'] == pytest.approx(2.5 * part.loc['CG Flat', 'search_s_sample'])
    assert (part['sampled_queries'] == 60).all()
    raises(lambda: table7_sampled(150, 900, n_sample=0, **kw), '`n_sample` must be an int in 1..150')
    raises(lambda: table7_sampled(150, 900, n_sample=10, chunk=0, **kw), '`chunk` must be a positive int')
    raises(lambda: table7_sampled(150, 900, n_sample=10, n_bits=12, **kw), '`n_bits` must be a positive multiple of 8')
    raises(lambda: table7_sampled(150, 900, n_sample=10, nprobe=0, **kw), '`nprobe` must be a positive int')
    raises(lambda: _SyntheticRows(150, 900).queries([150]), 'query numbers must lie in 0..149')


def test_paper_table7_as_printed():
    p = _PAPER_TABLE7.set_index(['n_gallery', 'index'])
    assert p.loc[(500_000, 'CG Flat'), 'R@1000'] == 93.6
    assert p.loc[(5_000_000, 'FG Flat'), 'search_s'] == 4728.18
    assert len(_PAPER_TABLE7) == 12
