"fico_itr.cost: duplicated scales, timing records (ok, DNF, time limit), rerank pair accounting, storage arithmetic."
import os, time, tracemalloc
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')      # before torch: spinning OpenMP threads distort timings on a shared CPU
import numpy as np
import pandas as pd
import pytest
import torch
from fico_itr.cost import (scale_by_duplication, scale_label, time_encoding, time_rerank, encoding_cost, Stored,
                           storage_from_config, _vit_tokens, _clip_config, _blip2_retrieval_config, _is_out_of_memory)
from fico_itr.paper import _PAPER_STORAGE, _check_paper_storage, table5, _PAPER_TABLE5
from _helpers import raises


# ---- the duplicated test set
@pytest.mark.parametrize('base', [list('abcde'), np.arange(5) * 10, torch.arange(10.).reshape(5, 2)])
def test_duplication_equals_a_repeat(base):
    n = 23
    v = scale_by_duplication(base, n)
    reps = -(-n // 5)
    if isinstance(base, list): expected = (base * reps)[:n]
    elif isinstance(base, np.ndarray): expected = np.tile(base, reps)[:n]
    else: expected = base.repeat(reps, 1)[:n]
    got = v[:] if not isinstance(base, list) else list(v)
    if isinstance(base, torch.Tensor): assert torch.equal(got, expected)
    else: assert np.array_equal(np.asarray(got), np.asarray(expected))
    assert len(v) == n and v.items is base
    assert np.array_equal(v.source_index([0, 4, 5, 22, -1]), [0, 4, 0, 2, 2])


def test_duplication_copies_nothing():
    base = np.arange(1000, dtype=np.float64)
    tracemalloc.start()
    v = scale_by_duplication(base, 5_000_000_000)          # 5e9 items: 40 GB if it were materialised
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert size < 10_000
    assert v[4_999_999_999] == 999.0 and v[1000] == 0.0
    assert np.shares_memory(v.items, base)


def test_scale_labels():
    assert [scale_label(*s) for s in [(1000, 5000), (10**6, 5 * 10**6), (8, 40)]] == ['1K/5K', '1M/5M', '8/40']


# ---- timing
def test_known_sleep():
    r = time_encoding(lambda b: time.sleep(0.03), list(range(40)), batch_size=10, warmup=1, progress=False)
    assert r['status'] == 'ok' and r['n_done'] == 40
    assert 0.12 <= r['seconds'] < 0.2                       # 4 timed batches of 0.03 s; the warm-up call is not timed
    assert r['items_per_s'] == pytest.approx(40 / r['seconds'])


def test_time_limit_stops_or_extrapolates():
    sleep = lambda b: time.sleep(0.02)
    stop = time_encoding(sleep, list(range(100)), 10, warmup=0, time_limit=0.05, progress=False)
    assert stop['status'] == 'DNF (time limit)' and 2 <= stop['n_done'] // 10 <= 5 and 'stopped at the 0.05 s limit' in stop['note']
    ext = time_encoding(sleep, list(range(100)), 10, warmup=0, time_limit=0.05, on_limit='extrapolate', progress=False)
    assert ext['status'] == 'extrapolated (time limit)' and 'extrapolated linearly' in ext['note']
    assert ext['seconds'] == pytest.approx(0.2, rel=0.3)


@pytest.mark.parametrize('error', [torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2 GiB'),
                                   MemoryError('cannot allocate'), RuntimeError('[enforce fail] DefaultCPUAllocator: out of memory')])
def test_out_of_memory_gives_a_dnf_record(error):
    def enc(batch):
        if batch[0] >= 10: raise error
    r = time_encoding(enc, list(range(30)), 5, warmup=0, progress=False)
    assert r['status'] == 'DNF (out of memory)' and r['n_done'] == 10 and np.isnan(r['seconds'])
    assert type(error).__name__ in r['note'] and 'after 10 of 30' in r['note']


def test_other_errors_propagate():
    assert not _is_out_of_memory(ValueError('out of memory'))           # only RuntimeError messages count
    with pytest.raises(KeyError): time_encoding(lambda b: {}['x'], [1, 2], progress=False)


def _fills_up(limit):
    "An encoder that keeps what it encodes and runs out of memory past `limit` items."
    held = []
    def enc(batch):
        held.append(len(batch))
        if sum(held) > limit: held.clear(); raise torch.cuda.OutOfMemoryError('CUDA out of memory')
    return enc, held


def test_after_dnf_rule():
    """Rule: after a DNF at one scale, 'skip' (default) records the larger scales as 'DNF (skipped)' without running
    them; 'attempt' runs them."""
    scales = [(2, 10), (4, 20), (8, 40)]
    calls = []
    enc, held = _fills_up(30)
    def counted(batch): calls.append(len(batch)); enc(batch)
    skip = encoding_cost('m', counted, counted, list(range(4)), list('abcde'), scales=scales, batch_size=4, warmup=0, progress=False)
    assert skip.status.tolist() == ['ok', 'DNF (out of memory)', 'DNF (skipped)']
    assert skip.note.iloc[2].startswith('not attempted: DNF (out of memory) at 4/20')
    assert sum(calls) == 2 + 10 + 4 + 16                      # scale 1 whole, scale 2 images + texts up to the failure, none of scale 3
    held.clear(); calls.clear()
    enc2, _ = _fills_up(10**9)                                # never fails: 'attempt' and 'skip' agree when nothing fails
    ok = encoding_cost('m', enc2, enc2, [0], ['a'], scales=scales, batch_size=4, warmup=0, progress=False)
    assert ok.status.tolist() == ['ok'] * 3 and ok.storage_gib.isna().all()         # no `storage`: the column is there, nan
    enc3, held3 = _fills_up(30)
    att = encoding_cost('m', enc3, enc3, list(range(4)), list('abcde'), scales=scales, batch_size=4, warmup=0,
                        after_dnf='attempt', progress=False)
    assert att.status.iloc[1] == 'DNF (out of memory)' and att.status.iloc[2] == 'DNF (out of memory)'   # attempted, failed again
    assert 'not attempted' not in att.note.iloc[2]


def test_encoding_cost_rows():
    sleepy = lambda b: time.sleep(0.002 * len(b))
    df = encoding_cost('s', sleepy, sleepy, [0, 1], list('abcde'), scales=[(4, 20)], batch_size=8, warmup=0,
                       storage=(Stored.embedding(64, 'bit'), Stored.embedding(10)), note='stand-in', progress=False)
    r = df.iloc[0]
    assert r.seconds == pytest.approx(0.048, abs=0.02) and r.seconds == pytest.approx(r.image_seconds + r.text_seconds)
    assert r.items_per_s == pytest.approx(24 / r.seconds)
    assert r.storage_gib == 24 * 8 / 2**30 and r.kept_gib == 24 * 40 / 2**30
    assert {'model', 'scale', 'n_images', 'n_texts', 'seconds', 'items_per_s', 'storage_gib', 'status', 'device', 'note'} <= set(df.columns)


# ---- rerank
def test_rerank_scores_each_pair_once():
    seen = []
    def scorer(q, c):
        seen.append(torch.stack([q, c], 1)); return torch.zeros(len(q))
    r = time_rerank(scorer, n_queries=13, depth=7, batch=10, warmup=0, progress=False)
    pairs = torch.cat(seen)
    assert r['n_pairs'] == 91 and len(pairs) == 91 and len(seen) == 10       # ceil(91 / 10) calls
    assert torch.equal(pairs[:, 0], torch.arange(13).repeat_interleave(7))
    assert torch.equal(pairs[:, 1], torch.arange(7).repeat(13))
    assert len({tuple(p) for p in pairs.tolist()}) == 91
    raises(lambda: time_rerank(scorer, 0, 3), '`n_queries` must be a positive int')


# ---- storage
def test_storage_hand_checked():
    six_million = (1_000_000, 5_000_000)
    assert Stored.embedding(64, 'bit').nbytes(*six_million) == 6_000_000 * 8
    assert Stored.embedding(64, 'uint8').nbytes(*six_million) == 6_000_000 * 64
    assert round(Stored.embedding(64, 'uint8').gib(*six_million), 2) == 0.36          # the paper's 64-bit figure
    assert round(Stored.embedding(256).gib(*six_million), 2) == 5.72                   # the paper's BLIP-2 / X-VLM figure
    assert Stored.embedding(2048, 'uint8').gib(*six_million) == pytest.approx(11.444, abs=1e-3)   # paper: 11.71, not reproduced
    scan = _PAPER_STORAGE['SCAN'][1]
    assert scan.bytes_per_image == 36 * 1024 * 8 and scan.bytes_per_text == 77 * 1024 * 8
    assert Stored((('a', (3, 5), 'float16'), ('b', 7, 'bit')), (('c', (2,), 'int64'),)).nbytes(10, 100) == 10 * (30 + 1) + 100 * 16


def test_paper_storage_verdicts():
    c = _check_paper_storage().set_index(['model', 'stored'])
    assert c.loc[('BLIP-2', 'embeddings'), 'verdict'] == 'as printed'
    assert c.loc[('X-VLM', 'kept features'), 'computed_gib'] == pytest.approx(1126.826, abs=1e-3)
    assert c.loc[('BLIP-2', 'kept features'), 'verdict'] == 'NOT reproduced'
    assert c.loc[('ADV 2048-bit', 'embeddings'), 'verdict'] == 'NOT reproduced'


def test_storage_from_real_configs():
    pytest.importorskip('transformers', reason='the random-weight architectures need transformers (fico-itr[models])')
    emb, kept = storage_from_config(_blip2_retrieval_config(image_size=364))
    assert _vit_tokens(364, 14) == 677
    assert kept.bytes_per_image == 677 * 1408 * 4 and emb.bytes_per_image == 32 * 256 * 4 and emb.bytes_per_text == 256 * 4
    assert storage_from_config(_clip_config('ViT-B/16'))[0].bytes_per_image == 512 * 4
    assert storage_from_config(_clip_config('ViT-L/14'))[1] is None
    raises(lambda: _vit_tokens(100, 14), 'not a multiple of `patch_size`')


def test_table5_layout():
    m = pd.DataFrame([dict(model='x', scale='1K/5K', n_images=1000, n_texts=5000, seconds=2.0, status='ok', device='cpu'),
                      dict(model='x', scale='10K/50K', n_images=10**4, n_texts=5 * 10**4, seconds=np.nan, status='DNF (out of memory)', device='cpu')])
    t = table5(m, storage={'x': (Stored.embedding(64, 'uint8'), None)})
    assert t.loc[('x', 'measured: cpu')].tolist()[:4] == ['2.00 s', 'DNF', '-', '-']
    assert t.loc[('x', 'measured: cpu'), 'embeddings @1M/5M'] == '0.36 GiB'
    assert t.loc[('UCCH', 'paper: one A100 80 GB'), '1M/5M'] == '488.28 s'
    assert len(t) == 1 + _PAPER_TABLE5.model.nunique()


def test_scale_time_limit_shared_by_the_modalities():
    "The images take the whole limit: with 'extrapolate' the texts still get one batch and are extrapolated; with 'dnf' they are not run."
    slow = lambda b: time.sleep(0.02)
    ext = encoding_cost('m', slow, slow, [0], ['a'], scales=[(40, 200)], batch_size=10, warmup=0, time_limit=0.03,
                        on_limit='extrapolate', progress=False).iloc[0]
    assert ext.status == 'extrapolated (time limit)'
    assert ext.image_seconds == pytest.approx(0.08, rel=0.35) and ext.text_seconds == pytest.approx(0.4, rel=0.35)
    dnf = encoding_cost('m', slow, slow, [0], ['a'], scales=[(40, 200)], batch_size=10, warmup=0, time_limit=0.03,
                        progress=False).iloc[0]
    assert dnf.status == 'DNF (time limit)' and np.isnan(dnf.seconds) and 'texts: not encoded' in dnf.note


# ---- the encode and ITM functions agree with transformers' own forward passes (tiny random-weight models)
def test_clip_encoders_match_clipmodel_forward():
    pytest.importorskip('transformers', reason='the random-weight architectures need transformers (fico-itr[models])')
    from fico_itr.cost import _random_weight_model, _clip_encoders, _hash_token_ids, _pixel_batch
    m = _random_weight_model(_clip_config('tiny'))
    tc = m.config.text_config
    px = torch.randn(3, 3, 64, 64)
    ids = _hash_token_ids(['a dog on a red sofa', 'two birds', 'a cat'], 77, tc.vocab_size, tc.bos_token_id, tc.eos_token_id, tc.eos_token_id)
    ei, et = _clip_encoders(m)
    with torch.inference_mode():
        ref = m(input_ids=ids, pixel_values=px).logits_per_image
        ours = m.logit_scale.exp() * ei(px) @ et(ids).T
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_blip2_encoders_and_itm_match_the_retrieval_model():
    pytest.importorskip('transformers', reason='the random-weight architectures need transformers (fico-itr[models])')
    from fico_itr.cost import _random_weight_model, _blip2_encoders, _blip2_vit_features, _blip2_itm_scorer, _hash_token_ids
    m = _random_weight_model(_blip2_retrieval_config(tiny=True))
    px = torch.randn(3, 3, 56, 56)
    ids = _hash_token_ids(['a dog on a red sofa', 'two birds', 'a cat sleeping'], 35, 30522, 101, 102, 0)
    mask = (ids != 0).long()
    ei, et = _blip2_encoders(m)
    with torch.inference_mode():
        itc_ref = m(pixel_values=px, input_ids=ids, attention_mask=mask).logits_per_image            # 3 images x 3 texts
        itc = torch.einsum('iqd,td->iqt', ei(px), et(ids)).max(1).values
        itm_ref = m(pixel_values=px, input_ids=ids, attention_mask=mask, use_image_text_matching_head=True).logits_per_image[:, 1]
        score = _blip2_itm_scorer(m, _blip2_vit_features(m, px), ids)
        itm = score(torch.arange(3), torch.arange(3))                                                # pairs (text i, image i)
        wrapped = score(torch.tensor([4]), torch.tensor([5]))                                        # indices wrap: pair (1, 2)
    torch.testing.assert_close(itc, itc_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(itm, itm_ref, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(wrapped, score(torch.tensor([1]), torch.tensor([2])))
    r = time_rerank(score, 4, 3, batch=5, warmup=0, progress=False)
    assert r['n_pairs'] == 12 and r['status'] == 'ok'


# ---- review findings: CPU allocation failures, rerank candidates, storage sizes and view indices
# The exact messages of failed CPU allocations, SIMULATED: the tests raise them from fake encoders and allocate nothing.
# torch.empty(2**45) on CPU raises this RuntimeError (torch 2.x's DefaultCPUAllocator); numpy raises a MemoryError
# subclass (_ArrayMemoryError) with the second message.
TORCH_CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 140737488355328 bytes. Error code 12 (Cannot allocate memory)")
NUMPY_OOM = 'Unable to allocate 8.00 PiB for an array with shape (1125899906842624,) and data type float64'


@pytest.mark.parametrize('error', [RuntimeError(TORCH_CPU_OOM), MemoryError(NUMPY_OOM), RuntimeError(NUMPY_OOM)])
def test_cpu_allocation_failure_is_out_of_memory(error):
    "Finding 6: a failed CPU allocation (simulated message, see above) is a DNF (out of memory) record, not a crash."
    assert _is_out_of_memory(error)
    def enc(batch):                                              # simulates the allocator failing from the third batch on
        if batch[0] >= 8: raise error
    r = time_encoding(enc, list(range(20)), 4, warmup=0, progress=False)
    assert r['status'] == 'DNF (out of memory)' and r['n_done'] == 8 and np.isnan(r['seconds'])
    assert r['note'].startswith(f'{type(error).__name__} after 8 of 20 items: ') and str(error)[:40] in r['note']
    encoded = []
    def fills_up(batch):                                         # simulated: fails once more than 24 items (scale 1) were encoded
        encoded.append(len(batch))
        if sum(encoded) > 24: raise error
    df = encoding_cost('m', fills_up, fills_up, list(range(4)), list('abcde'), scales=[(4, 20), (16, 80), (32, 160)],
                       batch_size=4, warmup=0, progress=False)
    assert df.status.tolist() == ['ok', 'DNF (out of memory)', 'DNF (skipped)']
    assert not _is_out_of_memory(RuntimeError('mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)'))
    with pytest.raises(RuntimeError, match='shapes cannot be multiplied'):
        time_encoding(lambda b: torch.ones(2, 3) @ torch.ones(4, 5), [1, 2], progress=False)


def test_time_rerank_validates_candidates_and_scores():
    "Finding 10: candidates must be integer indices into the gallery, n_queries x depth; the scorer one score per pair."
    seen = []
    def scorer(q, c): seen.append(c.clone()); return torch.zeros(len(q))
    ok = time_rerank(scorer, 2, 2, candidates=np.array([[0, 9], [3, 1]], np.int32), n_gallery=10, warmup=0, progress=False)
    assert ok['status'] == 'ok' and torch.cat(seen).tolist() == [0, 9, 3, 1]
    raises(lambda: time_rerank(scorer, 2, 2, candidates=[[0, 99], [-5, 1]], n_gallery=10, progress=False),
           '`candidates` must index the gallery: 0 <= index < n_gallery = 10', 'min -5', 'max 99')
    raises(lambda: time_rerank(scorer, 2, 2, candidates=[[0, 10], [1, 1]], n_gallery=10, progress=False), 'max 10')
    raises(lambda: time_rerank(scorer, 2, 2, candidates=[[0.7, 1.2], [3.9, 1]], n_gallery=10, progress=False),
           '`candidates` must be integer indices', 'float64', exc=TypeError)
    raises(lambda: time_rerank(scorer, 2, 2, candidates=torch.ones(2, 2, dtype=torch.bool), n_gallery=10, progress=False),
           '`candidates` must be integer indices', exc=TypeError)
    raises(lambda: time_rerank(scorer, 2, 2, candidates=[[0, 1], [2, 3]], progress=False), 'pass `n_gallery`')
    raises(lambda: time_rerank(scorer, 2, 3, candidates=[[0, 1], [2, 3]], n_gallery=10, progress=False),
           '`candidates` must be n_queries x depth = 2 x 3, got (2, 2)')
    raises(lambda: time_rerank(scorer, 2, 5, n_gallery=4, progress=False), '`depth` 5 is larger than `n_gallery` 4')
    raises(lambda: time_rerank(scorer, 2, 2, n_gallery=0, progress=False), '`n_gallery` must be a positive int')
    raises(lambda: time_rerank(lambda q, c: torch.zeros(len(q), 7), 2, 2, progress=False),
           '`score_pairs` returned shape (4, 7) for 4 pairs', 'shape (4,)')
    raises(lambda: time_rerank(lambda q, c: 1.0, 2, 2, progress=False), '`score_pairs` returned shape () for 4 pairs')
    assert time_rerank(lambda q, c: np.zeros(len(q)), 3, 2, batch=4, progress=False)['status'] == 'ok'   # numpy scores


def test_stored_sizes_and_view_indices_are_checked():
    "Finding 11g: text_dim=0 is rejected (None means 'same as dim'), counts must be non-negative ints, view indices ints."
    assert Stored.embedding(5).bytes_per_text == 20 and Stored.embedding(5, text_dim=3).bytes_per_text == 12
    raises(lambda: Stored.embedding(5, text_dim=0), '`text_dim` must be a positive int or None (None: the same as `dim`), got 0')
    raises(lambda: Stored.embedding(0), '`dim` must be a positive int, got 0')
    raises(lambda: Stored((('x', (True,), 'float32'),)), 'shape must be positive ints')
    s = Stored.embedding(5)
    assert s.nbytes(np.int64(2), 0) == 40 and s.gib(0, 0) == 0.0
    raises(lambda: s.gib(-10, 3), '`n_images` must be a non-negative int, got -10')
    raises(lambda: s.nbytes(3, -1), '`n_texts` must be a non-negative int, got -1')
    raises(lambda: s.nbytes(1.9, 0), '`n_images` must be a non-negative int, got 1.9')
    v = scale_by_duplication(list('abc'), 7)
    raises(lambda: v[1.5], 'DuplicatedView indices must be ints, int arrays or a slice, got float', exc=TypeError)
    raises(lambda: v[np.array([0.5, 1.0])], 'got float64', exc=TypeError)
    raises(lambda: v[np.array([True, False] * 3 + [True])], 'got bool', 'np.flatnonzero(mask)', exc=TypeError)
    assert v[[]] == [] and v[np.array([6, -7])] == ['a', 'a'] and v[torch.tensor([4])] == ['b']
