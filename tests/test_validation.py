"""Every number right or refused (issue 13): bad input at the public entry points of the evaluation library
(`evaluate`, `EvaluationSplit`, `Results`, similarity, ranking) gets a clear error naming the argument and the fix,
or the same number as the clean input; never a silently averaged, truncated or guessed one.

Hand-written cases first (one per reported mistake), then property tests (hypothesis) that feed generated bad values
(dtypes, shapes, non-integral numbers, NaN/Inf produced mid-computation) and assert "clear error or same number".
"""
import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

from fico_itr.core import EvaluationSplit, get_conventions
from fico_itr.evaluate import evaluate, Results, _format_table
from fico_itr.ranking import Positives, SameItem
from fico_itr.similarity import HashCodes, similarity
from _helpers import raises

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def issue_problem(seed=0):
    "The issue's reproduction: 20 images x 5 captions, a strong diagonal plus noise."
    rng = np.random.default_rng(seed)
    sp = EvaluationSplit.uniform(20, 5)
    return sp, rng.random((20, 100)) + 3 * np.repeat(np.eye(20), 5, 1)


# ---------------------------------------------------------------- item 1: tables never average rows
def test_wide_keeps_rows_of_different_conventions_apart():
    sp, S = issue_problem()
    res = Results.concat([evaluate(sp, S, metrics=['R@1'], model='CLIP'),
                          evaluate(sp, S, metrics=['R@1'], model='CLIP', conventions='clip_benchmark')])
    w = res.wide()
    assert len(w) == 2, w
    assert sorted(w[('i2t', 'R@1')]) == [1.0, 100.0]           # not 50.5
    assert 'conventions' in w.index.names
    labels = list(w.index.get_level_values('conventions'))
    assert any('clip_benchmark' in c for c in labels) and any('default' in c for c in labels)
    txt = _format_table(res)
    assert '50.5' not in txt and '100.0' in txt and '1.000' in txt


def test_wide_single_convention_keeps_model_dataset_index():
    sp, S = issue_problem()
    w = evaluate(sp, S, metrics=['R@1']).wide()
    assert list(w.index.names) == ['model', 'dataset'] and len(w) == 1


def test_duplicate_rows_are_an_error_naming_model():
    sp, S = issue_problem()
    a = evaluate(sp, S, metrics=['R@1'])
    b = evaluate(sp, S[:, ::-1].copy(), metrics=['R@1'])
    raises(lambda: Results.concat([a, b]), 'model=', 'cannot be told apart')
    ok = Results.concat([a, evaluate(sp, S[:, ::-1].copy(), metrics=['R@1'], model='other')])
    assert len(ok.wide()) == 2


def test_get_ambiguous_lists_candidates():
    sp, S = issue_problem()
    res = Results.concat([evaluate(sp, S, metrics=['R@1'], model='A', dataset='d1'),
                          evaluate(sp, S, metrics=['R@1'], model='B', dataset='d2')])
    msg = raises(lambda: res.get('R@1'), "'A'", "'B'", "'d1'", "'d2'", exc=KeyError)
    assert 'model=' in msg
    assert res.get('R@1', model='A') == res.get('R@1', model='B')
    both = Results.concat([evaluate(sp, S, metrics=['R@1'], model='A'),
                           evaluate(sp, S, metrics=['R@1'], model='A', conventions='clip_benchmark')])
    raises(lambda: both.get('R@1'), 'clip_benchmark', exc=KeyError)
    assert both.get('R@1', conventions='clip_benchmark') == pytest.approx(both.get('R@1', conventions='default') / 100)


# ---------------------------------------------------------------- item 3: scores from embeddings are checked
def test_euclidean_overflow_is_refused():
    rng = np.random.default_rng(0)
    sp = EvaluationSplit.uniform(20, 1)
    x = rng.standard_normal((20, 8)) * 1e20
    raises(lambda: evaluate(sp, images=x, captions=x, measure='euclidean'), 'NaN or Inf', 'images')


def test_float64_embeddings_overflowing_float32_are_refused_or_exact():
    rng = np.random.default_rng(0)
    sp = EvaluationSplit.uniform(20, 1)
    x, y = rng.standard_normal((20, 8)), rng.standard_normal((20, 8))
    raises(lambda: evaluate(sp, images=x * 1e300, captions=y, measure='inner_product'), 'float32', 'images')
    # cosine is scale-free: huge float64 embeddings give the number of the clean ones
    clean = evaluate(sp, images=x, captions=y, measure='cosine', metrics=['R@1', 'R@5'])
    big = evaluate(sp, images=x * 1e300, captions=y * 1e-300, measure='cosine', metrics=['R@1', 'R@5'])
    np.testing.assert_array_equal(big.table.value, clean.table.value)


def test_similarity_output_checked():
    x = np.full((3, 4), 1e30, np.float32)
    raises(lambda: similarity(x, x, 'inner_product'), 'NaN or Inf')


# ---------------------------------------------------------------- item 10: unclear errors become clear
@pytest.mark.parametrize('bad, frag', [(lambda S: S > 3, 'bool'), (lambda S: S.astype(str), 'must hold numbers'),
                                       (lambda S: S.astype(complex), 'complex')])
def test_similarity_dtypes_refused(bad, frag):
    sp, S = issue_problem()
    raises(lambda: evaluate(sp, bad(S)), 'similarity', frag, exc=TypeError)


def test_bfloat16_similarity_is_exact():
    sp, S = issue_problem()
    T = torch.tensor(S, dtype=torch.bfloat16)
    ref = evaluate(sp, T.float().numpy(), metrics=['R@1', 'R@5', 'MeanR'])
    got = evaluate(sp, T, metrics=['R@1', 'R@5', 'MeanR'])
    np.testing.assert_array_equal(got.table.value, ref.table.value)


@pytest.mark.parametrize('bs', [-1, 0, 2.5, True])
def test_block_size_checked(bs):
    sp, S = issue_problem()
    raises(lambda: evaluate(sp, S, block_size=bs), 'block_size', exc=(ValueError, TypeError))
    raises(lambda: similarity(S, S, block_size=bs), 'block_size', exc=(ValueError, TypeError))


def test_n_threads_checked():
    sp, S = issue_problem()
    raises(lambda: evaluate(sp, S, n_threads=-2), 'n_threads', exc=(ValueError, TypeError))


@pytest.mark.parametrize('n', [0, -2, 2.5, 7])
def test_folds_checked(n):
    sp, _ = issue_problem()
    raises(lambda: list(sp.folds(n)), 'fold', exc=(ValueError, TypeError))


@pytest.mark.parametrize('n_bits', [0, 32768])
def test_hash_code_bits_checked(n_bits):
    raises(lambda: HashCodes(np.zeros((2, max(1, -(-n_bits // 64))), np.uint64), n_bits), 'n_bits')


def test_hash_codes_from_zero_width_array():
    raises(lambda: HashCodes.from_array(np.zeros((3, 0))), 'n_bits')


def test_cap2img_huge_index():
    raises(lambda: EvaluationSplit(np.array([0, 2 ** 63], dtype=np.uint64)), 'cap2img', exc=(ValueError, TypeError))
    raises(lambda: EvaluationSplit(np.array([0, 10 ** 15])), 'cap2img')


def test_positives_and_pairs_out_of_range():
    raises(lambda: Positives([[0, 3.5]], 5), 'positives', exc=(ValueError, TypeError))
    rel = SameItem([0, 1], [0, 0, 1, 1])
    raises(lambda: rel.pairs(0, 2, np.array([[0, 4], [1, 2]])), 'gallery item index 4')


def test_evaluate_topk_out_of_range_indices():
    from fico_itr.search import TopK, evaluate_topk
    sp = EvaluationSplit.uniform(2, 2)
    top = TopK(np.zeros((2, 2), np.float32), np.array([[0, 1], [2, 7]]))
    raises(lambda: evaluate_topk(sp, i2t=top, metrics=['R@1']), 'top-k indices', 'gallery item index 7')


def test_from_json_reads_a_cli_record():
    sp, S = issue_problem()
    res = evaluate(sp, S, metrics=['R@1'], model='CLIP')
    record = json.dumps({'fico_itr_version': 'x', 'model': 'CLIP', 'results': json.loads(res.to_json())})
    back = Results.from_json(record)
    assert back.get('R@1') == res.get('R@1')


# ---------------------------------------------------------------- item 11: fold presets take what the plain path takes
@pytest.mark.parametrize('wrap', [lambda S: S.tolist(), pd.DataFrame, torch.tensor])
def test_fold_presets_accept_lists_and_dataframes(wrap):
    rng = np.random.default_rng(0)
    sp = EvaluationSplit.uniform(50, 5)                  # 5 folds of 10 images: R@10 is defined in each
    S = rng.random((50, 250)) + 2 * np.repeat(np.eye(50), 5, 1)
    ref = evaluate(sp, S, conventions='vse')
    got = evaluate(sp, wrap(S), conventions='vse')
    pd.testing.assert_frame_equal(got.table, ref.table)


def test_fold_presets_accept_embedding_lists():
    rng = np.random.default_rng(0)
    sp = EvaluationSplit.uniform(50, 2)
    x, y = rng.standard_normal((50, 4)), rng.standard_normal((100, 4))
    ref = evaluate(sp, images=x, captions=y, conventions='vse')
    got = evaluate(sp, images=x.tolist(), captions=pd.DataFrame(y), conventions='vse')
    pd.testing.assert_frame_equal(got.table, ref.table)


# ---------------------------------------------------------------- item 12: no silent truncation, no ignored arguments
def test_non_integral_counts_refused():
    raises(lambda: EvaluationSplit(np.arange(4), n_images=3.7), 'n_images', exc=(ValueError, TypeError))
    raises(lambda: EvaluationSplit.uniform(5, 2.5), 'captions_per_image', exc=(ValueError, TypeError))
    raises(lambda: EvaluationSplit.uniform(4.5, 2), 'n_images', exc=(ValueError, TypeError))
    test = EvaluationSplit(np.arange(4), n_images=4.0)      # an integral float is that integer
    assert test.n_images == 4


def test_metrics_dict_typo_refused():
    sp, S = issue_problem()
    raises(lambda: evaluate(sp, S, metrics={'instnace': ['R@1']}), 'instnace', 'instance')


def test_from_json_without_columns_refused():
    raises(lambda: Results.from_json('[{"foo": 1}]'), 'foo', 'value')
    raises(lambda: Results.from_json('{"foo": 1}'), 'results')


# ---------------------------------------------------------------- item 14: folds are streamed
def _peak(fn):
    tracemalloc.start(); tracemalloc.reset_peak()
    try: fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
    return peak


def test_folds_read_memmaps_in_blocks(tmp_path):
    n_img, cpi = 500, 5
    sp = EvaluationSplit.uniform(n_img, cpi)
    rng = np.random.default_rng(0)
    path = tmp_path / 'S.npy'
    np.save(path, (rng.random((n_img, n_img * cpi)) + 3 * np.repeat(np.eye(n_img), cpi, 1)).astype(np.float32))
    mm = np.load(path, mmap_mode='r')
    kw = dict(metrics=['R@1', 'R@5'], block_size=10, n_threads=1)
    plain = _peak(lambda: evaluate(sp, mm, conventions='lavis', **kw))
    folded = _peak(lambda: evaluate(sp, mm, conventions='vse', **kw))
    # reading a fold's rows whole (100 x 2500 float32 = 1 MB) and copying its sub-matrix took the peak to 3.6x the plain path
    assert folded < 1.5 * plain, (folded, plain)
    np.testing.assert_allclose(evaluate(sp, mm, conventions='vse', **kw).table.value,
                               evaluate(sp, np.asarray(mm), conventions='vse', **kw).table.value)


# ---------------------------------------------------------------- item 15: block size changes scores only within a pinned tolerance
def test_block_size_tolerance_of_embedding_scores():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((60, 96)).astype(np.float32), rng.standard_normal((300, 96)).astype(np.float32)
    ref = similarity(x, y, 'cosine', block_size=60)
    for bs in (1, 2, 7, 33):
        assert np.abs(similarity(x, y, 'cosine', block_size=bs) - ref).max() <= 4 * np.finfo(np.float32).eps


# ---------------------------------------------------------------- property tests
def _clean_problem(seed):
    rng = np.random.default_rng(seed)
    n_img, cpi = 6, 2
    sp = EvaluationSplit.uniform(n_img, cpi)
    return sp, rng.standard_normal((n_img, n_img * cpi))


BAD_DTYPES = [np.bool_, np.complex128, np.str_, object]


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from(BAD_DTYPES + [np.float16, np.float32, np.int32, np.int64, np.uint8]))
def test_property_similarity_dtype_error_or_same_number(seed, dtype):
    sp, S = _clean_problem(seed)
    S = np.clip(np.round(S * 20) + 50, 0, 100)        # integers in 0..100: exact in every numeric dtype tried
    bad = S.astype(dtype)
    try:
        got = evaluate(sp, bad, metrics=['R@1', 'MeanR'], conventions=get_conventions(ties='stable'))
    except (TypeError, ValueError) as e:
        assert dtype in BAD_DTYPES and '`similarity`' in str(e), (dtype, e)
        return
    assert dtype not in BAD_DTYPES
    ref = evaluate(sp, S, metrics=['R@1', 'MeanR'], conventions=get_conventions(ties='stable'))
    np.testing.assert_array_equal(got.table.value, ref.table.value)


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from(['cosine', 'inner_product', 'euclidean']),
       st.sampled_from([1e-30, 1.0, 1e20, 1e38, 1e300]), st.booleans())
def test_property_embedding_scale_error_or_same_number(seed, measure, scale, float64):
    "Embeddings scaled until float32 overflows mid-computation: a clear error, or the number of the clean input."
    rng = np.random.default_rng(seed)
    sp = EvaluationSplit.uniform(6, 2)
    x, y = rng.standard_normal((6, 5)), rng.standard_normal((12, 5))
    dt = np.float64 if float64 else np.float32
    with np.errstate(over='ignore'):
        xs, ys = (x * scale).astype(dt), (y * scale).astype(dt)
    kw = dict(measure=measure, metrics=['R@1', 'R@5', 'MeanR'])
    try: got = evaluate(sp, images=xs, captions=ys, **kw)
    except ValueError as e:
        assert 'NaN or Inf' in str(e) or 'float32' in str(e) or 'all-zero' in str(e), e
        return
    ref = evaluate(sp, images=x, captions=y, **kw)
    np.testing.assert_array_equal(got.table.value, ref.table.value)


@SETTINGS
@given(st.integers(0, 10_000), st.integers(0, 5), st.integers(0, 11), st.sampled_from([np.nan, np.inf, -np.inf]))
def test_property_nan_in_matrix_refused(seed, i, j, v):
    sp, S = _clean_problem(seed)
    S[i, j] = v
    raises(lambda: evaluate(sp, S), 'NaN or Inf')
    raises(lambda: evaluate(sp, S, conventions='vse'), 'NaN or Inf')


@SETTINGS
@given(st.one_of(st.floats(-5, 50).filter(lambda v: v != int(v)), st.integers(-5, 0), st.booleans()))
def test_property_counts_error_or_exact(bad):
    for call in (lambda: EvaluationSplit.uniform(4, bad), lambda: EvaluationSplit.uniform(bad, 2),
                 lambda: EvaluationSplit(np.arange(4), n_images=bad), lambda: list(EvaluationSplit.uniform(4, 2).folds(bad))):
        with pytest.raises((ValueError, TypeError)): call()


@SETTINGS
@given(st.integers(0, 10_000), st.lists(st.sampled_from(['R@1', 'R@5', 'MeanR', 'mAP@N']), min_size=1, max_size=3),
       st.text(min_size=1, max_size=10))
def test_property_metrics_dict_keys(seed, names, key):
    sp, S = _clean_problem(seed)
    names = [n for n in names if n != 'mAP@N'] or ['R@1']
    if key in ('instance', 'category', 'extended'):
        return
    with pytest.raises(ValueError) as info: evaluate(sp, S, metrics={key: names})
    assert repr(key) in str(info.value)


@SETTINGS
@given(st.lists(st.dictionaries(st.sampled_from(['model', 'metric', 'value', 'foo', 'k']),
                                st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=4),
                min_size=1, max_size=3))
def test_property_from_json_error_or_complete(records):
    try: res = Results.from_json(json.dumps(records))
    except (ValueError, TypeError) as e:
        assert 'Results.from_json' in str(e) or 'to_json' in str(e), e
        return
    assert not res.table[['model', 'dataset', 'direction', 'granularity', 'metric']].isna().any().any()


def test_html_table_keeps_fraction_digits():
    sp, S = issue_problem()
    res = evaluate(sp, S, metrics=['R@1'], conventions='clip_benchmark')
    v = res.get('R@1', 't2i')
    assert f'{v:.3f}' in res._repr_html_() and f'{v:.3f}' in repr(res)


@SETTINGS
@given(st.integers(0, 10_000), st.sampled_from([(5, 12), (12, 6), (6, 11), (6, 12, 1), (6,), (7, 12)]))
def test_property_shapes_error_naming_the_argument(seed, shape):
    sp, _ = _clean_problem(seed)
    S = np.random.default_rng(seed).random(shape)
    for kw in ({'similarity': S}, {'i2t_similarity': S, 'directions': ['i2t']}):
        with pytest.raises(ValueError) as info: evaluate(sp, **kw)
        name = next(iter(kw))
        assert f'`{name}`' in str(info.value)


def test_subset_and_unique_image_rows_refuse_fractions():
    from fico_itr.evaluate import unique_image_rows
    sp, S = issue_problem()
    raises(lambda: sp.subset([1.5, 2]), 'images', 'non-integer')
    raises(lambda: sp.subset([1, 1]), 'repeats an image')
    raises(lambda: unique_image_rows(np.repeat(S, 5, 0), 2.5), 'captions_per_image', 'whole number')


def test_single_direction_and_granularity_strings():
    sp, S = issue_problem()
    a = evaluate(sp, S, metrics=['R@1'], directions='t2i', granularities='instance')
    b = evaluate(sp, S, metrics=['R@1'], directions=['t2i'], granularities=['instance'])
    pd.testing.assert_frame_equal(a.table, b.table)


def test_conventions_counts_and_metric_keys():
    from fico_itr.core import Conventions
    raises(lambda: Conventions(rerank_depth=2.5), 'rerank_depth', 'whole number')
    raises(lambda: Conventions(metrics={'instnace': ('R@1',)}), 'instnace')
    assert get_conventions('lavis', rerank_depth=128.0).rerank_depth == 128
