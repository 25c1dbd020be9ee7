#!/usr/bin/env python3
"""Section 5.3 of FiCo-ITR (Tables 5 and 6) on real-size architectures with RANDOM weights: encoding time at growing
scales of a duplicated test set, BLIP-2's ITM rerank time at depth k, and storage, beside the paper's figures.

Models (built from transformers configs with the published sizes, random weights, nothing downloaded):
  clip-b16    CLIP ViT-B/16 (CLIPModel)                       clip-l14   CLIP ViT-L/14
  blip2       BLIP-2 retrieval, ViT-g/14 at 364 px + Q-Former (Blip2ForImageTextRetrieval); also its ITM rerank
  vgg19-hash  VGG-19 (pixels, 224 px) + a 64-bit hashing layer; texts: 300-D vectors -> MLP -> 64 bits
  hash-head   the 64-bit hashing layers alone, from VGG-19 fc7 features (how the paper's CG models are fed)

Inputs: the real photographs bundled with scikit-image / scikit-learn (5 images) and the first 5,000 real COCO 5K test
captions shipped with fico-itr, duplicated to each scale (fico_itr.cost.scale_by_duplication). The captions are
turned into token ids by a stand-in word-hash tokenizer (CLIP's and BERT's vocabulary files cannot be downloaded) at
the models' fixed padded lengths (77, 35): the cost depends on the lengths, not on which ids. The hashing models'
text vectors are a TF-IDF + SVD (LSA) stand-in for the paper's Doc2Vec. Compute cost does not depend on the weights'
values; the embeddings mean nothing.

Budget: --budget seconds of timing in all, shared equally by the models (BLIP-2 gives half of its share to the
rerank); each scale gets its model's share divided by the number of scales. A scale that reaches its limit is
extrapolated linearly from the items done (--on-limit extrapolate, the default; the row says so) or recorded as
'DNF (time limit)' (--on-limit dnf). Out-of-memory becomes a 'DNF (out of memory)' row and the larger scales of that
model are skipped. Model construction and warm-up are not counted in the budget.

  python bench/encoding_cost.py --device cuda --out encoding_cost_gpu.json                 # one GPU, under 10 minutes
  python bench/encoding_cost.py --device cpu --scales 8 --budget 120 --out bench/results/encoding_cost_cpu.json

The JSON is rewritten after every model, so a run cut short keeps what it measured.
"""
import argparse, datetime, json, os, shlex, sys, time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')   # on a shared CPU, spinning OpenMP threads slowed small ops 10-500x (set before torch)
import numpy as np
import pandas as pd
import torch
from fico_itr.cost import (RANDOM_WEIGHTS_NOTE, Stored, _clip_config, _blip2_retrieval_config, _random_weight_model,
                           _clip_encoders, _blip2_encoders, _blip2_vit_features, _blip2_itm_scorer, _VGGHashNet,
                           _sample_images, _pixel_batch, _hash_token_ids, encoding_cost, time_rerank, storage_from_config,
                           storage_table, scale_label, _device_name, _is_out_of_memory)
from fico_itr.paper import _PAPER_SCALES, _check_paper_storage, table5, table6
from fico_itr.data import coco5k_test_captions
from fico_itr.zoo import _TfidfSvdTextEncoder

MODELS = ('clip-b16', 'clip-l14', 'blip2', 'vgg19-hash', 'hash-head')
TOKENIZER_NOTE = 'token ids from a stand-in word-hash tokenizer (not the model\'s), padded to the model\'s fixed length'


def parse_scales(text):
    "'8' -> (8, 40); '1000:5000' -> (1000, 5000); comma-separated."
    out = []
    for part in text.split(','):
        try: v = [int(float(x)) for x in part.split(':')]
        except ValueError: raise SystemExit(f'--scales: {part!r} is not N_IMAGES or N_IMAGES:N_TEXTS')
        if len(v) == 1: v = [v[0], 5 * v[0]]
        if len(v) != 2 or min(v) < 1: raise SystemExit(f'--scales: {part!r} must be positive N_IMAGES[:N_TEXTS]')
        out.append(tuple(v))
    return out


def build(key, dev, dtype, captions):
    "(label, encode_images, encode_texts, base images, base texts, storage, rerank scorer or None, image batch, text batch)."
    images = _sample_images()
    if key in ('clip-b16', 'clip-l14'):
        cfg = _clip_config('ViT-B/16' if key == 'clip-b16' else 'ViT-L/14')
        model = _random_weight_model(cfg, dev, dtype)
        tc = cfg.text_config
        ids = _hash_token_ids(captions, 77, tc.vocab_size, tc.bos_token_id, tc.eos_token_id, tc.eos_token_id)
        ei, et = _clip_encoders(model)
        return (f"CLIP {'ViT-B/16' if key == 'clip-b16' else 'ViT-L/14'}", ei, et,
                _pixel_batch(images, cfg.vision_config.image_size).to(dev), ids.to(dev), storage_from_config(cfg), None, model)
    if key == 'blip2':
        cfg = _blip2_retrieval_config(364)
        model = _random_weight_model(cfg, dev, dtype)
        ids = _hash_token_ids(captions, 35, cfg.qformer_config.vocab_size, 101, 102, 0)
        px = _pixel_batch(images, 364).to(dev)
        ei, et = _blip2_encoders(model)
        with torch.inference_mode(): vit = _blip2_vit_features(model, px)       # what the ITM rerank keeps per image
        return ('BLIP-2 retrieval (ViT-g, 364 px)', ei, et, px, ids.to(dev), storage_from_config(cfg),
                _blip2_itm_scorer(model, vit, ids.to(dev)), model)
    torch.manual_seed(0)
    with torch.device(dev): net = _VGGHashNet(n_bits=64, text_dim=300)
    net = net.to(dtype).eval()
    vectors = torch.from_numpy(_TfidfSvdTextEncoder(dim=300).fit(captions).encode(captions)).to(dev)
    storage = (Stored.embedding(64, 'bit'), None)
    if key == 'vgg19-hash':
        return ('VGG-19 + 64-bit hashing layer', net.encode_images, net.encode_texts, _pixel_batch(images, 224).to(dev),
                vectors, storage, None, net)
    with torch.inference_mode(): _fc7 = net.fc(net.features(_pixel_batch(images, 224).to(dev, dtype)))
    return ('64-bit hashing layers on VGG-19 fc7', net.encode_image_features, net.encode_texts, _fc7, vectors, storage, None, net)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--models', default=','.join(MODELS), help=f'comma-separated, from {", ".join(MODELS)}')
    ap.add_argument('--scales', default='1000:5000,10000:50000,100000:500000,1000000:5000000',
                    help='comma-separated N_IMAGES[:N_TEXTS] (texts default to 5x images); default: the paper\'s four')
    ap.add_argument('--budget', type=float, default=420, help='seconds of timing in all, shared by the models (default 420)')
    ap.add_argument('--on-limit', choices=('extrapolate', 'dnf'), default='extrapolate')
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--half', action='store_true', help='float16 weights and inputs (CUDA)')
    ap.add_argument('--batch-size', type=int, default=None, help='images and texts per batch (default 128 on CUDA, 4 on CPU)')
    ap.add_argument('--warmup', type=int, default=1, help='untimed calls on the first batch before each timed run (default 1)')
    ap.add_argument('--rerank-depth', type=int, default=128, help='BLIP-2 ITM rerank depth k (default 128, the paper\'s)')
    ap.add_argument('--rerank-batch', type=int, default=None, help='pairs per ITM call (default 256 on CUDA, 8 on CPU)')
    ap.add_argument('--rerank-scales', default=None, help='scales of the rerank (default: --scales up to 100K/500K)')
    ap.add_argument('--keep-outputs', action='store_true', help='keep every embedding on the device to the end of each run (no custom batching)')
    ap.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    ap.add_argument('--out', required=True, help='JSON file for the rows and this command')
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    if a.threads: torch.set_num_threads(a.threads)
    keys = [k.strip() for k in a.models.split(',') if k.strip()]
    bad = [k for k in keys if k not in MODELS]
    if bad: raise SystemExit(f'--models: unknown {bad[0]!r}; choose from {", ".join(MODELS)}')
    dev = torch.device(a.device)
    if dev.type == 'cuda' and not torch.cuda.is_available(): raise SystemExit('--device cuda but torch sees no GPU: use --device cpu')
    dtype = torch.float16 if a.half else torch.float32
    scales = parse_scales(a.scales)
    rerank_scales = parse_scales(a.rerank_scales) if a.rerank_scales else [s for s in scales if s[0] <= 100_000]
    bs = a.batch_size or (128 if dev.type == 'cuda' else 4)
    rbs = a.rerank_batch or (256 if dev.type == 'cuda' else 8)
    share = a.budget / len(keys)
    captions = coco5k_test_captions()[0][:5000]
    cmd = 'python ' + ' '.join(shlex.quote(x) for x in [os.path.relpath(__file__)] + list(argv if argv is not None else sys.argv[1:]))
    meta = dict(command=cmd, date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                device=_device_name(dev), torch=torch.__version__, dtype=str(dtype).replace('torch.', ''),
                note=f'{RANDOM_WEIGHTS_NOTE}; real images (scikit-image/scikit-learn) and real COCO captions duplicated to each '
                     f'scale; {TOKENIZER_NOTE}; hashing models\' text input: TF-IDF+SVD 300-D vectors (stand-in for Doc2Vec)',
                budget_s=a.budget, on_limit=a.on_limit, batch_size=bs, rerank_batch=rbs, warmup=a.warmup)
    print(f'# {cmd}\n# {meta["device"]}, torch {torch.__version__}, {meta["dtype"]}; {RANDOM_WEIGHTS_NOTE}', flush=True)
    enc_rows, rr_rows, storage, builds = [], [], {}, {}

    def save():
        out = dict(meta, build_seconds=builds, total_seconds=time.perf_counter() - t_start,
                   encoding=pd.DataFrame(enc_rows).to_dict('records') if enc_rows else [],
                   rerank=rr_rows,
                   storage=storage_table(storage).to_dict('records') if storage else [],
                   paper_storage_check=_check_paper_storage().to_dict('records'))
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1, default=float))

    for key in keys:
        t0 = time.perf_counter()
        try:
            label, ei, et, imgs, txts, store, scorer, model = build(key, dev, dtype, captions)
        except Exception as e:                                     # an out-of-memory build is a DNF row, not a crash
            if not _is_out_of_memory(e): raise
            print(f'[{key}] DNF: building the model ran out of memory ({type(e).__name__})', flush=True)
            enc_rows += [dict(model=key, scale=scale_label(*s), n_images=s[0], n_texts=s[1], seconds=float('nan'),
                              status='DNF (out of memory)', device=_device_name(dev), note='the model did not fit') for s in scales]
            continue
        builds[label] = time.perf_counter() - t0
        label = f'{label} (random weights)'
        storage[label] = store
        print(f'[{label}] built on {dev} in {builds[label.replace(" (random weights)", "")]:.1f} s', flush=True)
        enc_share = share / 2 if scorer is not None else share
        df = encoding_cost(label, ei, et, imgs, txts, scales=scales, batch_size=bs, device=dev, storage=store,
                           warmup=a.warmup, time_limit=enc_share / len(scales), on_limit=a.on_limit,
                           keep_outputs=a.keep_outputs, note=RANDOM_WEIGHTS_NOTE, progress=False)
        for r in df.to_dict('records'):
            enc_rows.append(r)
            print(f"[{label}] {r['scale']:>10}  {r['seconds']:10.2f} s  {r['items_per_s']:10.1f} items/s  "
                  f"peak {r['peak_memory_gib']:.2f} GiB  storage {r['storage_gib']:.4f} GiB  {r['status']}"
                  + (f"  ({r['note'].split('; ' + RANDOM_WEIGHTS_NOTE)[0]})" if r['status'] != 'ok' else ''), flush=True)
        if scorer is not None:
            for ni, nt in rerank_scales:
                r = time_rerank(scorer, ni + nt, a.rerank_depth, batch=rbs, device=dev, warmup=a.warmup,
                                time_limit=share / 2 / len(rerank_scales), on_limit=a.on_limit, progress=False)
                r = dict(model=f'{label}: ITM rerank k={a.rerank_depth}', scale=scale_label(ni, nt), n_images=ni, n_texts=nt,
                         **r, note_all=f'(images + texts) x k pairs, both directions; {RANDOM_WEIGHTS_NOTE}')
                rr_rows.append(r)
                print(f"[{label}] ITM rerank {r['scale']:>10}: {r['n_pairs']:,} pairs  {r['seconds']:10.2f} s  "
                      f"{r['pairs_per_s']:8.1f} pairs/s  {r['status']}" + (f"  ({r['note']})" if r['note'] else ''), flush=True)
        del model, ei, et, imgs, txts, scorer
        if dev.type == 'cuda': torch.cuda.empty_cache()
        save()
    save()
    pd.set_option('display.width', 250); pd.set_option('display.max_columns', 20)
    if enc_rows:
        print('\nTable 5 layout (measured: random-weight architectures on this machine; paper: its models on an A100):')
        print(table5(pd.DataFrame(enc_rows), storage=storage).to_string())
    if rr_rows:
        print('\nTable 6 layout (query-time attention):')
        print(table6(pd.DataFrame(rr_rows)).to_string())
    print(f'\ntotal wall time {time.perf_counter() - t_start:.0f} s; JSON written to {a.out}')


if __name__ == '__main__':
    main()
