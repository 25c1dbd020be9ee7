"""A researcher's first hour, as a new user meets it.

* `bash tools/demo.sh` on a copy of this checkout with nothing beside it (no ../shared, no .venv, no .peers): it builds
  its own fresh virtual environment exactly as a user's first command does (the `plots` extra only; pip reuses its
  cache and the CPU torch wheel the machine has) and runs the demo end to end: the CxC / ECCV Caption rows are printed
  and results.json, tie_report.csv and pr_curves.png written. Takes one to three minutes.
* JupyterLab, as the README says to open the tutorial: started headless on a free port of 127.0.0.1, it serves the
  nbs/ tree through its REST API, and is stopped.
"""
import json, os, shutil, signal, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _clean_env(**extra) -> dict:
    "The environment of a user's shell: no PYTHONPATH or virtualenv of the developer's leaking into the fresh copy."
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'PYTHONHOME')}
    env.update(extra)
    return env


def _copy_checkout(dest: Path):
    "The files a clone would have: tracked files plus untracked ones git does not ignore (uncommitted work included)."
    files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split('\0')
    for f in filter(None, files):
        src = ROOT / f
        if not src.is_file(): continue                       # a file deleted in the working tree
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / f)


def test_demo_sh_on_a_fresh_copy(tmp_path):
    if shutil.which('git') is None or not (ROOT / '.git').exists(): pytest.skip('needs a git checkout to copy')
    repo = tmp_path / 'fico-itr'
    _copy_checkout(repo)
    assert not (repo.parent / 'shared').exists() and not (repo / '.venv').exists()
    t0 = time.perf_counter()
    p = subprocess.run(['bash', 'tools/demo.sh', '--out', str(tmp_path / 'out')], cwd=repo, env=_clean_env(),
                       capture_output=True, text=True, timeout=1200)
    wall = time.perf_counter() - t0
    out = p.stdout + p.stderr
    assert p.returncode == 0, f'tools/demo.sh failed after {wall:.0f} s:\n{out[-4000:]}'
    assert 'Traceback' not in out, out[-4000:]
    for dataset in ('coco-5k text stand-in + CXC positives', 'coco-5k text stand-in + ECCV positives'):
        assert dataset in p.stdout, f'no {dataset} rows in the demo output:\n{p.stdout[-3000:]}'
    assert 'skipped' not in p.stdout and 'pip install' not in p.stdout, p.stdout[-3000:]   # nothing optional missing
    assert '\r' not in out                                   # no progress bars in a log (stderr is not a terminal)
    for name in ('results.json', 'tie_report.csv', 'pr_curves.png'):
        assert (tmp_path / 'out' / name).stat().st_size > 0, name
    records = json.loads((tmp_path / 'out' / 'results.json').read_text())
    assert records, 'results.json is empty'
    print(f'tools/demo.sh on a fresh copy: {wall:.0f} s')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _get(url: str, token: str):
    req = urllib.request.Request(url, headers={'Authorization': f'token {token}'})
    with urllib.request.urlopen(req, timeout=10) as r: return json.loads(r.read())


def test_jupyterlab_serves_the_tutorial(tmp_path):
    pytest.importorskip('jupyterlab', reason="JupyterLab is the 'notebooks' extra: pip install -e '.[notebooks]'")
    port, token = _free_port(), 'fico-itr-test-token'
    env = _clean_env(JUPYTER_CONFIG_DIR=str(tmp_path / 'config'), JUPYTER_DATA_DIR=str(tmp_path / 'data'),
                     JUPYTER_RUNTIME_DIR=str(tmp_path / 'runtime'), HOME=str(tmp_path))
    cmd = [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
           '--port-retries=0', '--allow-root', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={ROOT / "nbs"}']
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        deadline, listing = time.monotonic() + 90, None
        while time.monotonic() < deadline and proc.poll() is None:
            try: listing = _get(f'{base}/api/contents/', token); break
            except OSError: time.sleep(0.5)
        assert listing is not None, f'JupyterLab did not answer on {base} (exit code {proc.poll()})'
        names = {c['name'] for c in listing['content']}
        assert {'index.ipynb', '06_evaluate.ipynb', '05_pitfalls.ipynb', 'experiments'} <= names, names
        exp = _get(f'{base}/api/contents/experiments', token)
        assert '51_instance_level.ipynb' in {c['name'] for c in exp['content']}
        nb = _get(f'{base}/api/contents/index.ipynb', token)
        assert nb['type'] == 'notebook' and nb['content']['cells'], 'index.ipynb served without cells'
        with urllib.request.urlopen(f'{base}/lab?token={token}', timeout=10) as r:
            assert r.status == 200 and b'JupyterLab' in r.read()
        with pytest.raises(urllib.error.HTTPError):         # and nothing is served without the token
            urllib.request.urlopen(f'{base}/api/contents/', timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try: proc.wait(timeout=20)
            except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait()
        print(proc.stdout.read()[-2000:])
