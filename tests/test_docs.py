"""The notebooks render as documentation: `tools/docs.sh` executes every notebook (outputs kept, in a scratch copy),
runs nbdev's docs processors and renders each page to _docs/ with nbconvert, once per test session (and re-executes
only notebooks that changed since the last build, see _docs/.cache). Each page is then opened in headless Chromium
(Debian's `chromium` package) and saved as a screenshot in _docs/screenshots/, and the test fails if a page

- was not rendered, or its notebook raised while executing or while nbdev processed it for the docs;
- shows a Python traceback;
- is blank (the screenshot is one colour, or almost all background);
- lacks its plots (fewer embedded PNG images than the executed notebook produced);
- shows raw nbdev/Quarto directive text (`#| ...`) or Pandoc attribute syntax.

Skipped, with the reason, where Chromium or nbconvert is not installed (tools/test.sh installs both).
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
                           timeout=1500)
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
    n_img = len(re.findall(r'<img[^>]*\ssrc="data:image/png', html))
    assert n_img >= m['plots'], f"{m['page']} shows {n_img} plots but its notebook made {m['plots']}"
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
            assert re.search(r'STAND-IN|released|The paper', c), f"{m['page']}: a caption does not say what it shows: {c}"
        assert m['plots'] >= 1


def test_plots_are_present_where_expected(docs):
    manifest, _ = docs
    for nb in ('nbs/experiments/51_instance_level.ipynb', 'nbs/experiments/52_category_level.ipynb', 'nbs/12_zoo.ipynb'):
        assert manifest[nb]['plots'] >= 1, f'{nb} made no plot'
    assert manifest['nbs/experiments/52_category_level.ipynb']['plots'] >= 2   # Figure 3 and MIRFlickr's curves
