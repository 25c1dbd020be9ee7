"""Sharded exact top-k search on a local Ray cluster against one process: fico_itr.distributed.ShardedGallery with
1, 2 and 4 shards vs fico_itr.search.topk_search, on 20,000 queries x 200,000 items (128-D float32, cosine, copies of
one vector planted across every shard boundary; and 64-bit codes, Hamming, ties everywhere). Synthetic data
(standard normal vectors, uniform random bits): the figures are times, and the lists must be equal.

Usage, from the repository root (the local cluster gets --cpus CPUs; OMP_NUM_THREADS unset so that Ray gives each
actor as many threads as CPUs, and the single process uses --cpus threads):
    env -u OMP_NUM_THREADS PYTHONPATH=. python bench/distributed.py [--quick] [--json out.json]
Prints, per measure and shard count: cluster and actor start-up (apart), search seconds (best of --repeat, after an
untimed warm-up of the single process), the overhead against the single process in seconds and as a ratio, and
whether lists and scores are equal.
"""
import argparse, json, os, platform, sys, tempfile, time
os.environ.pop('OMP_NUM_THREADS', None)
import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument('--queries', type=int, default=20_000)
p.add_argument('--gallery', type=int, default=200_000)
p.add_argument('--dim', type=int, default=128)
p.add_argument('--bits', type=int, default=64)
p.add_argument('--k', type=int, default=100)
p.add_argument('--shards', default='1,2,4')
p.add_argument('--cpus', type=int, default=2)
p.add_argument('--query-block', type=int, default=4096)
p.add_argument('--repeat', type=int, default=2, help='timed searches of each setting; the best is kept')
p.add_argument('--quick', action='store_true', help='2,000 x 20,000: a smoke run')
p.add_argument('--json')
args = p.parse_args()
if args.quick: args.queries, args.gallery = 2_000, 20_000
shard_counts = [int(s) for s in args.shards.split(',')]

import ray
from fico_itr.similarity import HashCodes
from fico_itr.search import topk_search
from fico_itr.distributed import ShardedGallery

def cpu_model():
    try: return next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): return platform.processor()

print(f'{cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, '
      f'ray {ray.__version__}; command: {" ".join(sys.argv)}', flush=True)
rng = np.random.default_rng(0)
tmp = tempfile.mkdtemp()
q = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
g = rng.standard_normal((args.gallery, args.dim), dtype=np.float32)
for n in shard_counts:                                      # ten copies of one vector across every shard boundary
    for b in np.linspace(0, args.gallery, n + 1).round().astype(int)[1:-1]: g[b - 5:b + 5] = g[0]
q[:10] = g[0]
bq = HashCodes.from_bits(rng.integers(0, 2, (args.queries, args.bits), dtype=np.uint8))
bg = rng.integers(0, 2, (args.gallery, args.bits), dtype=np.uint8)
np.save(f'{tmp}/gallery.npy', g); np.save(f'{tmp}/codes.npy', np.packbits(bg, axis=1))
bg = HashCodes.from_bits(bg)
cases = {'cosine': (q, g, f'{tmp}/gallery.npy', None), 'hamming': (bq, bg, f'{tmp}/codes.npy', args.bits)}

torch.set_num_threads(args.cpus)
t0 = time.perf_counter()
ray.init(num_cpus=args.cpus, object_store_memory=1 << 30, include_dashboard=False, log_to_driver=False)
cluster_s = time.perf_counter() - t0
print(f'local Ray cluster of {args.cpus} CPUs started in {cluster_s:.1f} s', flush=True)

rows = []
for measure, (queries, gallery, path, n_bits) in cases.items():
    topk_search(queries[:100], gallery, args.k, measure, device='cpu', progress=False)     # warm-up, untimed
    runs = [topk_search(queries, gallery, args.k, measure, device='cpu', progress=False) for _ in range(args.repeat)]
    ref, single = runs[0], min(r.seconds for r in runs)
    rows.append(dict(measure=measure, shards=0, startup_s=0.0, search_s=round(single, 2), first_search_s=round(ref.seconds, 2),
                     overhead_s=0.0, ratio=1.0, equal=True))
    print(json.dumps(rows[-1]), flush=True)
    for n in shard_counts:
        with ShardedGallery(path, measure, n_shards=n, n_bits=n_bits) as sg:
            tops = [sg.search(queries, args.k, query_block=args.query_block, progress=False) for _ in range(args.repeat)]
        equal = all(np.array_equal(t.indices, ref.indices) and np.array_equal(t.scores, ref.scores) for t in tops)
        best, first = min(t.seconds for t in tops), tops[0].seconds
        rows.append(dict(measure=measure, shards=n, startup_s=round(sg.startup_seconds, 2), search_s=round(best, 2),
                         first_search_s=round(first, 2), overhead_s=round(best - single, 2), ratio=round(best / single, 2),
                         equal=bool(equal)))
        print(json.dumps(rows[-1]), flush=True)
ray.shutdown()

print(f'\n{args.queries:,} queries x {args.gallery:,} items, k={args.k}, query blocks of {args.query_block:,}; '
      f'shards 0 = one process (topk_search, {args.cpus} threads); start-up = actors started and shards loaded '
      f'(the cluster itself: {cluster_s:.1f} s)')
print(f'search s: the best of {args.repeat} searches (first: the first one); overhead and ratio against the single process')
print(f"{'measure':8} {'shards':>6} {'start-up s':>10} {'search s':>9} {'first s':>8} {'overhead s':>10} {'ratio':>6} {'equal':>6}")
for r in rows:
    print(f"{r['measure']:8} {r['shards'] or 'one':>6} {r['startup_s']:>10.2f} {r['search_s']:>9.2f} {r['first_search_s']:>8.2f} "
          f"{r['overhead_s']:>10.2f} {r['ratio']:>6.2f} {str(r['equal']):>6}")
print(f'load average after the run: {os.getloadavg()[0]:.1f}')
if args.json:
    with open(args.json, 'w') as f:
        json.dump(dict(cpu=cpu_model(), cores=os.cpu_count(), command=' '.join(sys.argv), cluster_s=round(cluster_s, 2),
                       queries=args.queries, gallery=args.gallery, dim=args.dim, bits=args.bits, k=args.k, rows=rows), f, indent=1)
