"""The notebooks' stored outputs (tools/outputs.py) and what a reader sees of them.

* The checker, on small notebooks written here: `write` stores the outputs and `check` passes; a changed number fails
  naming the cell (index and first line) and the first differing line, stored vs produced; a declared tolerance
  (`#| outputs numeric 1e-6`) passes within it and fails beyond it; images are counted; memory addresses are not
  compared; a cell flagged slow keeps its recorded output and is not compared; a notebook without stored outputs fails.
* A fresh copy of the checkout (the files git tracks, nothing executed) opened in JupyterLab, started here, and looked
  at in headless Chromium: 51's and 03a's stored tables, plots and printed results are on the page (screenshots in
  _docs/screenshots/jupyterlab_*.png). Skipped where JupyterLab or Chromium is missing.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'outputs.py'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


def outputs(mode: str, *paths: Path, workers: int = 1) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, str(TOOL), mode, *map(str, paths), '--workers', str(workers)],
                          capture_output=True, text=True, timeout=300, env=env)


def notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell('# A probe\n\n> written by tests/test_outputs.py')]
    nb.cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def edit(src: Path, dst: Path, fn) -> Path:
    "A copy of the stored notebook with `fn(cells)` applied to its JSON cells."
    nb = json.loads(src.read_text())
    fn(nb['cells'])
    dst.write_text(json.dumps(nb, indent=1))
    return dst


CELLS = ("import numpy as np\nx = np.float64(1) / 3\nprint(f'R@1 = {x:.9f}')",          # 1: stdout
         "#| outputs numeric 1e-6\nprint(f'mAP = {x:.9f} over 3 queries')",            # 2: declares a tolerance
         "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3]); plt.show()",           # 3: one image
         "object()",                                                                    # 4: a repr with an address
         "#| slow\nprint('recorded on a GPU machine')",                                 # 5: flagged slow: skipped
         "import pandas as pd\npd.DataFrame({'R@1': [x, 2 * x]}, index=['i2t', 't2i'])")   # 6: an HTML table


@pytest.fixture(scope='module')
def stored(tmp_path_factory):
    "The probe notebook, written with its outputs by `tools/outputs.py write`."
    path = notebook(tmp_path_factory.mktemp('outputs') / 'probe.ipynb', *CELLS)
    nb = json.loads(path.read_text()); nb['cells'][5]['outputs'] = [nbformat.v4.new_output('stream', text='recorded on a GPU machine\n')]
    path.write_text(json.dumps(nb))
    w = outputs('write', path)
    assert w.returncode == 0, w.stdout + w.stderr
    return path


def test_write_stores_outputs_cleaned(stored):
    cells = json.loads(stored.read_text())['cells']
    assert cells[1]['outputs'][0]['text'] == ['R@1 = 0.333333333\n']
    assert sum('image/png' in o.get('data', {}) for o in cells[3]['outputs']) == 1
    assert '<table' in ''.join(cells[6]['outputs'][0]['data']['text/html'])
    assert ' at 0x' not in ''.join(cells[4]['outputs'][0]['data']['text/plain'])       # nbdev_clean's clean_ids
    assert ''.join(cells[5]['outputs'][0]['text']) == 'recorded on a GPU machine\n'            # the skipped cell kept its own
    assert all(c.get('execution_count') is None and not c['metadata'] for c in cells)   # cleaned as nbdev_clean does
    before = stored.read_text()
    subprocess.run([str(Path(sys.executable).parent / 'nbdev_clean'), '--fname', str(stored)], cwd=ROOT, check=True)
    assert stored.read_text() == before, 'nbdev_clean changes what tools/outputs.py write stored'


def _change_number(cells): cells[1]['outputs'][0]['text'] = ['R@1 = 0.333333334\n']
def _within(cells): cells[2]['outputs'][0]['text'] = ['mAP = 0.333333533 over 3 queries\n']      # 2e-7 off
def _beyond(cells): cells[2]['outputs'][0]['text'] = ['mAP = 0.333343333 over 3 queries\n']      # 1e-5 off
def _words(cells): cells[2]['outputs'][0]['text'] = ['mAP = 0.333333333 over 4 queries\n']       # text, not noise
def _no_plot(cells):
    for o in cells[3]['outputs']: o.get('data', {}).pop('image/png', None)       # the text `<Figure ...>` stays
def _table(cells):
    o = cells[6]['outputs'][0]['data']
    o['text/html'] = [l.replace('0.666667', '0.666668') for l in o['text/html']]
def _slow(cells): cells[5]['outputs'][0]['text'] = ['recorded on an H200\n']
VARIANTS = dict(changed=_change_number, within=_within, beyond=_beyond, words=_words, noplot=_no_plot, table=_table,
                slow=_slow)


@pytest.fixture(scope='module')
def checked(stored):
    "One `check` run over the stored probe, edited copies of it and bad notebooks: name -> that notebook's report."
    folder = stored.parent
    paths = [stored] + [edit(stored, folder / f'{name}.ipynb', fn) for name, fn in VARIANTS.items()]
    paths += [notebook(folder / 'colon.ipynb', "#| outputs: numeric 1e-6\nprint(1)"),
              notebook(folder / 'what.ipynb', "#| outputs loose\nprint(1)"),
              notebook(folder / 'bare.ipynb', "print('a finding')")]
    r = outputs('check', *paths, workers=2)
    assert r.returncode == 1, r.stdout + r.stderr
    reports, name = {}, None
    for line in r.stdout.splitlines():
        m = re.match(r'(ok  |FAIL) \S*?([\w-]+)\.ipynb ', line)
        if m: name = m.group(2); reports[name] = line + '\n'
        elif name and line.startswith('    '): reports[name] += line + '\n'
    assert len(reports) == len(paths), r.stdout
    return reports


def test_check_passes_on_current_outputs(checked):
    assert checked['probe'].startswith('ok   '), checked['probe']


def test_a_changed_number_fails_with_cell_and_line(checked):
    r = checked['changed']
    assert r.startswith('FAIL') and "cell 1 (`import numpy as np`), output line 1" in r, r
    assert 'stored:   [stdout] R@1 = 0.333333334' in r and 'produced: [stdout] R@1 = 0.333333333' in r, r


def test_the_same_change_passes_within_a_declared_tolerance(checked):
    assert checked['within'].startswith('ok   '), checked['within']
    assert checked['beyond'].startswith('FAIL') and 'cell 2 (`print(' in checked['beyond'], checked['beyond']
    assert checked['words'].startswith('FAIL'), checked['words']


def test_the_tolerance_directive_is_written_one_way(checked):
    assert checked['colon'].startswith('FAIL') and 'without the colon' in checked['colon'], checked['colon']
    assert checked['what'].startswith('FAIL') and 'numeric 1e-6' in checked['what'], checked['what']


def test_images_are_counted(checked):
    r = checked['noplot']
    assert r.startswith('FAIL') and 'cell 3 (`import matplotlib.pyplot as plt`)' in r and 'produced: [images] 1' in r, r


def test_html_tables_are_compared_by_their_text(checked):
    assert checked['table'].startswith('FAIL') and '[text/html] t2i | 0.666668' in checked['table'], checked['table']


def test_the_skipped_cell_is_not_compared(checked):
    assert checked['slow'].startswith('ok   '), checked['slow']


def test_no_stored_outputs_fails(checked):
    assert checked['bare'].startswith('FAIL') and 'no stored outputs' in checked['bare'], checked['bare']


# ---- a fresh copy in JupyterLab --------------------------------------------------------------------------------------
SHOWN = ('nbs/experiments/51_instance_level.ipynb', 'nbs/04_ties.ipynb')


def stored_view(nb: dict) -> tuple[int, int, list[str]]:
    "Tables, images, and the first line of each printed or returned text, in a notebook's stored outputs."
    tables = images = 0
    texts = []
    for c in nb['cells']:
        for o in c.get('outputs', []):
            data = o.get('data', {})
            tables += ''.join(data.get('text/html', '')).count('<table')
            images += 'image/png' in data
            text = o.get('text') or ('' if 'text/html' in data or 'text/markdown' in data or 'image/png' in data
                                     else data.get('text/plain', ''))
            first = next((l.strip() for l in ''.join(text).splitlines() if l.strip()), None)
            if first: texts.append(first)
    return tables, images, texts


def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
           '--disable-component-update', '--disable-sync', '--hide-scrollbars', f'--user-data-dir={profile}',
           '--window-size=1280,4000', '--virtual-time-budget=30000', *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def test_a_fresh_copy_shows_stored_tables_and_plots_in_jupyterlab(tmp_path):
    pytest.importorskip('jupyterlab', reason="JupyterLab is the 'notebooks' extra: pip install -e '.[notebooks]'")
    if CHROMIUM is None: pytest.skip('headless Chromium is not installed (Debian: apt-get install chromium)')
    if shutil.which('git') is None or not (ROOT / '.git').exists(): pytest.skip('needs a git checkout to copy')
    from test_first_hour import _clean_env, _copy_checkout, _free_port
    repo = tmp_path / 'fico-itr'
    _copy_checkout(repo)
    views = {rel: stored_view(json.loads((repo / rel).read_text())) for rel in SHOWN}
    for rel, (tables, images, texts) in views.items():
        assert texts or tables or images, f'{rel} is stored without outputs: run tools/outputs.py write and commit it'
        if rel.endswith('51_instance_level.ipynb'):
            assert tables >= 1 and images >= 1, f'{rel} stores {tables} tables and {images} plots'
    port, token = _free_port(), 'fico-itr-outputs-token'
    env = _clean_env(**{k: str(tmp_path / k.lower()) for k in ('JUPYTER_CONFIG_DIR', 'JUPYTER_DATA_DIR',
                        'JUPYTER_RUNTIME_DIR', 'JUPYTERLAB_SETTINGS_DIR', 'JUPYTERLAB_WORKSPACES_DIR')}, HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
                             '--port-retries=0', '--allow-root', f'--IdentityProvider.token={token}',
                             f'--ServerApp.root_dir={repo / "nbs"}'], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base, shots = f'http://127.0.0.1:{port}', ROOT / '_docs' / 'screenshots'
    shots.mkdir(parents=True, exist_ok=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try: urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=5); break
            except OSError: time.sleep(0.5)
        else: pytest.fail(f'JupyterLab did not answer on {base} (exit code {proc.poll()})')
        for rel, (tables, images, texts) in views.items():
            url = f'{base}/lab/tree/{rel.removeprefix("nbs/")}?token={token}'
            dom = chromium(url, tmp_path / 'chrome-dom', '--dump-dom').stdout
            shown_tables = dom.count('<table')
            shown_images = len(re.findall(r'<img[^>]*src="(?:data:image/png|blob:)', dom))
            assert shown_tables >= tables and shown_images >= images, \
                f'JupyterLab shows {shown_tables} tables and {shown_images} plots of {rel}; it stores {tables} and {images}'
            page = re.sub(r'\s+', ' ', html.unescape(re.sub(r'<[^>]+>', ' ', dom)))
            missing = [t for t in texts if re.sub(r'\s+', ' ', t) not in page]
            assert not missing, f'JupyterLab does not show these stored outputs of {rel}: {missing[:5]}'
            png = shots / f'jupyterlab_{Path(rel).stem}.png'
            png.unlink(missing_ok=True)
            chromium(url, tmp_path / 'chrome-shot', f'--screenshot={png}')
            from matplotlib.image import imread
            img = imread(png)[..., :3]
            ink = (np.abs(img - np.median(img.reshape(-1, 3), axis=0)).max(-1) > 0.1).mean()
            assert ink > 0.005, f'the screenshot of {rel} in JupyterLab looks blank: {png}'
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try: proc.wait(timeout=20)
            except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()


def test_only_progress_bars_and_addresses_are_normalised():
    import importlib.util
    spec = importlib.util.spec_from_file_location('outputs_tool', TOOL)
    tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)
    bars = lambda *states: [{'output_type': 'stream', 'name': 'stderr', 'text': '\r'.join(states) + '\nEncoded 4 images\n'}]
    fast = bars('Loading:   0%|          | 0/46 [00:00<?, ?it/s]', 'Loading: 100%|##########| 46/46 [00:00<00:00, 16048.74it/s]')
    slow = bars('Loading:   0%|          | 0/46 [00:00<?, ?it/s]', 'Loading:  50%|#####     | 23/46 [00:01<00:01, 20.1it/s]',
                'Loading: 100%|##########| 46/46 [00:02<00:00, 19.87it/s]')
    assert tool.lines(fast) == tool.lines(slow) == ['[stderr] Loading: <progress bar>', '[stderr] Encoded 4 images']
    plain = lambda text: [{'output_type': 'execute_result', 'data': {'text/plain': text}}]
    assert tool.lines(plain('<Styler at 0x7f87bca592d0>')) == tool.lines(plain('<Styler>'))
    assert tool.lines(plain('built in 0.05 s')) != tool.lines(plain('built in 0.06 s'))   # a time is not noise
