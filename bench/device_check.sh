#!/usr/bin/env bash
# One prepared GPU check (no network; uses the machine's own torch, numpy, pandas, tqdm, pytest, hypothesis):
# the device-equivalence tests, the property tests, and a timing of the COCO-5K-shaped evaluation on CPU and GPU.
# Usage on a GPU machine, from the repository root: bash bench/device_check.sh [OUTDIR]
set -uo pipefail
out=${1:-${OUT:-.}}
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, numpy, pandas; print('torch', torch.__version__, 'numpy', numpy.__version__, 'pandas', pandas.__version__, 'cuda', torch.cuda.is_available())"
  python3 -m pytest tests/test_device.py tests/test_properties.py -q -p no:cacheprovider -rs
  python3 - <<'PY'
import time, torch
from fico_itr.synthetic import coco5k_like
from fico_itr.evaluate import evaluate
d = coco5k_like()
ci, cc = d.hash_codes(64)
for dev in ('cpu', 'cuda'):
    for name, kw in (('256-D cosine', dict(images=d.images, captions=d.captions, measure='cosine')),
                     ('64-bit hamming', dict(images=ci, captions=cc, measure='hamming'))):
        evaluate(d.split, device=dev, progress=False, **kw)   # warm-up
        t = time.perf_counter(); r = evaluate(d.split, device=dev, progress=False, **kw); dt = time.perf_counter() - t
        print(f'COCO-5K-shaped full evaluation ({name}, scores on {dev}, ranking on {torch.get_num_threads()} CPU threads): '
              f'{dt:.2f} s  R@1 i2t {r.get("R@1", "i2t"):.2f}  mAP@N i2t {r.get("mAP@N", "i2t", "category"):.2f}')
PY
} 2>&1 | tee "$out/device_check.txt"
