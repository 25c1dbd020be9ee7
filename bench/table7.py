#!/usr/bin/env python3
"""The FiCo-ITR paper's Table 7 protocol on faiss.contrib.datasets.SyntheticDataset, beside the paper's figures.

FG: 2048-D float vectors (SyntheticDataset, seed 1338), exact inner product (FAISS IndexFlatIP, or torch on a GPU with
--flat torch) and HNSW (M=32, efConstruction=40, efSearch=max(128, k)). CG: 64-bit codes of the same vectors by
random-hyperplane LSH (sign of a seeded Gaussian projection), exact Hamming (IndexBinaryFlat) and an inverted file
(IndexBinaryIVF, nlist=round(sqrt(n)), nprobe=16). Recall is against the FG flat search: 1-recall@k (the paper's
reading: share of queries whose exact nearest neighbour is in the top k) and overlap@k (|top k ∩ exact top k| / k).

  python bench/table7.py --scales 10000:50000,100000:500000 --k 1000 --json bench/results/table7_cpu.json
  python bench/table7.py --scales 1000000:5000000 --flat torch --device cuda --json bench/results/table7_gpu.json
  python bench/table7.py --scales 500000:2500000,1000000:5000000 --query-sample 2000 --indexes 'FG Flat,CG Flat,CG IVF'

--query-sample N runs fico_itr.paper.table7_sampled: the gallery is made chunk by chunk (never held whole), every
index is searched by N seeded random queries, recall comes with its standard error (R@k_se) and search time is scaled
to the whole query set (the measured time is search_s_sample). The exact reference is then torch's topk_search.

Runs on faiss-cpu or a faiss-gpu build (--device cuda puts the flat indexes on the GPU where FAISS has one; HNSW and
binary IVF stay on the CPU, as FAISS has no GPU version of them). Memory: about 12 x d bytes per (query + item) for the
vectors, plus one index at a time and 12 x k bytes per query for each list kept (the exact lists and one other);
1M/5M at d=2048 needs about 100 GB of RAM and, with --flat torch --device cuda, 45 GB of GPU memory.

The --json file is rewritten after every row (HNSW, the slowest, runs last), so a run cut short keeps what it measured.
Recorded runs live in bench/results/ and are read by nbs/experiments/54_scaling.ipynb (table7_gpu.json: the 1M/5M run).
"""
import argparse, os, shlex, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pandas as pd
from fico_itr.similarity import resolve_device
from fico_itr.paper import table7, table7_sampled, _compare_table7, _save_table7, _PAPER_TABLE7
from fico_itr.cost import scale_label
from fico_itr.indexes import _faiss_gpus, _faiss


def parse_scales(text):
    out = []
    for part in text.split(','):
        try: q, g = (int(float(v)) for v in part.split(':'))
        except ValueError: raise SystemExit(f"--scales: {part!r} is not QUERIES:GALLERY (e.g. 10000:50000)")
        out.append((q, g))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--scales', default='10000:50000', help='comma-separated QUERIES:GALLERY pairs (default 10000:50000)')
    ap.add_argument('--k', type=int, default=1000, help='top k searched for every index (default 1000)')
    ap.add_argument('--d', type=int, default=2048, help='FG dimension (default 2048)')
    ap.add_argument('--bits', type=int, default=64, help='CG code length (default 64)')
    ap.add_argument('--nprobe', type=int, default=16, help='binary IVF lists scanned (default 16)')
    ap.add_argument('--nlist', type=int, default=None, help='binary IVF lists (default round(sqrt(gallery)))')
    ap.add_argument('--ef-search', type=int, default=128, help='HNSW efSearch (searched with max(this, k); default 128)')
    ap.add_argument('--indexes', default=None, help="which rows to run (default 'FG Flat,FG HNSW,CG Flat,CG IVF'; with --query-sample 'FG Flat,CG Flat,CG IVF')")
    ap.add_argument('--rerank-ks', default='', help='also CG Flat top k -> exact FG rerank rows, e.g. 100,1000')
    ap.add_argument('--hnsw-fixed-ef', default='', help='also HNSW rows searched with this efSearch < k (faster; items past the first efSearch found less well; lists may hold fewer than k)')
    ap.add_argument('--counting-knn', action='store_true', help="binary flat by FAISS's counting k-NN (use_heap=False: same lists, faster)")
    ap.add_argument('--flat', choices=('faiss', 'torch'), default=None, help='exact FG search by FAISS (the default) or fico-itr topk_search (always, with --query-sample)')
    ap.add_argument('--device', default=None, help="cpu or cuda (default: the GPU where FAISS has one, else the CPU)")
    ap.add_argument('--query-sample', type=int, default=None, help='search N seeded random queries per scale, gallery made in chunks (table7_sampled)')
    ap.add_argument('--sample-seed', type=int, default=0, help='seed of the query sample (default 0)')
    ap.add_argument('--chunk', type=int, default=1 << 16, help='gallery rows made at a time with --query-sample (default 65536)')
    ap.add_argument('--source', default=None, help='label of this run in plots (default: the machine)')
    ap.add_argument('--json', default=None, help='write the rows and this command here')
    a = ap.parse_args(argv)
    faiss = _faiss()
    threads = faiss.omp_get_max_threads()
    if a.query_sample is not None and (a.rerank_ks or a.flat == 'faiss'):
        raise SystemExit('--query-sample takes the exact reference from torch and has no rerank rows: drop --rerank-ks and --flat faiss')
    flat = a.flat or ('torch' if a.query_sample is not None else 'faiss')
    indexes = tuple(i.strip() for i in (a.indexes or ('FG Flat,CG Flat,CG IVF' if a.query_sample is not None else
                                                      'FG Flat,FG HNSW,CG Flat,CG IVF')).split(',') if i.strip())
    # the label names where the exact search runs: torch's device with --flat torch, else FAISS's
    dev = str(resolve_device(a.device)) if flat == 'torch' else a.device or ('cuda' if _faiss_gpus() else 'cpu')
    source = a.source or (f'GPU script ({dev}, flat={flat})' if dev == 'cuda' else f'CPU ({threads} threads)')
    cmd = 'python ' + ' '.join(shlex.quote(x) for x in [os.path.relpath(__file__)] + list(argv if argv is not None else sys.argv[1:]))
    print(f'# {cmd}\n# faiss {faiss.__version__} ({_faiss_gpus()} GPUs), {threads} OpenMP threads, {os.cpu_count()} cores; source: {source}')
    t0 = time.perf_counter()
    save = ((lambda rows: _save_table7(rows.assign(source=source), a.json, command=cmd, source=source + ' [incomplete: cut short]',
                                      faiss=faiss.__version__, threads=threads)) if a.json else None)
    if a.query_sample is not None:
        done = []
        def keep(rows):                      # the rows of the scales already finished, then this scale's so far
            if save: save(pd.concat(done + [rows], ignore_index=True))
        for q, g in parse_scales(a.scales):
            done.append(table7_sampled(q, g, a.query_sample, k=a.k, d=a.d, n_bits=a.bits, sample_seed=a.sample_seed,
                                       indexes=indexes, nlist=a.nlist,
                                       nprobe=a.nprobe, ef_search=a.ef_search, recall_ks=tuple(k for k in (1, 100, 1000) if k <= a.k),
                                       device=a.device, chunk=a.chunk, hnsw_fixed_ef=tuple(int(x) for x in a.hnsw_fixed_ef.split(',') if x),
                                       binary_use_heap=not a.counting_knn, checkpoint=keep))
        df = pd.concat(done, ignore_index=True)
    else:
        df = table7(parse_scales(a.scales), k=a.k, d=a.d, n_bits=a.bits, nlist=a.nlist, nprobe=a.nprobe, ef_search=a.ef_search,
                indexes=indexes, flat=flat, device=a.device,
                rerank_ks=tuple(int(x) for x in a.rerank_ks.split(',') if x), recall_ks=tuple(k for k in (1, 100, 1000) if k <= a.k),
                hnsw_fixed_ef=tuple(int(x) for x in a.hnsw_fixed_ef.split(',') if x), binary_use_heap=not a.counting_knn,
                checkpoint=save)
    df['source'] = source
    total = time.perf_counter() - t0
    pd.set_option('display.width', 200); pd.set_option('display.max_columns', 30); pd.set_option('display.max_colwidth', 60)
    rk = [c for c in ('R@1', 'R@100', 'R@1000') if c in df]
    print('\n## Measured (recall in %: 1-recall@k, then overlap@k; seconds)')
    se = [f'{c}_se' for c in rk if f'{c}_se' in df]       # sampled runs: standard errors and the measured time
    extra = se + [c for c in ('sampled_queries', 'search_s_sample') if c in df]
    print(df[['scale', 'index'] + rk + [c.replace('R@', 'overlap@') for c in rk] + ['build_s', 'search_s'] + extra]
          .to_string(index=False, float_format=lambda v: f'{v:.2f}'))
    print('\n## Beside the paper (same scale and index; ratios measured / paper)')
    cmp = _compare_table7(df)
    have = cmp['paper R@1'].notna()
    if have.any(): print(cmp[have].to_string(index=False, float_format=lambda v: f'{v:.2f}'))
    else: print('(the paper has no row at ' + ', '.join(sorted(set(df.scale))) + ')')
    print('\n## The paper (Table 7, as printed; 1-recall reading; "<0.01 s" shown as 0.01)')
    p = _PAPER_TABLE7.assign(scale=[scale_label(q, g) for q, g in zip(_PAPER_TABLE7.n_queries, _PAPER_TABLE7.n_gallery)])
    print(p[['scale', 'index', 'R@1', 'R@100', 'R@1000', 'build_s', 'search_s']].to_string(index=False))
    print(f'\n# total {total:.1f} s')
    if a.json:
        _save_table7(df, a.json, command=cmd, source=source, faiss=faiss.__version__, threads=threads, total_s=round(total, 1))
        print(f'# wrote {a.json}')
    return df


if __name__ == '__main__':
    main()
