"""The installed `fico-itr` command end to end, as a user runs it (subprocess), on small inputs."""
import json, subprocess, sys
from pathlib import Path
import numpy as np

FICO = str(Path(sys.executable).parent / 'fico-itr')
SHARED = Path(__file__).resolve().parents[2] / 'shared' / 'data'


def run(*args):
    return subprocess.run([FICO, *map(str, args)], capture_output=True, text=True, timeout=600)


def test_evaluate_and_table_on_the_real_flickr30k_split(tmp_path):
    rng = np.random.default_rng(0)
    img, cap = rng.standard_normal((1000, 32)).astype(np.float32), rng.standard_normal((5000, 32)).astype(np.float32)
    cap[::5] = img + 0.1 * rng.standard_normal(img.shape)            # caption 0 of each image close to it
    np.save(tmp_path / 'img.npy', img); np.save(tmp_path / 'cap.npy', cap)
    r = run('evaluate', '--split', 'f30k1k', '--data-root', SHARED / 'f30k_karpathy_test', '--images', tmp_path / 'img.npy',
            '--captions', tmp_path / 'cap.npy', '--model', 'toy', '--out', tmp_path / 'toy.json', '--no-progress')
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / 'toy.json').read_text())
    assert rec['split'] == {'name': 'f30k-1k', 'n_images': 1000, 'n_captions': 5000, 'labels': None}
    assert rec['inputs']['images']['shape'] == [1000, 32] and rec['measure'] == 'cosine'
    assert rec['conventions']['ties'] == 'stable' and rec['command'][:3] == ['fico-itr', 'evaluate', '--split']
    r1 = {(x['direction'], x['metric'], x['k']): x['value'] for x in rec['results']}
    assert r1[('i2t', 'R@K', '1')] == 100.0                         # every image finds its near-copy caption first
    r = run('table', tmp_path / 'toy.json', '--format', 'csv')
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith('model,dataset,i2t R@1'), r.stdout


def test_errors_list_what_exists(tmp_path):
    r = run('evaluate', '--split', 'coco9k', '--similarity', tmp_path / 'S.npy')
    assert r.returncode == 2 and 'coco5k' in r.stderr and 'f30k1k' in r.stderr
    r = run('evaluate', '--split', 'coco5k', '--similarity', tmp_path / 'missing.npy')
    assert r.returncode == 2 and 'missing.npy' in r.stderr
    from fico_itr.core import EvaluationSplit
    from fico_itr.data import save_split
    save_split(EvaluationSplit.uniform(4, 2, name='tiny'), tmp_path / 'tiny.npz')
    np.save(tmp_path / 'S.npy', np.random.default_rng(1).random((4, 8)))
    ok = run('evaluate', '--split-file', tmp_path / 'tiny.npz', '--similarity', tmp_path / 'S.npy', '--metrics', 'R@1,R@2')
    assert ok.returncode == 0 and json.loads(ok.stdout)['split']['n_images'] == 4, ok.stderr
    r = run('evaluate', '--split-file', tmp_path / 'tiny.npz', '--similarity', tmp_path / 'S.npy', '--preset', 'vse++')
    assert r.returncode == 2 and "unknown preset 'vse++'" in r.stderr and 'trec_eval' in r.stderr
