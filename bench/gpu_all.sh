#!/usr/bin/env bash
# The GPU figures of issue 17 in ONE device call (under 10 minutes), steps ordered by value so that a time-out still
# leaves the most important ones under $OUT:
#   env        device, driver, torch, CUDA, FAISS versions; whether this FAISS has GPU support
#   eval       GPU evaluation against the CPU path on COCO-5K-shaped synthetic data (same numbers?), timed on the GPU,
#              and which torch ops ran on the GPU (the profiler tells whether the ranking stays on the CPU)
#   tests      the CUDA tests (tests/test_device.py, test_ranking_device.py: ranking on the GPU = numpy, and test_encoders.py::test_cuda_matches_cpu)
#   encoding   bench/encoding_cost.py --device cuda (Tables 5/6 layout, random-weight models built from configs)
#   table7     bench/table7.py sampled rows FG Flat (torch), CG Flat, CG IVF at 1M/5M, then 500K/2.5M
#   faiss-gpu  FAISS GPU flat indexes (GpuIndexFlatIP, GpuIndexBinaryFlat), only where this FAISS has GPU support
#   hnsw       FG HNSW at 500K/2.5M, only if the time left covers its build
# Each step has its own timeout, cut to the time left in --budget; a step that no longer fits is skipped and says so.
# Output under $OUT (default ./out/gpu): gpu_all.log (every line time-stamped), summary.txt, and the JSON of each
# step (eval_gpu.json, encoding_cost_gpu.json, table7_gpu.json, table7_faiss_gpu.json, table7_gpu_hnsw.json):
# at most 7 files, within what the device tool brings back (8).
#
# Usage:
#   bash bench/gpu_all.sh --prepare     here, once, before the device call: puts what the device machine lacks into
#                                       build/device/ (git-ignored): the faiss-cpu wheel for its Python 3.12 (it has
#                                       no FAISS; a faiss-gpu wheel, 135 MB plus CUDA 12 libraries, cannot travel) and
#                                       a copy of ../shared/data (the CUDA encoder test reads its captions)
#   bash bench/gpu_all.sh               on the GPU machine (device tool: carry ["build/device"], timeout_s 600)
#   bash bench/gpu_all.sh --dry-run     every step with tiny sizes and --device cpu (alias --cpu): a few minutes here
# Options: --budget SECONDS (default 540: the script's own deadline; leaves room under the tool's 600 s limit).
# Environment: PYTHON (default python3), OUT.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
MODE=gpu BUDGET=540
while (($#)); do
  case $1 in
    --dry-run|--cpu) MODE=dry ;;
    --prepare) MODE=prepare ;;
    --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "gpu_all.sh: unknown argument '$1' (use --prepare, --dry-run/--cpu, --budget SECONDS)" >&2; exit 2 ;;
  esac
  shift
done
[[ $BUDGET =~ ^[0-9]+$ ]] || { echo "gpu_all.sh: --budget must be whole seconds, got '$BUDGET'" >&2; exit 2; }
PY=${PYTHON:-python3}
CARRY=build/device

if [[ $MODE == prepare ]]; then
  set -e
  mkdir -p "$CARRY/wheels"
  ver=$("$PY" -c 'import faiss; print(faiss.__version__)' 2>/dev/null || echo 1.15.1)
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$CARRY/wheels" "faiss-cpu==$ver"
  if [[ -d ../shared/data ]]; then rm -rf "$CARRY/data"; cp -r ../shared/data "$CARRY/data"; chmod -R u+w "$CARRY/data"
  else echo "no ../shared/data here: the CUDA encoder test will skip on the device"; fi
  git check-ignore -q "$CARRY" || { echo "$CARRY is not git-ignored: it would travel twice" >&2; exit 1; }
  du -sh "$CARRY"; ls "$CARRY/wheels"
  echo 'ready: run(command="bash bench/gpu_all.sh", carry=["build/device"], timeout_s=600)'
  exit 0
fi

OUT=${OUT:-./out/gpu}
mkdir -p "$OUT" || exit 1
LOG=$OUT/gpu_all.log SUMMARY=$OUT/summary.txt
: >"$LOG"; : >"$SUMMARY"
DEADLINE=$((SECONDS + BUDGET))
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONHASHSEED=0
log() { printf '%(%Y-%m-%dT%H:%M:%S)T %s\n' -1 "$*" | tee -a "$LOG"; }
stamp() { local l; while IFS= read -r l; do printf '%(%H:%M:%S)T [%s] %s\n' -1 "$1" "$l"; done; }
note() { printf '%-10s %-8s %5s s  %s\n' "$1" "$2" "$3" "$4" >>"$SUMMARY"; }

# step NAME MAX_S MIN_S COMMAND...: run under min(MAX_S, time left); skip when less than MIN_S is left
step() {
  local name=$1 max=$2 min=$3; shift 3
  local left=$((DEADLINE - SECONDS)); local t=$((left < max ? left : max))
  if ((t < min)); then log "[$name] SKIPPED: ${left} s left of the ${BUDGET} s budget, the step needs ${min} s"
    note "$name" skipped 0 "needs ${min} s, ${left} s left"; return 0; fi
  local shown=() a; for a in "$@"; do [[ $a == *$'\n'* ]] && shown+=("<inline program: ${a%%$'\n'*}>") || shown+=("$a"); done
  log "[$name] start, timeout ${t} s: ${shown[*]}"
  local t0=$SECONDS rc
  timeout -k 10 "$t" "$@" 2>&1 | stamp "$name" | tee -a "$LOG"; rc=${PIPESTATUS[0]}
  local took=$((SECONDS - t0)) status=ok
  ((rc == 124 || rc == 137)) && status=TIMEOUT
  ((rc != 0 && rc != 124 && rc != 137)) && status=FAILED
  log "[$name] $status (rc $rc) after ${took} s"
  note "$name" "$status" "$took" "rc $rc"
}

if [[ $MODE == gpu ]]; then DEV=cuda; else DEV=cpu; fi
log "gpu_all.sh mode=$MODE device=$DEV budget=${BUDGET}s out=$OUT git=$(git rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "sha1 of fico_itr/*.py + bench/*.py: $(cat fico_itr/*.py bench/*.py | sha1sum | cut -c1-10)"

# what the device machine lacks travels in build/device (see --prepare)
if ! "$PY" -c 'import faiss' 2>/dev/null; then
  if compgen -G "$CARRY/wheels/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/fico_site "$CARRY"/wheels/*.whl \
      && export PYTHONPATH=/tmp/fico_site && log "installed from $CARRY/wheels: $(cd "$CARRY/wheels" && echo *.whl)"
  else log "no FAISS here and no wheel in $CARRY/wheels (run --prepare and carry $CARRY): the table7 steps will fail"; fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [[ ! -d ../shared/data && -d $CARRY/data ]]; then          # tests read ../shared/data beside the checkout
  mkdir -p ../shared 2>/dev/null && ln -sfn "$PWD/$CARRY/data" ../shared/data && log "linked ../shared/data -> $CARRY/data" \
    || log "could not link ../shared/data: the CUDA encoder test will skip"
fi

# ---------------------------------------------------------------------------------------------------------- (a) env
ENV_PY=$(cat <<'PY'
import os, platform, subprocess
import numpy, torch
print(f'python {platform.python_version()} ({os.sys.executable}); numpy {numpy.__version__}; torch {torch.__version__}; '
      f'torch CUDA {torch.version.cuda}; cuDNN {torch.backends.cudnn.version()}; cuda available {torch.cuda.is_available()}')
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f'GPU: {p.name}, {p.total_memory / 2**30:.1f} GiB, {p.multi_processor_count} SMs, capability {p.major}.{p.minor}')
try: print('nvidia-smi:', subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'],
                                         capture_output=True, text=True, timeout=20).stdout.strip())
except (OSError, subprocess.SubprocessError) as e: print('nvidia-smi: not available', type(e).__name__)
cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), '?')
mem = int(next(l for l in open('/proc/meminfo') if l.startswith('MemTotal')).split()[1]) / 2**20
print(f'CPU: {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM (MemTotal); torch threads {torch.get_num_threads()}')
for name in ('pandas', 'scipy', 'transformers', 'sklearn', 'skimage', 'pytest', 'hypothesis'):
    try: print(f'{name} {__import__(name).__version__}')
    except ImportError: print(f'{name}: NOT INSTALLED')
try:
    import faiss
    from fico_itr.indexes import _faiss_gpus
    print(f'faiss {faiss.__version__} from {os.path.dirname(faiss.__file__)}; GPU support: '
          f'{"yes, " + str(_faiss_gpus()) + " GPU(s)" if _faiss_gpus() else "no (a CPU-only build: the faiss-gpu step will be skipped)"}')
except ImportError: print('faiss: NOT INSTALLED (the table7 steps need it)')
import fico_itr; print('fico_itr from', os.path.dirname(fico_itr.__file__))
PY
)
step env 60 5 "$PY" -c "$ENV_PY"

# --------------------------------------------------------------------------------- (c) GPU evaluation vs the CPU path
EVAL_PY=$(cat <<'PY'
"GPU evaluation against the CPU path on COCO-5K-shaped synthetic data: same numbers, times, and where the ops ran."
import json, sys, time
import numpy as np, torch
from fico_itr.synthetic import coco5k_like
from fico_itr.evaluate import evaluate
from fico_itr.similarity import similarity
dev, n_images, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cuda = dev.startswith('cuda')
if cuda: torch.zeros(1, device=dev); torch.cuda.synchronize()       # context made here, not inside the first timing
res = {'device': torch.cuda.get_device_name(0) if cuda else 'cpu', 'torch': torch.__version__,
       'cpu_threads': torch.get_num_threads(), 'n_images': n_images, 'data': 'SYNTHETIC coco5k_like(seed=0)', 'cases': {}}
data = coco5k_like(n_images=n_images, seed=0)
ci, cc = data.hash_codes(64)
cases = {'256-D cosine': (dict(images=data.images, captions=data.captions, measure='cosine'), 0.05),
         '64-bit hamming': (dict(images=ci, captions=cc, measure='hamming'), 0.0)}

def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    r = fn()
    if cuda: torch.cuda.synchronize()
    return r, time.perf_counter() - t, time.process_time() - c

ok = True
for name, (kw, tol) in cases.items():
    S_cpu = similarity(kw['images'], kw['captions'], kw['measure'], device='cpu')
    S_dev = similarity(kw['images'], kw['captions'], kw['measure'], device=dev)
    s_diff = float(np.abs(np.asarray(S_dev, np.float64) - S_cpu).max()); del S_cpu, S_dev
    ref, t_cpu, c_cpu = timed(lambda: evaluate(data.split, device='cpu', progress=False, **kw))
    runs = [timed(lambda: evaluate(data.split, device=dev, progress=False, **kw)) for _ in range(3)]
    got = runs[0][0]
    keys = ['direction', 'granularity', 'metric', 'k']
    same_rows = ref.table[keys].astype(str).equals(got.table[keys].astype(str))
    a, b = ref.table.value.to_numpy(float), got.table.value.to_numpy(float)
    diff = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b))
    worst = int(np.nanargmax(diff)) if len(diff) else 0
    passed = bool(same_rows and not np.isnan(diff).any() and diff.max() <= tol)
    ok &= passed
    row = ref.table.iloc[worst]
    res["cases"][name] = dict(passed=passed, tolerance=tol, n_numbers=len(a), n_differing=int((diff > 0).sum()),
                              max_abs_diff=float(diff.max()), worst=f'{row.direction} {row.granularity} {row.metric} {row.k}',
                              similarity_max_abs_diff=s_diff, cpu_s=t_cpu, cpu_cpu_s=c_cpu,
                              device_s=[r[1] for r in runs], device_process_cpu_s=[r[2] for r in runs],
                              R1_i2t=float(got.get('R@1', 'i2t')), mAPN_i2t=float(got.get('mAP@N', 'i2t', 'category')))
    print(f"{name}: {'PASS' if passed else 'FAIL'} {len(a)} numbers, {res['cases'][name]['n_differing']} differ, "
          f"max |diff| {diff.max():.2e} (tolerance {tol}; at {res['cases'][name]['worst']}); similarity max |diff| {s_diff:.2e}")
    print(f"  full evaluation: cpu {t_cpu:.2f} s; {dev} first call {runs[0][1]:.2f} s, then "
          + ', '.join(f'{r[1]:.2f}' for r in runs[1:]) + f" s (process CPU time {runs[0][2]:.2f} s on {torch.get_num_threads()} threads); "
          f"R@1 i2t {res['cases'][name]['R1_i2t']:.2f}, mAP@N i2t {res['cases'][name]['mAPN_i2t']:.2f}")

# where the work ran: torch ops that took device time (the ranking in numpy never shows up on the GPU)
try:
    from torch.profiler import profile, ProfilerActivity
    small = coco5k_like(n_images=min(n_images, 500), seed=1); si, sc = small.hash_codes(64)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for name, kw in (('256-D cosine', dict(images=small.images, captions=small.captions, measure='cosine')),
                     ('64-bit hamming', dict(images=si, captions=sc, measure='hamming'))):
        with profile(activities=acts) as prof: evaluate(small.split, device=dev, progress=False, **kw)
        dt = lambda e: getattr(e, 'device_time_total', None) or getattr(e, 'cuda_time_total', 0) or 0
        ops = {e.key: e.count for e in prof.key_averages() if e.key.startswith('aten::') and (dt(e) > 0 if cuda else e.count)}
        ranking = sorted(k for k in ops if any(s in k for s in ('sort', 'topk', 'searchsorted', 'bincount', 'cumsum')))
        where = (('ranking ops on the GPU: ' + ', '.join(ranking)) if ranking else
                 'ranking stays on the CPU: no sort/topk/searchsorted/bincount/cumsum ran on the GPU (numpy ranks)') if cuda else \
                f'device cpu: {len(ops)} torch ops ran, ranking ops among them: {", ".join(ranking) or "none (numpy ranks)"}'
        res['cases'][name]['ops_with_device_time' if cuda else 'torch_ops'] = ops
        res['cases'][name]['ranking_on'] = where
        print(f'{name}, {small.split.n_images} images, profiled: {where}; {len(ops)} torch ops {"with GPU time" if cuda else "seen"}')
except Exception as e:                       # the check of where ops ran must not cost the figures above
    print(f'profiler failed ({type(e).__name__}: {e}): where the ranking ran is not known')
res['pass'] = bool(ok)
json.dump(res, open(out, 'w'), indent=1, default=float)
print(f"GPU evaluation check: {'PASS' if ok else 'FAIL'} ({dev} vs cpu, {n_images} images); wrote {out}")
sys.exit(0 if ok else 1)
PY
)
if [[ $MODE == gpu ]]; then N_EVAL=5000; else N_EVAL=300; fi
step eval 150 20 "$PY" -c "$EVAL_PY" "$DEV" "$N_EVAL" "$OUT/eval_gpu.json"

# ----------------------------------------------------------------------------------------------------- (b) CUDA tests
step tests 150 20 "$PY" -m pytest tests/test_device.py tests/test_ranking_device.py tests/test_encoders.py::test_cuda_matches_cpu -q -rs -p no:cacheprovider

# ----------------------------------------------------------------------------------------- (d) encoding cost (Tables 5, 6)
# Random-weight models built from transformers configs (no weights to download): run the models this machine can build.
MODELS_PY=$(cat <<'PY'
import sys
ok, why = [], []
try:
    import transformers as t
    for key, cls in (('clip-b16', 'CLIPModel'), ('clip-l14', 'CLIPModel'), ('blip2', 'Blip2ForImageTextRetrieval')):
        (ok.append(key) if hasattr(t, cls) else why.append(f'{key}: transformers {t.__version__} has no {cls}'))
except ImportError: why.append('clip-b16, clip-l14, blip2: transformers not installed')
try:
    from fico_itr.cost import _sample_images; _sample_images(); import sklearn
    ok += ['vgg19-hash', 'hash-head']
except Exception as e: why.append(f'vgg19-hash, hash-head: {type(e).__name__}: {e}')
if sys.argv[1] == 'dry':
    if 'blip2' in ok: ok.remove('blip2'); why.append('blip2: left out of the dry run (its 1.17 B-parameter build takes minutes on a CPU)')
    if 'clip-l14' in ok: ok.remove('clip-l14'); why.append('clip-l14: left out of the dry run (clip-b16 runs the same code)')
for w in why: print('encoding: skipped', w, file=sys.stderr)
print(','.join(ok))
PY
)
ENC_MODELS=$("$PY" -c "$MODELS_PY" "$MODE" 2> >(stamp encoding | tee -a "$LOG" >&2))
if [[ -z $ENC_MODELS ]]; then log "[encoding] SKIPPED: no model can be built here"; note encoding skipped 0 "no model can be built"
elif [[ $MODE == gpu ]]; then
  step encoding 260 60 "$PY" bench/encoding_cost.py --device cuda --models "$ENC_MODELS" --budget 120 --out "$OUT/encoding_cost_gpu.json"
else
  step encoding 200 20 "$PY" bench/encoding_cost.py --device cpu --models "$ENC_MODELS" --scales 2,4 --budget 20 --batch-size 1 \
    --rerank-batch 8 --out "$OUT/encoding_cost_gpu.json"
fi

# ------------------------------------------------------------------------------- (e) Table 7, sampled, FG on torch
# The gallery is made chunk by chunk on the CPU (numpy's RandomState, one core: ~110 s at 5M); chunks of 262,144 rows
# keep the per-chunk merge of the 10,000 sampled top-1000 lists to 20 at 5M. The JSON is rewritten after every row,
# 1M/5M first, so a time-out keeps the larger scale.
if [[ $MODE == gpu ]]; then
  step table7 400 150 "$PY" bench/table7.py --scales 1000000:5000000,500000:2500000 --query-sample 10000 --chunk 262144 \
    --device cuda --source 'H200 machine: exact FG by torch on the GPU, FAISS on the CPU (16 cores), 10,000 sampled queries' \
    --json "$OUT/table7_gpu.json"
else
  step table7 200 20 "$PY" bench/table7.py --scales 4000:20000,2000:10000 --query-sample 200 --chunk 4096 --d 64 --k 100 \
    --device cpu --source 'dry run: tiny sizes on the CPU' --json "$OUT/table7_gpu.json"
fi

# -------------------------------------------------------------------------- (f) FAISS GPU indexes (faiss-gpu builds only)
if "$PY" -c 'from fico_itr.indexes import _faiss_gpus; raise SystemExit(0 if _faiss_gpus() else 1)' 2>/dev/null; then
  step faiss-gpu 150 60 "$PY" bench/table7.py --scales 100000:500000 --indexes 'FG Flat,CG Flat' --flat faiss --device cuda \
    --source 'H200 machine: FAISS GPU flat indexes' --json "$OUT/table7_faiss_gpu.json"
elif [[ $MODE == dry ]]; then   # the same command on the CPU, so that the step's arguments are checked here
  step faiss-gpu 100 10 "$PY" bench/table7.py --scales 1000:5000 --indexes 'FG Flat,CG Flat' --flat faiss --device cpu --d 64 --k 100 \
    --source 'dry run: FAISS flat indexes on the CPU' --json "$OUT/table7_faiss_gpu.json"
else
  log "[faiss-gpu] SKIPPED: this FAISS has no GPU support (the machine has no FAISS; faiss-cpu travels, a faiss-gpu wheel is too large)"
  note faiss-gpu skipped 0 "no GPU support in this FAISS"
fi

# ------------------------------------------------------------------------ (g) FG HNSW at 500K/2.5M if its build fits
# made in the chunk loop (2.5M x 2048-D, a 20 GB graph): gallery ~55 s, build a few minutes on 16 cores; searched by
# 2,000 sampled queries at efSearch = max(128, k) and at 128
if [[ $MODE == gpu ]]; then
  step hnsw 600 180 "$PY" bench/table7.py --scales 500000:2500000 --indexes 'FG HNSW' --query-sample 2000 --chunk 262144 \
    --hnsw-fixed-ef 128 --device cuda --source 'H200 machine: FG HNSW on 16 CPU cores, 2,000 sampled queries' \
    --json "$OUT/table7_gpu_hnsw.json"
else
  step hnsw 200 20 "$PY" bench/table7.py --scales 1000:5000 --indexes 'FG HNSW' --query-sample 100 --chunk 2048 --d 64 --k 100 \
    --hnsw-fixed-ef 32 --device cpu --source 'dry run: FG HNSW on the CPU' --json "$OUT/table7_gpu_hnsw.json"
fi

log "done in ${SECONDS} s (budget ${BUDGET} s); files in $OUT: $(cd "$OUT" && echo *)"
{ echo "mode=$MODE device=$DEV total ${SECONDS} s of ${BUDGET} s"; cat "$SUMMARY"; } | tee "$SUMMARY.tmp" && mv "$SUMMARY.tmp" "$SUMMARY"
