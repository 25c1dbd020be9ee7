"""A script written against fico-itr 1.0.0 runs unchanged under this package and returns 1.0.0's numbers.

tests/dropin_script_1_0_0.py holds the calls of 1.0.0's README and paper tutorial. It runs twice, in subprocesses,
from the same folder of inputs: once with 1.0.0 first on PYTHONPATH (FICO_ITR_1_PATH, or .peers/fico-itr-1.0.0 beside
the checkout; tools/test.sh installs it there), once with this checkout. The inputs are random stand-ins for the
tutorial's results_data/ files, with the tutorial's shapes scaled down (Flickr30K-like 100 images x 500 captions,
COCO-like 120 images with 4 to 7 captions each, VSRN's square matrix, BLIP-2's two matrices, SCAN's matrix, 64-bit
codes): continuous float64 scores, so no two scores tie and every tie rule gives the same ranking. Every returned
value must be equal: similarity matrices bit for bit, R@K, MedianR and MeanR exactly, mAP to 1e-12.
"""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().parent / 'dropin_script_1_0_0.py'
PEER = Path(os.environ.get('FICO_ITR_1_PATH', ROOT / '.peers' / 'fico-itr-1.0.0'))


def write_inputs(folder: Path, seed: int = 0):
    "The tutorial's results_data/ files, as random stand-ins (float64 scores without ties)."
    rng = np.random.default_rng(seed)
    d = folder / 'results_data'; d.mkdir()
    save = lambda name, a: np.save(d / name, a)
    def embeddings(n_images, cap2img, dim=32, noise=1.2):
        img = rng.standard_normal((n_images, dim))
        return img, img[cap2img] + noise * rng.standard_normal((len(cap2img), dim))
    def multi_hot(n, c=8):
        L = (rng.random((n, c)) < 0.3).astype(np.float64); L[L.sum(1) == 0, rng.integers(0, c)] = 1
        return L
    f30k = np.repeat(np.arange(100), 5)
    img, txt = embeddings(100, f30k)
    save('beit3_f30k_img.npy', img); save('beit3_f30k_txt.npy', txt)
    save('flickr30k-karpathy-test-labels.npy', multi_hot(100))
    save('f30k_classes.npy', rng.choice([2, 5, 9], 100))                       # one class per image, not 0..C-1
    save('adv(64bit)_f30k_img.npy', rng.integers(0, 2, (100, 64))); save('adv(64bit)_f30k_txt.npy', rng.integers(0, 2, (500, 64)))
    save('vsrn_f30k_img.npy', np.repeat(img, 5, axis=0))                        # each image row once per caption
    save('vsrn_f30k_txt.npy', txt + 0.3 * rng.standard_normal(txt.shape))
    signal = np.eye(100)[:, f30k] * 2
    save('scan_f30k_sim.npy', signal + rng.standard_normal((100, 500)))
    save('blip2_f30k_sim_i2t.npy', signal + rng.standard_normal((100, 500)))
    save('blip2_f30k_sim_t2i.npy', (signal + rng.standard_normal((100, 500))).T)  # captions x images, as LAVIS saves it
    coco = np.repeat(np.arange(120), rng.integers(4, 8, 120))
    img, txt = embeddings(120, coco, noise=2.5)
    save('beit3_coco_img.npy', img); save('beit3_coco_txt.npy', txt)
    save('mscoco_test_indices.npy', coco); save('coco-karpathy-testall-labels.npy', multi_hot(120))


def run_script(pythonpath: Path, folder: Path) -> dict:
    env = {**os.environ, 'PYTHONPATH': str(pythonpath), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, str(SCRIPT)], cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def compare(a, b, where='', exact=False):
    "Assert two JSON values are equal: numbers exactly (exact) or to 1e-12, containers element by element."
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a: compare(a[k], b[k], f'{where}.{k}', exact or k in ('similarity_matrix', 'measures', 'similarity_module'))
    elif isinstance(a, list) and a and isinstance(a[0], list) and exact:
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=where)
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)): compare(x, y, f'{where}[{i}]', exact)
    elif isinstance(a, float) and not exact and not any(k in where for k in ('R@', 'MedianR', 'MeanR')):
        assert abs(a - b) <= 1e-12 * max(1, abs(a)), (where, a, b)   # mAP: the same sum in another order
    else: assert a == b, (where, a, b)


def side_by_side(peer: dict, mine: dict) -> str:
    "The metric values of both runs, one line each (the matrices left out)."
    rows = []
    def walk(p, m, where):
        if isinstance(p, dict):
            for k in p:
                if k not in ('similarity_matrix', 'measures', 'similarity_module', 'version', 'file'): walk(p[k], m[k], f'{where}.{k}'.lstrip('.'))
        elif isinstance(p, list):
            for i, (x, y) in enumerate(zip(p, m)): walk(x, y, f'{where}[{i}]')
        else: rows.append(f'{where:<40} {p:>12.6f} {m:>12.6f}')
    walk(peer, mine, '')
    return '\n'.join([f"{'value':<40} {'1.0.0':>12} {mine['version']:>12}"] + rows)


@pytest.fixture(scope='module')
def both_runs(tmp_path_factory):
    if not (PEER / 'fico_itr' / 'tasks.py').exists():
        msg = f'fico-itr 1.0.0 is not installed in {PEER} (tools/test.sh installs it)'
        if os.environ.get('CI'): pytest.fail(msg)
        pytest.skip(msg)
    folder = tmp_path_factory.mktemp('dropin')
    write_inputs(folder)
    return run_script(PEER, folder), run_script(ROOT, folder)


def test_the_script_imports_each_package(both_runs):
    peer, mine = both_runs
    assert peer['version'] == '1.0.0' and Path(peer['file']).resolve().is_relative_to(PEER.resolve()), peer['file']
    assert Path(mine['file']).resolve() == ROOT / 'fico_itr' / '__init__.py', mine['file']


def test_every_returned_value_equals_1_0_0s(both_runs):
    peer, mine = both_runs
    print(side_by_side(peer, mine))
    compare({k: v for k, v in peer.items() if k not in ('version', 'file')},
            {k: v for k, v in mine.items() if k not in ('version', 'file')})


def test_the_numbers_are_not_trivial(both_runs):
    "Scores with signal: R@1 strictly between 0 and 100 and mAP below 1, so that equal numbers say something."
    peer, _ = both_runs
    for key in ('quick_start', 'usage_2_list', 'usage_3', 'usage_4_tutorial', 'case_2'):
        pair = peer[key]['instance'] if key == 'quick_start' else peer[key]
        for d in pair: assert 0 < d['R@1'] < 100 and d['MeanR'] > 1, (key, d)
    assert all(0 < m < 1 for m in peer['quick_start']['category'] + peer['tasks']['category'][3])


def test_the_version_sorts_above_1_0_0():
    "An index holding 1.0.0 offers this package as the upgrade (a development release: pip takes it with --pre)."
    import configparser
    from packaging.version import Version
    import fico_itr
    cfg = configparser.ConfigParser(); cfg.read(ROOT / 'settings.ini')
    version = cfg['DEFAULT']['version']
    assert fico_itr.__version__ == version and Version(version) > Version('1.0.0') and Version(version).is_prerelease
