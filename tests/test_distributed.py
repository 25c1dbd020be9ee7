"""Sharded search and evaluation: merge_topk and the join of block values (no engine), then fico_itr.distributed on
one local Ray cluster (2 CPUs, a small object store, no dashboard) shared by this module's tests and shut down at the
end. Equality with one process is exact: lists, scores and every number."""
import os, sys, threading, time
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fico_itr.core import EvaluationSplit
from fico_itr.evaluate import reduce_values
from fico_itr.similarity import HashCodes
from fico_itr.search import TopK, topk_search, merge_topk, evaluate_topk, _topk_block_values, _join_block_values, _topk_plan
from _helpers import raises


# ---- the merge and the join, without Ray ----

@settings(max_examples=80, deadline=None)
@given(st.integers(1, 30), st.integers(1, 150), st.lists(st.integers(1, 80), min_size=0, max_size=6),
       st.sampled_from(['inner_product', 'hamming']), st.integers(0, 2 ** 32 - 1))
def test_merge_topk_any_split_any_order_equals_topk_search(n_q, m, cuts, measure, seed):
    "Any cut of the gallery into shards, merged in any order, gives topk_search's lists; few score values: ties everywhere."
    rng = np.random.default_rng(seed)
    if measure == 'hamming':
        q, g = rng.integers(0, 2, (n_q, 8)), rng.integers(0, 2, (m, 8))
    else:                                                      # integer vectors: exact float32 scores, many equal
        q, g = rng.integers(-1, 2, (n_q, 3)).astype(np.float32), rng.integers(0, 3, (m, 3)).astype(np.float32)
    k = int(rng.integers(1, m + 1))
    bounds = sorted({0, m, *[c % m for c in np.cumsum(cuts)]})
    shards = list(zip(bounds[:-1], bounds[1:]))
    full = topk_search(q, g, k, measure, device='cpu')
    parts = [(topk_search(q, g[s:e], min(k, e - s), measure, device='cpu'), s) for s, e in shards]
    order = rng.permutation(len(parts))
    merged = merge_topk([parts[i][0] for i in order], [parts[i][1] for i in order], k)
    np.testing.assert_array_equal(merged.indices, full.indices)
    np.testing.assert_array_equal(merged.scores, full.scores)


def test_merge_topk_keeps_empty_slots_and_checks_its_arguments():
    one = TopK(np.array([[3., 1., -np.inf]], np.float32), np.array([[0, 1, -1]]))
    assert merge_topk([one], [10], 3).indices.tolist() == [[10, 11, -1]]          # -1 stays -1, sorted last
    assert merge_topk([one], [10], 2).indices.tolist() == [[10, 11]]
    assert merge_topk([one, (np.array([[1.]]), np.array([[0]]))], [10, 0], 3).indices.tolist() == [[10, 0, 11]]
    raises(lambda: merge_topk([], [], 3), '`parts` is empty')
    raises(lambda: merge_topk([one], [0, 1], 3), '1 parts but 2 offsets')
    raises(lambda: merge_topk([one], [-1], 3), 'offsets[0] must be a non-negative int')
    raises(lambda: merge_topk([one], [0], 0), '`k` must be a positive int')
    raises(lambda: merge_topk([one], [2 ** 32], 3), 'exceeds the 32-bit index')


def test_topk_search_refuses_bad_block_sizes():
    x = np.eye(4, dtype=np.float32)
    raises(lambda: topk_search(x, x, 2, gallery_block=-1), '`gallery_block` must be a positive int')
    raises(lambda: topk_search(x, x, 2, query_block=0), '`query_block` must be a positive int')


def test_join_block_values_in_any_order_gives_evaluate_topk_bit_for_bit():
    rng = np.random.default_rng(3)
    split = EvaluationSplit.uniform(60, 5, labels=rng.random((60, 6)) < .3)
    img, cap = rng.standard_normal((60, 8)), rng.standard_normal((300, 8))
    top = topk_search(img, cap, 20, device='cpu')
    metrics = {'instance': ['R@1', 'R@5', 'MedR'], 'category': ['mAP@10', 'P@5']}
    conv, plan = _topk_plan(split, 'i2t', 20, 60, 'default', metrics, None, None)
    ref = evaluate_topk(split, top, metrics=metrics, block_size=16).table.value.tolist()
    got = []
    for g, (specs, rel) in plan.items():
        blocks = [(s, _topk_block_values(rel, top.indices[s:s + 16], s, specs, conv)) for s in range(0, 60, 16)]
        got += [v for _, _, v in reduce_values(_join_block_values(blocks[::-1], 60), specs, conv)]
    np.testing.assert_array_equal(got, ref)                                 # equal bits, n/a (MedR past k) included
    raises(lambda: _join_block_values(blocks[:2] + blocks[3:], 60), 'the next block starts at 48: a block is missing')
    raises(lambda: _join_block_values(blocks + blocks[:1], 60), 'blocks overlap')


# ---- on a local Ray cluster ----

@pytest.fixture(scope='module')
def ray():
    ray = pytest.importorskip('ray', reason="ray is not installed: pip install 'fico-itr[ray]'")
    ray.init(num_cpus=2, object_store_memory=150 * 2 ** 20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope='module')
def data():
    "A 3,000-item gallery with copies of one vector on both sides of every boundary of 2 and 5 shards, queries at them; 16-bit codes."
    rng = np.random.default_rng(0)
    g = rng.standard_normal((3000, 16)).astype(np.float32)
    for b in (600, 1200, 1500, 1800, 2400): g[b - 4:b + 4] = g[7]           # 41 copies: ties cut at k across shards
    q = rng.standard_normal((120, 16)).astype(np.float32)
    q[:10] = g[7]
    return dict(q=q, g=g, bq=rng.integers(0, 2, (120, 16)), bg=rng.integers(0, 2, (3000, 16)))


def _equal(a, b):
    np.testing.assert_array_equal(np.asarray(a.indices), np.asarray(b.indices))
    np.testing.assert_array_equal(np.asarray(a.scores), np.asarray(b.scores))


@pytest.mark.parametrize('n_shards', [1, 2, 5])
@pytest.mark.parametrize('measure', ['cosine', 'hamming'])
def test_sharded_topk_equals_topk_search(ray, data, measure, n_shards):
    from fico_itr.distributed import sharded_topk
    q, g = (data['q'], data['g']) if measure == 'cosine' else (data['bq'], data['bg'])
    ref = topk_search(q, g, 25, measure, device='cpu')
    if measure == 'cosine': assert len(set(ref.scores[0])) == 1     # the first query's list is one tie across the boundaries
    else: assert (ref.scores[:, -1] == ref.scores[:, -2]).mean() > .5   # 16-bit codes: most lists are cut inside a tie
    _equal(sharded_topk(q, g, 25, measure, n_shards=n_shards, query_block=50), ref)


def test_sharded_topk_reads_paths_memmaps_and_packed_codes(ray, data, tmp_path):
    from fico_itr.distributed import sharded_topk
    q, g = data['q'], data['g']
    np.save(tmp_path / 'g.npy', g)
    for i, (s, e) in enumerate([(0, 1000), (1000, 3000)]): np.save(tmp_path / f'g{i}.npy', g[s:e])
    ref = topk_search(q, g, 25, 'cosine', device='cpu')
    mm = np.load(tmp_path / 'g.npy', mmap_mode='r')
    np.save(tmp_path / 'q.npy', q)
    top = sharded_topk(np.load(tmp_path / 'q.npy', mmap_mode='r'), str(tmp_path / 'g.npy'), 25, n_shards=3, query_block=64,
                       out=tmp_path / 'lists')                                  # one file, 3 ranges; memmap queries; lists to files
    _equal(top, ref)
    assert sorted(os.listdir(tmp_path / 'lists')) == ['indices.npy', 'scores.npy']
    _equal(TopK(np.load(tmp_path / 'lists' / 'scores.npy'), np.load(tmp_path / 'lists' / 'indices.npy')), ref)
    _equal(sharded_topk(q, [tmp_path / 'g0.npy', tmp_path / 'g1.npy'], 25, query_block=64), ref)         # a file per shard
    _equal(sharded_topk(q, [mm[:1500], mm[1500:]], 25, query_block=64), ref)                             # memmap row ranges
    packed = np.packbits(data['bg'], axis=1)
    np.save(tmp_path / 'codes.npy', packed)
    bref = topk_search(data['bq'], data['bg'], 25, 'hamming', device='cpu')
    _equal(sharded_topk(HashCodes.from_bits(data['bq']), str(tmp_path / 'codes.npy'), 25, 'hamming', n_shards=2, n_bits=16), bref)


def test_sharded_topk_checks_before_it_starts(ray, data, tmp_path):
    from fico_itr.distributed import sharded_topk
    q, g = data['q'], data['g']
    raises(lambda: sharded_topk(q[:, :8], g, 5), 'queries have dimension 8 but the gallery has 16')
    raises(lambda: sharded_topk(q, g, 3001), 'K=3001 but the gallery has only 3000')
    raises(lambda: sharded_topk(q, tmp_path / 'none.npy', 5), 'no file', exc=FileNotFoundError)
    raises(lambda: sharded_topk(q, g, 5, n_shards=0), '`n_shards` must be a positive int')
    raises(lambda: sharded_topk(q, [g[:10], g[10:]], 5, n_shards=2), 'already a list of 2 shards')
    (tmp_path / 'out').mkdir(); np.save(tmp_path / 'out' / 'scores.npy', np.zeros(1))
    raises(lambda: sharded_topk(q, g, 5, out=tmp_path / 'out'), 'already holds scores.npy', exc=FileExistsError)


@pytest.mark.parametrize('measure', ['cosine', 'hamming'])
def test_sharded_evaluate_equals_evaluate_topk_bit_for_bit(ray, measure):
    from fico_itr.distributed import sharded_evaluate
    rng = np.random.default_rng(5)
    split = EvaluationSplit.uniform(200, 5, labels=rng.random((200, 6)) < .25)
    if measure == 'cosine':
        img, cap = rng.standard_normal((200, 16)).astype(np.float32), rng.standard_normal((1000, 16)).astype(np.float32)
        cap[495:505] = cap[1]; img[95:105] = img[2]                      # ties across the 2-shard boundaries
    else:
        img, cap = rng.integers(0, 2, (200, 12)), rng.integers(0, 2, (1000, 12))
    metrics = {'instance': ['R@1', 'R@5', 'R@10', 'MedR'], 'category': ['mAP@10', 'P@10', 'mAP@N']}
    got = sharded_evaluate(split, img, cap, 10, measure, n_shards=2 if measure == 'cosine' else 3, query_block=128, metrics=metrics)
    one = evaluate_topk(split, topk_search(img, cap, 10, measure, device='cpu'), topk_search(cap, img, 10, measure, device='cpu'),
                        metrics=metrics, block_size=128)
    a, b = got.table, one.table
    assert a.drop(columns='value').equals(b.drop(columns='value'))
    np.testing.assert_array_equal(a.value.to_numpy(), b.value.to_numpy())   # equal bits, n/a in the same places


def _kill_mid_run(ray, sg, queries, **kw):
    "Search in a thread; kill shard 0's actor while the search runs (Ray may restart it); return the result or the error."
    box = {}
    def run():
        try: box['top'] = sg.search(queries, 25, query_block=4, **kw)   # 4 rows: one row would be a GEMV, other float bits
        except Exception as e: box['error'] = e
    t = threading.Thread(target=run); t.start()
    time.sleep(0.5)
    assert t.is_alive(), 'the search ended before the kill: make it longer'
    ray.kill(sg.actors[0], no_restart=False)
    t.join()
    return box


def test_a_killed_actor_is_restarted_and_the_lists_are_exact(ray, data, tmp_path):
    from fico_itr.distributed import ShardedGallery
    np.save(tmp_path / 'g.npy', data['g'])
    q = np.tile(data['q'], (10, 1))                                          # 300 blocks of 4 queries
    with ShardedGallery(str(tmp_path / 'g.npy'), 'cosine', n_shards=2, max_retries=3) as sg:
        box = _kill_mid_run(ray, sg, q)
    assert 'error' not in box, box.get('error')
    _equal(box['top'], topk_search(q, data['g'], 25, device='cpu'))


def test_a_killed_actor_without_retries_fails_naming_the_block_and_writes_nothing(ray, data, tmp_path):
    from fico_itr.distributed import ShardedGallery
    q = np.tile(data['q'], (10, 1))
    with ShardedGallery(data['g'], 'cosine', n_shards=2, max_retries=0) as sg:
        box = _kill_mid_run(ray, sg, q, out=tmp_path / 'lists')
    assert 'top' not in box
    assert isinstance(box['error'], RuntimeError) and 'failed after 0 retries' in str(box['error'])
    assert str(box['error']).startswith('query block ')
    assert os.listdir(tmp_path / 'lists') == []                             # no file that looks finished


def test_cli_evaluate_backend_ray_writes_evaluate_topks_numbers(ray, tmp_path, capsys):
    "fico-itr evaluate --backend ray (in this process, on the shared cluster): the record holds evaluate_topk's numbers."
    import json
    from fico_itr.cli import main
    from fico_itr.data import save_split
    rng = np.random.default_rng(8)
    split = EvaluationSplit.uniform(100, 5, name='tiny')
    img, cap = rng.standard_normal((100, 8)).astype(np.float32), rng.standard_normal((500, 8)).astype(np.float32)
    cap[245:255] = cap[3]                                                    # ties across the 2-shard boundary
    save_split(split, tmp_path / 'split.npz'); np.save(tmp_path / 'img.npy', img); np.save(tmp_path / 'cap.npy', cap)
    assert main(['evaluate', '--split-file', str(tmp_path / 'split.npz'), '--images', str(tmp_path / 'img.npy'), '--captions',
                 str(tmp_path / 'cap.npy'), '--backend', 'ray', '--top-k', '20', '--shards', '2', '--metrics', 'R@1,R@5,MedR',
                 '--out', str(tmp_path / 'rec.json'), '--no-progress']) == 0, capsys.readouterr().err
    rec = json.loads((tmp_path / 'rec.json').read_text())
    one = evaluate_topk(split, topk_search(img, cap, 20, device='cpu'), topk_search(cap, img, 20, device='cpu'), metrics=['R@1', 'R@5', 'MedR'])
    assert rec['backend'] == {'name': 'ray', 'top_k': 20, 'shards': 2} and rec['conventions']['name'] == 'default+top20'
    np.testing.assert_array_equal([np.nan if r['value'] is None else r['value'] for r in rec['results']], one.table.value.to_numpy())
    assert main(['evaluate', '--split-file', str(tmp_path / 'split.npz'), '--images', str(tmp_path / 'img.npy'), '--captions',
                 str(tmp_path / 'cap.npy'), '--backend', 'ray', '--top-k', '501']) == 2
    assert 'K=501 but the gallery has only 500' in capsys.readouterr().err


def _stand_in(texts):
    "A random-init tiny CLIP built from a config (a stand-in: no weights are downloaded), the same on every worker (seed 0)."
    from transformers import CLIPImageProcessor
    from fico_itr.encoders import ClipDualEncoder, _tiny_config, _wordlevel_tokenizer
    tok = _wordlevel_tokenizer(texts, 200)
    proc = CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32})
    return ClipDualEncoder.from_config(_tiny_config('CLIPModel', len(tok)), proc, tok)


def _broken():
    raise OSError('no weights here')


def test_encode_on_two_actors_equals_one_process(ray, tmp_path):
    "Image files read by the actors and captions, in shards with row ids: one process's rows, order and bits."
    from functools import partial
    from PIL import Image
    from fico_itr.distributed import encode
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])        # workers cannot import this test module by name
    rng = np.random.default_rng(2)
    paths = []
    for i in range(10):
        paths.append(str(tmp_path / f'{i}.png')); Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(paths[-1])
    texts = [f'a photo of {w} number {i}' for i, w in enumerate(['cat', 'dog', 'car', 'tree', 'boat'] * 3)]
    factory = partial(_stand_in, texts)
    one = factory()
    files = encode(factory, paths, tmp_path / 'img', 'image', batch_size=2, rows_per_shard=4)
    assert [os.path.basename(f) for f in files] == ['image-0000000000-0000000004.npy', 'image-0000000004-0000000008.npy',
                                                    'image-0000000008-0000000010.npy']
    np.testing.assert_array_equal(np.concatenate([np.load(f) for f in files]), one.encode_images(paths, batch_size=2).values)
    files = encode(factory, texts, tmp_path / 'txt', 'text', batch_size=3, rows_per_shard=6, n_actors=3)
    np.testing.assert_array_equal(np.concatenate([np.load(f) for f in files]), one.encode_texts(texts, batch_size=3).values)
    np.testing.assert_array_equal(np.concatenate([np.load(f.replace('.npy', '-ids.npy')) for f in files]), np.arange(15))
    with pytest.raises(RuntimeError, match=r'text rows \d+:\d+ failed after the retries'):
        encode(_broken, texts, tmp_path / 'none', 'text', batch_size=3, rows_per_shard=6, max_retries=0)
    assert not (tmp_path / 'none').exists() and not any(p.name.startswith('.none') for p in tmp_path.iterdir())
