"""The notebooks' stored outputs: write them, or check that they are what the code produces today.

  python tools/outputs.py write [NOTEBOOK ...]   execute each notebook in place and store its outputs, then clean it
                                                 as nbdev_clean does (execution counts and metadata go, outputs stay)
  python tools/outputs.py write --into DIR [...]  the same, saved under DIR (as under nbs/) instead of in place
  python tools/outputs.py check [NOTEBOOK ...]   execute each notebook in memory and compare its outputs, cell by cell,
                                                 with the stored ones; exit status 1 on the first stale cell of any
                                                 notebook, naming the notebook, the cell and the first differing line

Without NOTEBOOK: every notebook nbdev_test would run (nbs/**/*.ipynb, skipping names and folders that start with _ or
.). Notebooks run as nbdev_test runs them: each in a fresh process, in its own folder, with IN_TEST=1, two at a time
(--workers), one BLAS/OpenMP thread each; code cells flagged with one of settings.ini's tst_flags (slow, gpu) are
skipped unless the flag is named in --flags, `#| eval: false` cells always: skipped cells keep the outputs they have
(the recorded run), and the check does not compare them.

What the check compares, per executed code cell, in order: stdout and stderr text, text/plain, text/markdown, the
visible text of text/html (tables: cells separated by ' | ', one row a line; so a pandas Styler's random ids do not
count), errors (name and message), and the number of images. Only volatile-but-harmless text is normalised: memory
addresses (`0x7f3a...`, which nbdev_clean strips from stored reprs) and tqdm progress bars. A cell may declare a
tolerance for its numbers with the directive

    #| outputs numeric 1e-6

(an nbdev-style directive, without a colon: nbdev_export and nbdev_clean ignore it and nbdev's docs processor removes
it, so Quarto never sees it): each number in that cell's output lines may then differ by 1e-6, relative or absolute;
the rest of the text must still match exactly. A notebook with code cells and no stored output fails the check.

Plots are stored as PNG at --dpi (default 100) instead of execnb's retina PNG (twice the resolution, four times the
pixels), reduced to a 256-colour palette where that is smaller (for line plots about a quarter of the bytes).
"""
from __future__ import annotations

import argparse
import copy
import html
import json
import math
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from configparser import ConfigParser
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRECTIVE = 'outputs'


def notebooks(paths=()) -> list[Path]:
    "The notebooks named, or every notebook nbdev_test would run."
    if paths: return [Path(p).resolve() for p in paths]
    nbs = ROOT / 'nbs'
    return sorted(p for p in nbs.rglob('*.ipynb') if not any(part.startswith(('_', '.')) for part in p.relative_to(nbs).parts))


def skip_flags(force: str = '') -> set[str]:
    "settings.ini's tst_flags, less the flags asked for."
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini')
    return set(cfg['DEFAULT'].get('tst_flags', '').replace('|', ' ').split()) - set(force.split())


def directives(cell) -> dict:
    "The cell's leading `#|` directives, as nbdev parses them (the source is left as it is)."
    from nbdev.process import extract_directives
    return extract_directives(cell, remove=False) or {}


def skipped(cell, flags: set) -> bool:
    "A code cell nbdev_test would not run (flagged, `eval: false`, or the nbdev_export call); markdown and raw cells."
    if cell.cell_type != 'code': return True
    if 'nbdev_export' + '(' in cell.source: return True
    d = directives(cell)
    return d.get('eval:', [''])[0].lower() == 'false' or bool(flags & d.keys())


def tolerance(cell) -> float | None:
    "The cell's declared numeric tolerance (`#| outputs numeric 1e-6`), or None."
    d = directives(cell)
    if DIRECTIVE + ':' in d:
        raise ValueError(f'`#| {DIRECTIVE}: ...`: write it without the colon (`#| {DIRECTIVE} numeric 1e-6`), so that '
                         "nbdev's docs processor removes it before Quarto")
    args = d.get(DIRECTIVE)
    if args is None: return None
    if len(args) != 2 or args[0] != 'numeric':
        raise ValueError(f'`#| {DIRECTIVE} {" ".join(args)}`: write `#| {DIRECTIVE} numeric 1e-6` (a tolerance for numbers)')
    return float(args[1])


def execute(path: Path, flags: set, dpi: int):
    "Run the notebook as nbdev_test does; returns it (outputs of executed cells replaced), its errors and the seconds."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    os.environ['IN_TEST'] = '1'
    if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))
    nb = read_nb(path)
    shell = CaptureShell(path, mpl_format='png')
    shell.run(f"import matplotlib as _mpl; _mpl.rcParams['figure.dpi'] = {dpi}; del _mpl")
    t0, errors = time.time(), []
    with working_directory(path.parent):
        for i, cell in enumerate(nb.cells):
            if skipped(cell, flags): continue
            cell.outputs = []                       # execnb keeps a cell's old outputs when it prints nothing
            shell.cell(cell)
            errors += [f"cell {i}: {o['ename']}: {o['evalue']}" for o in cell.outputs if o.get('output_type') == 'error']
    return nb, errors, time.time() - t0


# ---- comparison -------------------------------------------------------------------------------------------------
_ADDR = re.compile(r'0x[0-9a-fA-F]{4,}')
_REPR_ID = re.compile(r'(<.*?)( at 0x[0-9a-fA-F]+)(>)')          # what nbdev_clean (clean_ids) strips
_TQDM = re.compile(r'^(.*?)\s*\d+%\|[^|]*\|\s*[\d.]+[kMG]?/[\d.?]+[kMG]?\s*\[[^\]]*\]\s*$')
_NUM = re.compile(r'[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)\b')


def _text(v) -> str: return v if isinstance(v, str) else ''.join(v)


def _normal(line: str) -> str:
    "Volatile-but-harmless text: progress bars and memory addresses."
    line = line.rsplit('\r', 1)[-1]                 # a progress bar redrawn in place: its last state
    if _TQDM.match(line): return _TQDM.sub(r'\1 <progress bar>', line)
    return _ADDR.sub('0x…', _REPR_ID.sub(r'\1\3', line))


def html_text(src: str) -> list[str]:
    "The visible text of an HTML output: one table row a line, cells separated by ' | '."
    src = re.sub(r'<(style|script)\b[^>]*>.*?</\1\s*>', ' ', src, flags=re.S | re.I)
    src = re.sub(r'\s+', ' ', src)                   # line breaks in HTML source are not on the page
    src = re.sub(r'<br\s*/?>|</(tr|p|div|caption|h\d|li|thead|tbody)\s*>', '\n', src, flags=re.I)
    src = re.sub(r'</t[dh]\s*>', ' | ', src, flags=re.I)
    text = html.unescape(re.sub(r'<[^>]+>', '', src))
    return [re.sub(r'\s+', ' ', l).strip(' |') for l in text.split('\n') if l.strip(' |\t')]


def lines(outputs) -> list[str]:
    "A cell's outputs as tagged, normalised lines (what the check compares)."
    out, images = [], 0
    merged = []
    for o in outputs:                               # adjacent writes to one stream are one text
        if o.get('output_type') == 'stream' and merged and merged[-1].get('output_type') == 'stream' \
                and merged[-1].get('name') == o.get('name'):
            merged[-1] = dict(merged[-1], text=_text(merged[-1]['text']) + _text(o['text']))
        else: merged.append(o)
    for o in merged:
        kind = o.get('output_type')
        if kind == 'stream':
            for l in _text(o.get('text', '')).splitlines():
                l = f"[{o.get('name')}] {_normal(l)}"
                if not (out and l == out[-1] and l.endswith('<progress bar>')): out.append(l)   # redraws: one bar
        elif kind == 'error':
            out.append(f"[error] {o.get('ename')}: {_normal(str(o.get('evalue')).splitlines()[0] if o.get('evalue') else '')}")
        elif kind in ('execute_result', 'display_data'):
            data = o.get('data', {})
            images += sum(k.startswith('image/') for k in data)
            for mime in ('text/plain', 'text/markdown', 'text/latex'):
                if mime in data: out += [f'[{mime}] {_normal(l)}' for l in _text(data[mime]).splitlines()]
            if 'text/html' in data: out += [f'[text/html] {_normal(l)}' for l in html_text(_text(data['text/html']))]
    if images: out.append(f'[images] {images}')
    return out


def same(a: str, b: str, tol: float | None) -> bool:
    "Equal lines, or (with a tolerance) equal text between numbers that agree within it."
    if a == b: return True
    if tol is None or _NUM.sub('#', a) != _NUM.sub('#', b): return False
    return all(math.isclose(float(x), float(y), rel_tol=tol, abs_tol=tol) or (x.lstrip('+-') == y.lstrip('+-') == 'nan')
               for x, y in zip(_NUM.findall(a), _NUM.findall(b)))


def first_line(cell) -> str:
    "The cell's first line of code (after its directives), to name it."
    src = [l for l in cell.source.splitlines() if l.strip() and not l.lstrip().startswith('#|')]
    return src[0].strip()[:80] if src else '(only directives)'


def compare(stored, produced, flags: set) -> list[str]:
    "Stale cells of one notebook: one message each, with the first differing line (stored vs produced)."
    problems = []
    for i, (s, p) in enumerate(zip(stored.cells, produced.cells)):
        if skipped(s, flags): continue
        tol = tolerance(s)
        a, b = lines(s.get('outputs', [])), lines(p.get('outputs', []))
        for j in range(max(len(a), len(b))):
            x, y = (a[j] if j < len(a) else '(nothing)'), (b[j] if j < len(b) else '(nothing)')
            if not same(x, y, tol):
                problems.append(f'cell {i} (`{first_line(s)}`), output line {j + 1}:\n      stored:   {x[:300]}\n'
                                f'      produced: {y[:300]}')
                break
    return problems


def has_outputs(nb, flags: set) -> bool:
    "False for a notebook with code cells to run and not one stored output."
    code = [c for c in nb.cells if not skipped(c, flags)]
    return not code or any(c.get('outputs') for c in nb.cells if c.cell_type == 'code')


# ---- the two modes, one notebook each (in a worker process) ---------------------------------------------------------
def compact_png(b64: str) -> str:
    "The plot as a 256-colour palette PNG when that is smaller (a third of the bytes for line plots; see pngquant)."
    import base64, io
    from PIL import Image
    raw = base64.b64decode(b64)
    buf = io.BytesIO()
    Image.open(io.BytesIO(raw)).quantize(256, method=Image.Quantize.FASTOCTREE).save(buf, 'PNG', optimize=True)
    return base64.b64encode(buf.getvalue()).decode() + '\n' if buf.tell() < len(raw) else b64


def write_one(args):
    "Execute a notebook and store it with its outputs: in place when it raised nothing, or into `dest` (even if it did)."
    path, flags, dpi, *dest = args
    from execnb.nbio import write_nb
    nb, errors, secs = execute(path, flags, dpi)
    for c in nb.cells:
        for o in c.get('outputs', []) if not skipped(c, flags) else []:
            if 'image/png' in o.get('data', {}): o['data']['image/png'] = compact_png(o['data']['image/png'])
    if dest: Path(dest[0]).parent.mkdir(parents=True, exist_ok=True); write_nb(nb, dest[0])
    elif not errors: write_nb(nb, path)
    return path, secs, errors, []


def check_one(args):
    path, flags, dpi = args
    from execnb.nbio import read_nb
    stored = read_nb(path)
    try: [tolerance(c) for c in stored.cells if c.cell_type == 'code']
    except ValueError as e: return path, 0.0, [], [str(e)]
    if not has_outputs(stored, flags):
        return path, 0.0, [], ['no stored outputs: run `.venv/bin/python tools/outputs.py write` on it and commit it']
    produced, errors, secs = execute(path, flags, dpi)
    return path, secs, errors, compare(stored, produced, flags)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog='See the module docstring for details.')
    ap.add_argument('mode', choices=['write', 'check'])
    ap.add_argument('notebooks', nargs='*', help='notebooks (default: every notebook under nbs/)')
    ap.add_argument('--flags', default='', help='space-separated tst_flags to run too (e.g. "slow")')
    ap.add_argument('--workers', type=int, default=2, help='notebooks executed at once (default 2)')
    ap.add_argument('--dpi', type=int, default=100, help='resolution of stored plots (default 100)')
    ap.add_argument('--into', type=Path, help='write: save the executed notebooks under this folder (as under nbs/), '
                                              'errors included, instead of in place (tools/docs.sh --execute)')
    a = ap.parse_intermixed_args(argv)
    for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'): os.environ[var] = '1'
    os.environ.setdefault('MPLBACKEND', 'Agg'); os.environ.setdefault('PYTHONHASHSEED', '0')
    os.environ['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])
    paths, flags = notebooks(a.notebooks), skip_flags(a.flags)
    missing = [str(p) for p in paths if not p.exists()]
    if missing: sys.exit(f'no such notebook: {", ".join(missing)}')
    paths.sort(key=lambda p: -p.stat().st_size)      # the biggest first: a rough longest-first order
    one = write_one if a.mode == 'write' else check_one
    into = [a.into.resolve() / (p.relative_to(ROOT / 'nbs') if p.is_relative_to(ROOT / 'nbs') else p.name)
            for p in paths] if a.into and a.mode == 'write' else []
    failed, t0 = 0, time.time()
    # a fresh process per notebook (spawned: nothing inherited), as nbdev_test gives each notebook its own shell
    with ProcessPoolExecutor(max(1, min(a.workers, len(paths))), mp_context=get_context('spawn'), max_tasks_per_child=1) as pool:
        jobs = {pool.submit(one, (p, flags, a.dpi, *into[i:i + 1])): p for i, p in enumerate(paths)}
        for job in as_completed(jobs):                  # reported as they finish
            try: path, secs, errors, problems = job.result()
            except Exception as e:                      # the worker died (out of memory, a crash in native code)
                path, secs, errors, problems = jobs[job], 0.0, [f'the worker: {type(e).__name__}: {e}'], []
            rel = os.path.relpath(path, ROOT)
            if errors or problems:
                failed += 1
                print(f'FAIL {rel} ({secs:.1f} s)', flush=True)
                for e in errors: print(f'    raised in {e}', flush=True)
                for m in problems: print(f'    {m}', flush=True)
            else: print(f'ok   {rel} ({secs:.1f} s)', flush=True)
    if a.mode == 'write':
        from fastcore.xtras import working_directory
        from nbdev.clean import nbdev_clean
        with working_directory(ROOT):
            for p in into or paths: nbdev_clean.__wrapped__(fname=str(p))   # call_parse would read sys.argv
    what = 'written' if a.mode == 'write' else 'checked'
    print(f'{len(paths) - failed} of {len(paths)} notebook(s) {what} in {time.time() - t0:.0f} s'
          + ('' if not failed else f'; {failed} FAILED' + (' (not written)' if a.mode == 'write' else
             ': the stored outputs are stale; run `.venv/bin/python tools/outputs.py write NOTEBOOK`, look at the diff, commit')))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
