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
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith('model,dataset,conventions,units,i2t R@1'), r.stdout


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


def one_line_error(r, *fragments):
    "A failed command: non-zero status, one line on stderr, no traceback, every fragment in it."
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr
    for f in fragments: assert f in lines[0], lines[0]
    return lines[0]


def _tiny(tmp_path):
    from fico_itr.core import EvaluationSplit
    from fico_itr.data import save_split
    save_split(EvaluationSplit.uniform(4, 2, name='tiny'), tmp_path / 'tiny.npz')
    np.save(tmp_path / 'S.npy', np.random.default_rng(1).random((4, 8)))
    return ['--split-file', tmp_path / 'tiny.npz', '--similarity', tmp_path / 'S.npy']


def test_five_mistakes_each_one_line(tmp_path):
    "A new user's mistakes: a missing file, a wrong split name, --out a folder, table on a folder, bad --metrics."
    tiny = _tiny(tmp_path)
    one_line_error(run('evaluate', '--split-file', tmp_path / 'tiny.npz', '--similarity', tmp_path / 'S2.npy'),
                   '--similarity', 'S2.npy does not exist')
    one_line_error(run('evaluate', '--split', 'coco9k', '--similarity', tmp_path / 'S.npy'), "unknown split 'coco9k'", 'coco5k')
    one_line_error(run('evaluate', *tiny, '--out', tmp_path), '--out', 'is a folder: pass a file name')
    one_line_error(run('table', tmp_path), 'is a folder: pass the JSON records in it')
    one_line_error(run('evaluate', *tiny, '--metrics', 'R1,R5'), "unknown metric 'R1'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ['S.npy', 'tiny.npz']


def test_more_mistakes_each_one_line(tmp_path):
    tiny = _tiny(tmp_path)
    one_line_error(run('evaluate', *tiny, '--rerank-depth', '0'), '--rerank-depth: 0 is not a positive number')
    one_line_error(run('evaluate', *tiny, '--measure', 'cosinus'), "invalid choice: 'cosinus'")
    (tmp_path / 'dir.json').mkdir()
    one_line_error(run('evaluate', '--split-file', tmp_path / 'dir.json', '--similarity', tmp_path / 'S.npy'), 'dir.json is a folder')
    np.savez(tmp_path / 'cut.npz', S=np.ones((4, 8)))
    (tmp_path / 'cut.npz').write_bytes((tmp_path / 'cut.npz').read_bytes()[:100])
    one_line_error(run('evaluate', '--split-file', tmp_path / 'tiny.npz', '--similarity', tmp_path / 'cut.npz'),
                   '--similarity', 'cut.npz: cannot read it')
    np.save(tmp_path / 'wrong.npy', np.ones((8, 4)))      # captions x images: refused, and no record is left
    one_line_error(run('evaluate', '--split-file', tmp_path / 'tiny.npz', '--similarity', tmp_path / 'wrong.npy',
                       '--out', tmp_path / 'rec.json'), 'similarity')
    one_line_error(run('evaluate', *tiny, '--out', tmp_path / 'nowhere' / 'rec.json'), 'does not exist')
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(('rec', '.rec'))]
    ok = run('evaluate', *tiny, '--metrics', 'R@1,R@2', '--out', tmp_path / 'a.json')
    assert ok.returncode == 0, ok.stderr
    one_line_error(run('table', tmp_path / 'a.json', '--metrics', 'R@1,bogus'), 'unknown metric(s) bogus', 'R@1, R@2')
    (tmp_path / 'not-a-record.json').write_text('{"foo": 1}')
    one_line_error(run('table', tmp_path / 'not-a-record.json'), 'is not a fico-itr record')


def test_demo_out_existing_file_refused_before_work(tmp_path):
    (tmp_path / 'taken').write_text('mine')
    one_line_error(run('demo', '--out', tmp_path / 'taken'), '--out', 'is a file: pass a folder name')
    assert [p.name for p in tmp_path.iterdir()] == ['taken'] and (tmp_path / 'taken').read_text() == 'mine'


def test_table_keeps_conventions_apart_and_digits(tmp_path):
    "Issue 13 items 1 and 9: records of one model under two presets are two rows in their own units; no averaging."
    from fico_itr.core import EvaluationSplit
    from fico_itr.data import save_split
    rng = np.random.default_rng(0)
    save_split(EvaluationSplit.uniform(20, 5, name='uniform-20'), tmp_path / 'sp.npz')
    np.save(tmp_path / 'S.npy', rng.standard_normal((20, 100)) + 3 * np.repeat(np.eye(20), 5, 1))
    np.save(tmp_path / 'Z.npy', -np.repeat(np.eye(20), 5, 1) + 0.01 * rng.random((20, 100)))
    for preset, scores, name in (('default', 'S', 'a'), ('clip_benchmark', 'S', 'b'), ('default', 'Z', 'c')):
        r = run('evaluate', '--split-file', tmp_path / 'sp.npz', '--similarity', tmp_path / f'{scores}.npy', '--preset', preset,
                '--metrics', 'R@1,R@5', '--out', tmp_path / f'{name}.json')
        assert r.returncode == 0, r.stderr
    vals = {n: {(x['direction'], x['k']): x['value'] for x in json.loads((tmp_path / f'{n}.json').read_text())['results']}
            for n in 'abc'}
    r = run('table', tmp_path / 'a.json', tmp_path / 'b.json', tmp_path / 'c.json')
    assert r.returncode == 0, r.stderr
    rows = [l for l in r.stdout.splitlines() if l.startswith('| model |') and 'dataset' not in l]
    assert len(rows) == 3, r.stdout                      # two records both named "model" under default: still two rows
    frac = next(l for l in rows if 'fraction' in l)
    assert f"| {vals['b'][('t2i', '1')]:.4f} |" in frac and f"| {vals['b'][('i2t', '5')]:.4f} |" in frac
    pct = [l for l in rows if 'percent' in l]
    assert {f"{vals['a'][('i2t', '1')]:.1f}" in pct[0], f"{vals['c'][('i2t', '1')]:.1f}" in pct[1]} == {True}
    mean = (vals['a'][('i2t', '1')] + vals['c'][('i2t', '1')]) / 2
    assert f'| {mean:.1f} |' not in r.stdout
    csv = run('table', tmp_path / 'a.json', tmp_path / 'b.json', '--format', 'csv')
    assert csv.returncode == 0 and csv.stdout.splitlines()[0] == 'model,dataset,conventions,units,i2t R@1,i2t R@5,t2i R@1,t2i R@5'
    assert repr(vals['b'][('t2i', '1')]) in csv.stdout   # unrounded


def test_table_beside_the_papers_rows(tmp_path):
    from fico_itr.core import EvaluationSplit
    from fico_itr.data import save_split
    save_split(EvaluationSplit.uniform(6, 2, name='coco-5k'), tmp_path / 'sp.npz')
    np.save(tmp_path / 'S.npy', np.random.default_rng(1).random((6, 12)))
    r = run('evaluate', '--split-file', tmp_path / 'sp.npz', '--similarity', tmp_path / 'S.npy', '--metrics', 'R@1,R@5',
            '--model', 'mine', '--out', tmp_path / 'a.json')
    assert r.returncode == 0, r.stderr
    r = run('table', tmp_path / 'a.json', '--paper', '--metrics', 'R@1')
    assert r.returncode == 0, r.stderr
    assert '| BLIP-2 | coco-5k | paper (Table 2, as printed) | percent | 85.4 | 68.2 |' in r.stdout
    assert '| mine | coco-5k |' in r.stdout and 'f30k-1k' not in r.stdout


def test_evaluate_backend_ray_checks_its_arguments_before_ray_starts(tmp_path):
    "Ray options without --backend ray, matrices or non-.npy inputs with it: one line each, before Ray starts."
    _tiny(tmp_path)
    np.save(tmp_path / 'img.npy', np.ones((4, 3), np.float32)); np.savez(tmp_path / 'cap.npz', np.ones((8, 3), np.float32))
    tiny = ['evaluate', '--split-file', tmp_path / 'tiny.npz']
    one_line_error(run(*tiny, '--similarity', tmp_path / 'S.npy', '--address', 'auto', '--shards', '2'),
                   '--address, --shards only apply with --backend ray')
    one_line_error(run(*tiny, '--similarity', tmp_path / 'S.npy', '--backend', 'ray'), 'takes --images and --captions')
    one_line_error(run(*tiny, '--images', tmp_path / 'img.npy', '--captions', tmp_path / 'cap.npz', '--backend', 'ray'),
                   'cap.npz: --backend ray reads .npy files')
