#!/usr/bin/env bash
# Offline rendering of the documentation, for checking it where Quarto (which `nbdev_docs` needs) cannot be installed.
#  1. every notebook in nbs/ (recursively) is copied, with the outputs it stores, into a scratch copy: the pages show
#     what a reader of the notebook sees, and nothing is executed. With --execute, each notebook is executed instead,
#     as nbdev_test runs it (tools/outputs.py: cells flagged with one of settings.ini's tst_flags, slow and gpu, keep
#     their stored outputs unless the flag is named in --flags; `#| eval: false` cells always), into the copy (the
#     notebooks in nbs/ are not touched); an executed notebook is reused from _docs/.cache when neither it nor fico_itr/
#     changed;
#  2. nbdev's docs processors run on the copy, notebook by notebook (nbdev.serve_drv with FilterDefaults, what
#     nbdev_docs runs before Quarto): exported cells become show_doc output, hidden cells go, the title cell becomes
#     front matter; a notebook they fail on (nbdev_docs would fail too) is rendered unprocessed, with the error;
#  3. nbconvert's HTMLExporter renders each processed notebook to _docs/<output-file>.html, honouring the Quarto cell
#     options nbdev leaves (echo: false, output: false, include: false), with the title and description restored, links
#     between notebooks pointing at the pages, a navigation bar in sidebar.yml's order, and no remote scripts.
# _docs/pages.json lists every page with its notebook, its number of plots and its errors (an error output stored or
# raised, or no stored outputs at all); tests/test_docs.py reads it, screenshots each page in headless Chromium and
# checks it. Exit status 1 if a notebook has an error.
# Needs: nbconvert in .venv (pip install nbconvert).
# Usage: bash tools/docs.sh [--execute [--flags "slow gpu"] [--no-cache]] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
FLAGS="" CACHE=1 OUT=_docs EXECUTE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --execute) EXECUTE=1; shift;;
    --flags) FLAGS="$2"; shift 2;;
    --no-cache) CACHE=0; shift;;
    --out) OUT="$2"; shift 2;;
    -h|--help) sed -n '2,21p' "$0"; exit 0;;
    *) echo "unknown argument $1 (use --execute, --flags \"slow\", --no-cache, --out DIR)" >&2; exit 2;;
  esac
done
PY=.venv/bin/python
[ -x "$PY" ] || { echo "no .venv: run bash tools/test.sh once to create it" >&2; exit 2; }
"$PY" -c "import nbconvert" 2>/dev/null || { echo "nbconvert is missing: .venv/bin/python -m pip install nbconvert" >&2; exit 2; }
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0 MPLBACKEND=Agg
scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
cp -r nbs fico_itr settings.ini setup.py README.md _quarto.yml "$scratch"/
find "$scratch/nbs" -name '*.ipynb' -delete
cat > "$scratch/build_docs.py" <<'PYEOF'
import hashlib, html, json, os, re, subprocess, sys, time
from pathlib import Path

ROOT, SCRATCH = Path.cwd(), Path(os.environ['DOCS_SCRATCH'])
OUT, CACHE = ROOT / os.environ['DOCS_OUT'], ROOT / os.environ['DOCS_OUT'] / '.cache'
FLAGS, USE_CACHE, EXECUTE = os.environ['DOCS_FLAGS'], os.environ['DOCS_CACHE'] == '1', os.environ['DOCS_EXECUTE'] == '1'
sys.path.insert(0, str(ROOT / 'tools'))
import outputs                    # tools/outputs.py: which notebooks, which cells run, how they are executed

def lib_digest():
    h = hashlib.sha256()
    for p in sorted((ROOT / 'fico_itr').rglob('*')):
        if p.is_file() and '__pycache__' not in p.parts: h.update(p.name.encode()); h.update(p.read_bytes())
    return h.hexdigest()

def stored(nb_path):
    "Plots and errors of a notebook as stored (errors: error outputs, or no outputs where there is code to run)."
    from execnb.nbio import read_nb
    nb = read_nb(nb_path)
    errors = [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(nb.cells)
              for o in c.get('outputs', []) if o.get('output_type') == 'error']
    if not outputs.has_outputs(nb, skip):
        errors.append('stored without outputs: run `.venv/bin/python tools/outputs.py write` on it and commit it')
    return dict(plots=sum('image/png' in o.get('data', {}) for c in nb.cells for o in c.get('outputs', [])), errors=errors)

# 1. the notebooks with their stored outputs; with --execute, executed by tools/outputs.py (or reused from the cache)
skip, nbs, todo = outputs.skip_flags(FLAGS), outputs.notebooks(), []
lib = lib_digest() if EXECUTE else ''
for nb in nbs:
    rel = nb.relative_to(ROOT / 'nbs')
    key = hashlib.sha256(nb.read_bytes() + lib.encode() + ' '.join(sorted(skip)).encode()).hexdigest()
    cached = CACHE / 'exec' / rel
    if EXECUTE and not (USE_CACHE and cached.exists() and cached.with_suffix('.key').exists()
                        and cached.with_suffix('.key').read_text() == key): todo.append((nb, cached, key))
if todo:
    print(f'executing {len(todo)} notebook(s) ({len(nbs) - len(todo)} unchanged, from the cache)', flush=True)
    t0 = time.time()
    for _, cached, _ in todo: cached.unlink(missing_ok=True)
    subprocess.run([sys.executable, str(ROOT / 'tools' / 'outputs.py'), 'write', '--into', str(CACHE / 'exec'),
                    *(['--flags', FLAGS] if FLAGS else []), *(str(nb) for nb, _, _ in todo)], check=False)
    for _, cached, key in todo:
        if cached.exists(): cached.with_suffix('.key').write_text(key)
    print(f'executed in {time.time() - t0:.1f} s', flush=True)
meta = {}
for nb in nbs:
    rel = nb.relative_to(ROOT / 'nbs'); src = CACHE / 'exec' / rel if EXECUTE else nb
    dst = SCRATCH / 'nbs' / rel; dst.parent.mkdir(parents=True, exist_ok=True)
    if not src.exists(): meta[str(rel)] = dict(plots=0, errors=['tools/outputs.py could not execute it']); continue
    dst.write_bytes(src.read_bytes()); meta[str(rel)] = stored(src)

# 2. nbdev's docs processing (what nbdev_docs runs before Quarto, notebook by notebook), in the scratch copy
import warnings
os.chdir(SCRATCH)                                 # nbdev reads the scratch copy's settings.ini
from nbdev.serve_drv import main as proc_one
from nbdev.processors import FilterDefaults
from nbdev.process import NBProcessor
from nbdev.frontmatter import FrontmatterProc
from execnb.nbio import write_nb
proc = SCRATCH / '_proc'
for src in sorted((SCRATCH / 'nbs').rglob('*.ipynb')):
    rel = src.relative_to(SCRATCH / 'nbs'); dst = proc / rel; dst.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try: proc_one((src, dst, FilterDefaults))
        except Exception as e:             # nbdev_docs would fail here too: report it on the page, render it unprocessed
            lines, cause = str(e).splitlines(), e.__cause__ or e
            code = next((l.strip() for l in lines[1:] if l.strip()), '')
            msg = (f"nbdev's docs processing failed: {lines[0]} `{code[:80]}`: {type(cause).__name__}: "
                   f"{str(cause).splitlines()[0] if str(cause) else ''} (nbdev_docs runs every cell that imports "
                   "something, with show_doc: keep imports in cells of their own, and no DataFrame defaults in "
                   "documented signatures)")
            meta.setdefault(str(rel), {}).setdefault('errors', []).append(msg)
            print(f'  {rel}: {msg}', file=sys.stderr)
            p = NBProcessor(src, procs=[FrontmatterProc]); p.process(); write_nb(p.nb, dst)
    for w in {str(w.message).splitlines()[0] for w in caught}: print(f'  {rel}: nbdev warns: {w}', file=sys.stderr)
os.chdir(ROOT)

# 3. HTML with nbconvert
import yaml, nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import TagRemovePreprocessor

def frontmatter(nb):
    "Take nbdev's front-matter raw cell out of the notebook and return its fields."
    for i, c in enumerate(nb.cells):
        m = re.match(r'^---\s*\n(.*?)\n---\s*$', c.source.strip(), re.S) if c.cell_type == 'raw' else None
        if m: nb.cells.pop(i); return yaml.safe_load(m.group(1)) or {}
    return {}

_DIREC = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
def quarto_options(nb):
    "Honour the Quarto cell options nbdev leaves in code cells, then drop every `#|` line."
    for c in nb.cells:
        if c.cell_type != 'code': continue
        lines, opts = c.source.splitlines(), {}
        while lines and _DIREC.match(lines[0]):
            k, v = _DIREC.match(lines.pop(0)).groups(); opts[k] = v.lower()
        c.source = '\n'.join(lines)
        tags = set(c.metadata.get('tags', []))
        if opts.get('echo') == 'false' or not c.source.strip(): tags.add('remove_input')
        if opts.get('output') == 'false': tags.add('remove_output')
        if opts.get('include') == 'false': tags.add('remove_cell')
        c.metadata['tags'] = sorted(tags)

_PANDOC_ATTR = re.compile(r'(\]\([^)\s]*\))\{[^}\n]*\}')   # [source](url){target="_blank" ...}: Quarto-only syntax
def quarto_markdown(nb):
    "Drop the Pandoc/Quarto-only syntax that nbconvert's markdown renderer would print literally."
    def clean(text): return '\n'.join(l for l in _PANDOC_ATTR.sub(r'\1', text).split('\n') if not l.startswith(':::'))
    for c in nb.cells:
        if c.cell_type == 'markdown': c.source = clean(c.source)
        for o in c.get('outputs', []):
            md = o.get('data', {}).get('text/markdown')
            if md is not None: o['data']['text/markdown'] = clean(md if isinstance(md, str) else ''.join(md))

def sidebar_order():
    "Notebook paths (relative to nbs/) in sidebar.yml's order, with their section."
    side = yaml.safe_load((ROOT / 'nbs' / 'sidebar.yml').read_text())['website']['sidebar']['contents']
    out = []
    def walk(items, section):
        for it in items:
            if isinstance(it, str): out.append((it, section))
            elif isinstance(it, dict) and 'contents' in it: walk(it['contents'], it.get('section', section))
            elif isinstance(it, dict) and 'href' in it: out.append((it['href'], section))
    walk(side, '')
    return out

pages = {}   # notebook rel path (to nbs/) -> (html rel path, title)
procs = {}
for p in sorted(proc.rglob('*.ipynb')):
    rel = p.relative_to(proc)
    if any(part.startswith(('_', '.')) for part in rel.parts): continue
    nb = nbformat.read(p, as_version=4)
    fm = frontmatter(nb)
    out = rel.parent / fm.get('output-file', rel.with_suffix('.html').name)
    pages[str(rel)] = (str(out), fm.get('title', rel.stem)); procs[str(rel)] = (nb, fm)

by_page = {}
for rel, (out, _) in pages.items(): by_page.setdefault(out, []).append(rel)
for out, rels in by_page.items():                  # Quarto would write both notebooks to the same page
    rels.sort(key=lambda r: Path(r).stem != Path(out).stem)      # index.ipynb keeps index.html
    for rel in rels[1:] if len(rels) > 1 else []:
        meta.setdefault(rel, {}).setdefault('errors', []).append(
            f"renders to {out} like nbs/{rels[0]} (nbdev drops the number prefix): rename one of them")
    if len(rels) > 1: pages.update({r: (f'{Path(out).with_suffix("")}-{i}.html', pages[r][1]) for i, r in enumerate(rels[1:], 2)})
order = [(n, s) for n, s in sidebar_order() if n in pages] + [(n, '') for n in pages if n not in dict(sidebar_order())]
exporter = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'remove_input'}, remove_cell_tags={'remove_cell'},
                                                     remove_all_outputs_tags={'remove_output'}, enabled=True), enabled=True)
STYLE = ('<style>nav.fico-nav{font:13px sans-serif;padding:6px 12px;border-bottom:1px solid #ddd;background:#f7f7f9;'
         'display:flex;flex-wrap:wrap;align-items:baseline;gap:2px 10px}'
         'nav.fico-nav a,nav.fico-nav b{white-space:nowrap}nav.fico-nav b{margin-left:10px;color:#555}'
         '.jp-Notebook{max-width:1240px}.jp-RenderedHTMLCommon table{font-size:12px}'
         '.jp-OutputArea-output{overflow-x:auto}</style>')
manifest = []
for rel, (nb, fm) in procs.items():
    out = OUT / pages[rel][0]
    quarto_options(nb); quarto_markdown(nb)
    head = f"# {fm.get('title', Path(rel).stem)}" + (f"\n\n> {fm['description']}" if fm.get('description') else '')
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(head))
    body, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': fm.get('title', rel)}})
    body = re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', '', body)          # offline: no CDN scripts
    def link(m, here=Path(rel).parent):
        target = os.path.normpath(here / m.group(2))
        if target not in pages: return m.group(0)
        return f'{m.group(1)}"{os.path.relpath(pages[target][0], Path(pages[rel][0]).parent)}{m.group(3) or ""}"'
    body = re.sub(r'(href=)"(?!https?:)([^"#]+\.ipynb)(#[^"]*)?"', link, body)
    nav, section = [], None
    for n, s in order:
        if s != section: nav.append(f'<b>{html.escape(s)}</b>' if s else ''); section = s
        href = os.path.relpath(pages[n][0], Path(pages[rel][0]).parent)
        nav.append(f'<a href="{href}">{html.escape(pages[n][1])}</a>')
    body = body.replace('<body', STYLE + '<body', 1)
    body = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + '<nav class="fico-nav">' + ''.join(nav) + '</nav>', body, count=1)
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(body, encoding='utf-8')
    info = meta.get(rel, {})
    manifest.append(dict(notebook=f'nbs/{rel}', page=pages[rel][0], title=pages[rel][1], plots=info.get('plots', 0),
                         errors=info.get('errors', [])))
(OUT / 'pages.json').write_text(json.dumps(sorted(manifest, key=lambda r: r['page']), indent=1))
index = OUT / 'index.html'
failed = [m for m in manifest if m['errors']]
print(f"rendered {len(manifest)} pages into {OUT}/ ({index if index.exists() else 'no index.html'})")
for m in failed: print(f"ERROR in {m['notebook']}: {m['errors'][0]}", file=sys.stderr)
sys.exit(1 if failed else 0)
PYEOF
DOCS_EXECUTE="$EXECUTE" DOCS_FLAGS="$FLAGS" DOCS_CACHE="$CACHE" DOCS_OUT="$OUT" DOCS_SCRATCH="$scratch" "$PY" "$scratch/build_docs.py"
