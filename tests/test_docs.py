"""The notebooks render as documentation: `tools/docs.sh` copies every notebook with the outputs it stores (nothing is
executed: the pages show what a reader of the committed notebook sees; tools/outputs.py check proves those outputs
current), runs nbdev's docs processors and renders each page to _docs/ with nbconvert, once per test session. Each page
is then opened in headless Chromium (Debian's `chromium` package) and saved as a screenshot in _docs/screenshots/, and
the test fails if a page

- was not rendered, or its notebook stores an error output or no outputs at all, or nbdev's docs processing failed;
- shows a Python traceback;
- is blank (the screenshot is one colour, or almost all background);
- lacks its plots (fewer embedded PNG images than the notebook stores);
- shows raw nbdev/Quarto directive text (`#| ...`) or Pandoc attribute syntax;
- narrates its own making (placeholders, "in this session", "when no GPU was at hand", another job on the cores).

Skipped, with the reason, where Chromium or nbconvert is not installed (tools/test.sh installs both).

Without either, on the sources: every link in the notebooks' markdown and in the READMEs points at a file that exists
(and, for `notebook.ipynb#anchor`, at an anchor that notebook has); a notebook named in backticks (`14_indexes`) exists;
no notebook's markdown, code or README narrates its own making; no notebook or module reads ../shared.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS, SHOTS = ROOT / '_docs', ROOT / '_docs' / 'screenshots'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
NOTEBOOKS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'nbs').rglob('*.ipynb')
                   if not any(part.startswith(('_', '.')) for part in p.relative_to(ROOT / 'nbs').parts))


def screenshot(html: Path, png: Path, profile: str) -> subprocess.CompletedProcess:
    "Headless Chromium's screenshot of a local page, 1280 x 2400 CSS pixels, offline."
    cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run', '--hide-scrollbars',
           f'--user-data-dir={profile}', '--window-size=1280,2400', f'--screenshot={png}', html.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope='session')
def docs():
    "Build the pages once per session; returns the manifest by notebook path and the build's output."
    if CHROMIUM is None: pytest.skip('headless Chromium is not installed (Debian: apt-get install chromium)')
    if importlib.util.find_spec('nbconvert') is None: pytest.skip('nbconvert is not installed (pip install nbconvert)')
    build = subprocess.run(['bash', str(ROOT / 'tools' / 'docs.sh')], cwd=ROOT, capture_output=True, text=True,
                           timeout=900)
    manifest = DOCS / 'pages.json'
    if not manifest.exists():
        pytest.fail(f'tools/docs.sh wrote no {manifest}:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}')
    return {m['notebook']: m for m in json.loads(manifest.read_text())}, build


@pytest.fixture(scope='session')
def shots(docs):
    "Screenshots of every page (two Chromium processes at a time): page -> (png path, Chromium's output)."
    manifest, _ = docs
    SHOTS.mkdir(parents=True, exist_ok=True)
    def one(m):
        png = SHOTS / (m['page'].replace('/', '__').removesuffix('.html') + '.png')
        png.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix='chromium-') as profile:
            r = screenshot(DOCS / m['page'], png, profile)
        return m['page'], (png, r.stderr[-2000:])
    with ThreadPoolExecutor(2) as pool: return dict(pool.map(one, manifest.values()))


# Narration of a page's own making: a page states findings with the machine and the command, not a diary.
NARRATION = re.compile(r'placeholder|\bin this session\b|\bthe session\'s\b|no GPU (was|in this)|when no GPU|'
                       r'(another|other) jobs?\b|not recorded yet|until a GPU|shared (with|the) (another|other|2|two)', re.I)


def markdown_prose(src: str) -> str:
    "Markdown without fenced code blocks (recorded commands and logs are quoted as printed) and inline code."
    src = re.sub(r'```.*?```', ' ', src, flags=re.S)
    return re.sub(r'`[^`\n]*`', lambda m: m.group(0) if re.fullmatch(r'`(?:experiments/)?\d\d[a-z]?_\w+`', m.group(0)) else ' ', src)


def sources():
    "(path, markdown prose, code) of every notebook in nbs/ and of the READMEs."
    out = []
    for nb in NOTEBOOKS:
        cells = json.loads((ROOT / nb).read_text(encoding='utf-8'))['cells']
        src = lambda kind: '\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == kind)
        out.append((ROOT / nb, src('markdown'), src('code')))
    for md in ('README.md', 'bench/README.md', 'fico_itr/assets/README.md'):
        if (ROOT / md).exists(): out.append((ROOT / md, (ROOT / md).read_text(encoding='utf-8'), ''))
    return out


def anchors(notebook: Path) -> set:
    "The anchors a notebook's page has: explicit `<a id=...>` and its headings' ids (lower case, spaces as '-')."
    text = '\n'.join(''.join(c['source']) for c in json.loads(notebook.read_text(encoding='utf-8'))['cells']
                     if c['cell_type'] == 'markdown')
    ids = set(re.findall(r'<a\s+(?:id|name)="([^"]+)"', text))
    for h in re.findall(r'^#+\s+(.*)$', text, re.M):
        ids.add(re.sub(r'[^\w\- ]', '', h).strip().lower().replace(' ', '-'))
    return ids


def test_links_point_at_what_exists():
    bad = []
    for path, md, _ in sources():
        prose = markdown_prose(md)
        for target in re.findall(r'\]\(([^)\s]+)\)', prose):
            if re.match(r'[a-z]+:', target) or target.startswith('#'): continue      # a URL, or an anchor on the page
            file, _, anchor = target.partition('#')
            dest = (path.parent / file).resolve()
            if not dest.exists(): bad.append(f'{path.relative_to(ROOT)}: [..]({target}): {file} does not exist')
            elif anchor and dest.suffix == '.ipynb' and anchor not in anchors(dest):
                bad.append(f'{path.relative_to(ROOT)}: [..]({target}): {file} has no anchor #{anchor}')
        if path.suffix == '.ipynb':
            for name in re.findall(r'`((?:experiments/)?\d\d[a-z]?_\w+)`', prose):
                if not list((ROOT / 'nbs').rglob(f'{name.split("/")[-1]}.ipynb')):
                    bad.append(f'{path.relative_to(ROOT)}: `{name}` names a notebook that does not exist')
    assert not bad, 'broken links:\n' + '\n'.join(bad)


def test_no_narration_of_the_making():
    pages = [s for s in sources() if s[0].name != 'README.md' or s[0].parent == ROOT]   # the pages and the README
    bad = [f'{path.relative_to(ROOT)}: {m.group(0)!r} in ...{text[max(0, m.start() - 60):m.end() + 40]!r}...'
           for path, md, code in pages for text in (markdown_prose(md), code) for m in NARRATION.finditer(text)]
    assert not bad, 'prose that narrates its own making (state the finding, the machine and the command):\n' + '\n'.join(bad)


def test_nothing_reads_shared():
    "A clone has no ../shared beside it: the package and the notebooks read only what ships (fico_itr/assets)."
    hits = [f'{p.relative_to(ROOT)}' for p in [*(ROOT / 'nbs').rglob('*.ipynb'), *(ROOT / 'fico_itr').rglob('*.py')]
            if re.search(r'shared/data|\.\./shared', p.read_text(encoding='utf-8'))]
    assert not hits, f'these read ../shared, which a clone does not have: {hits}'


def test_readme_is_not_generated_over():
    "nbdev_docs / nbdev_prepare regenerate README.md from `readme_nb` if that notebook exists: README.md is hand-written."
    from configparser import ConfigParser
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT / 'settings.ini')
    readme_nb = cfg['DEFAULT'].get('readme_nb', 'index.ipynb')
    assert not (ROOT / 'nbs' / readme_nb).exists(), f'nbdev would overwrite README.md with nbs/{readme_nb}'


def visible_text(html: str) -> str:
    "The page's text without styles, scripts and tags (what a reader sees)."
    html = re.sub(r'<(style|script)[^>]*>.*?</\1>', ' ', html, flags=re.S)
    return re.sub(r'<[^>]+>', ' ', html)


@pytest.mark.parametrize('notebook', NOTEBOOKS)
def test_page(notebook, docs, shots):
    manifest, build = docs
    assert notebook in manifest, f'{notebook} was not rendered by tools/docs.sh:\n{build.stderr[-2000:]}'
    m = manifest[notebook]
    assert not m['errors'], f"{notebook} failed in tools/docs.sh: {m['errors']}"
    html = (DOCS / m['page']).read_text(encoding='utf-8')
    text = visible_text(html)
    assert 'Traceback (most recent call last)' not in text and not re.search(r'\w+Error\s+Traceback', text), \
        f"{m['page']} shows a Python traceback"
    assert not re.search(r'<span class="c1">#\|', html), f"{m['page']} shows raw `#|` directives in its code"
    leaked = [w for w in re.findall(r'data-mime-type="application/vnd.jupyter.stderr"[^>]*>\s*<pre>(.*?)</pre>', html, re.S)
              if re.search(r'\w+Warning\b', w)]
    assert not leaked, f"{m['page']} shows a warning from its code: {leaked[0][:300]}"
    assert not re.search(r'\{(target|style|\.[\w-]+)[=\s][^}]*\}', text), f"{m['page']} shows Pandoc attribute syntax"
    narration = NARRATION.search(text)
    assert not narration, f"{m['page']} narrates its own making: {text[max(0, narration.start() - 80):narration.end() + 40]!r}"
    n_img = len(re.findall(r'<img[^>]*\ssrc="data:image/png', html))
    assert n_img >= m['plots'], f"{m['page']} shows {n_img} plots but its notebook stores {m['plots']}"
    png, log = shots[m['page']]
    assert png.exists(), f'Chromium saved no screenshot of {m["page"]}: {log}'
    from matplotlib.image import imread
    img = imread(png)[..., :3]
    background = np.median(img.reshape(-1, 3), axis=0)
    ink = (np.abs(img - background).max(-1) > 0.1).mean()
    assert img.std() > 0.02 and ink > 0.005, f"{m['page']} looks blank in {png} (ink {ink:.4f})"


def test_experiment_pages_name_their_stand_ins(docs):
    "Every table caption and plot title of the experiment pages says what the outputs are."
    manifest, _ = docs
    pages = [manifest[n] for n in ('nbs/experiments/51_instance_level.ipynb', 'nbs/experiments/52_category_level.ipynb')]
    for m in pages:
        html = (DOCS / m['page']).read_text(encoding='utf-8')
        captions = re.findall(r'<caption>(.*?)</caption>', html, flags=re.S)
        assert captions, f"{m['page']} has no table captions"
        for c in captions:
            assert re.search(r'STAND-IN|released|The paper|Your outputs', c), f"{m['page']}: a caption does not say what it shows: {c}"
        assert m['plots'] >= 1


def test_plots_are_present_where_expected(docs):
    manifest, _ = docs
    for nb in ('nbs/experiments/51_instance_level.ipynb', 'nbs/experiments/52_category_level.ipynb', 'nbs/18_report.ipynb'):
        assert manifest[nb]['plots'] >= 1, f'{nb} made no plot'
    assert manifest['nbs/experiments/52_category_level.ipynb']['plots'] >= 2   # Figure 3 and MIRFlickr's curves
