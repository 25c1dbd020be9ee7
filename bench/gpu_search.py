"""Exact streamed top-k search and its evaluation at the paper's largest scale (section 5.4: 1M queries x 5M
candidates, 2048-D), on one GPU. Synthetic data generated on the GPU: gallery vectors ~ N(0, I), each query is a
gallery vector (its ground truth) plus Gaussian noise (sigma 8), scored by inner product as FAISS IndexFlatIP.

Usage on a GPU machine, from the repository root (no network; needs torch, numpy, pandas, tqdm):
    PYTHONPATH=. python3 bench/gpu_search.py --out results.json
Prints and writes: search time per scale (bf16 inputs with float32 accumulation), the recall of bf16 against float32
on a query subset, and R@1/10/100 computed by the evaluation loop from the top-k lists.
"""
import argparse, json, time, sys
import numpy as np
import torch
from fico_itr.search import topk_search
from fico_itr.ranking import _ranked_from_topk
from fico_itr import metrics as M

p = argparse.ArgumentParser()
p.add_argument('--scales', default='100000:500000,1000000:5000000')
p.add_argument('--dim', type=int, default=2048)
p.add_argument('--k', type=int, default=100)
p.add_argument('--noise', type=float, default=8.0)
p.add_argument('--check-queries', type=int, default=10000)
p.add_argument('--budget', type=float, default=330, help='seconds; a scale projected past it is skipped')
p.add_argument('--out')
p.add_argument('--device', default='cuda', help='cuda, or cpu for a smoke run at a tiny scale')
args = p.parse_args()
dev = torch.device(args.device)
name = torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'cpu'
print(f'{name}, torch {torch.__version__}; command: {" ".join(sys.argv)}', flush=True)
T0, results = time.perf_counter(), {'device': name, 'torch': torch.__version__, 'runs': []}

def make(nq, nb, d, seed=0):
    g = torch.Generator(device=dev).manual_seed(seed)
    gallery = torch.empty(nb, d, device=dev, dtype=torch.bfloat16)
    for s in range(0, nb, 1 << 20): gallery[s:s + (1 << 20)] = torch.randn(min(1 << 20, nb - s), d, device=dev, generator=g)
    gt = torch.randint(0, nb, (nq,), device=dev, generator=g)
    queries = torch.empty(nq, d, device=dev, dtype=torch.bfloat16)
    for s in range(0, nq, 1 << 18):
        e = min(s + (1 << 18), nq)
        queries[s:e] = gallery[gt[s:e]].float() + args.noise * torch.randn(e - s, d, device=dev, generator=g)
    return queries, gallery, gt.cpu().numpy()

def recall(top, gt, nb):
    ranked = _ranked_from_topk(top.indices == gt[:, None], np.ones(len(gt), np.int64), nb)
    return {f'R@{k}': float(M.recall_at_k(ranked, k).mean() * 100) for k in (1, 10, 100) if k <= top.k}

last = None
for scale in args.scales.split(','):
    nq, nb = map(int, scale.split(':'))
    if last is not None:
        projected = last[0] * (nq * nb) / last[1]
        if time.perf_counter() - T0 + projected > args.budget:
            print(f'skip {nq}/{nb}: projected {projected:.0f} s past the budget', flush=True); continue
    queries, gallery, gt = make(nq, nb, args.dim)
    top = topk_search(queries, gallery, args.k, 'inner_product', device=dev, precision='bf16', progress=False,
                      query_block=8192 if dev.type == 'cuda' else None)
    t_eval = time.perf_counter(); r = recall(top, gt, nb); t_eval = time.perf_counter() - t_eval
    run = {'queries': nq, 'gallery': nb, 'dim': args.dim, 'k': args.k, 'precision': 'bf16 inputs, float32 accumulation',
           'search_s': round(top.seconds, 2), 'evaluation_s': round(t_eval, 2), **r}
    print(json.dumps(run), flush=True)
    nc = min(args.check_queries, nq)               # float32 reference on a query subset, gallery in 1M-row chunks
    t_ref, parts = time.perf_counter(), []
    for s in range(0, nb, 1 << 20):
        part = topk_search(queries[:nc].float(), gallery[s:s + (1 << 20)].float(), args.k, 'inner_product', device=dev,
                           precision='float32', progress=False)
        parts.append((part.scores, part.indices + s))
    sc, ix = np.concatenate([p[0] for p in parts], 1), np.concatenate([p[1] for p in parts], 1)
    order = np.lexsort((ix, -sc), axis=1)[:, :args.k]
    ref_idx = np.take_along_axis(ix, order, 1)
    run['fp32_check_queries'] = nc
    run['top1_agreement_bf16_vs_fp32'] = float((ref_idx[:, 0] == top.indices[:nc, 0]).mean())
    run['topk_overlap_bf16_vs_fp32'] = float(np.mean([len(np.intersect1d(a, b)) / args.k for a, b in zip(ref_idx, top.indices[:nc])]))
    run['fp32_subset_R@1'] = float((ref_idx[:, 0] == gt[:nc]).mean() * 100); run['bf16_subset_R@1'] = float((top.indices[:nc, 0] == gt[:nc]).mean() * 100)
    run['fp32_subset_search_s'] = round(time.perf_counter() - t_ref, 2)
    print(json.dumps(run), flush=True)
    results['runs'].append(run)
    last = (top.seconds, nq * nb)
    del queries, gallery, top
    if dev.type == 'cuda': torch.cuda.empty_cache()
results['total_s'] = round(time.perf_counter() - T0, 1)
print(f'total {results["total_s"]} s')
if args.out: open(args.out, 'w').write(json.dumps(results, indent=1))
