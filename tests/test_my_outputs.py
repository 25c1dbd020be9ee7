"""A researcher's own model through the experiment notebooks' first cell, `MY_OUTPUTS`.

Random embeddings and codes of the right shapes are saved as .npy files, listed in `MY_OUTPUTS` of a copy of
experiments/51_instance_level and 52_category_level, and the copies are executed as nbdev_test does (cells flagged
slow or gpu skipped), without the stand-ins (`STAND_INS = False`, which keeps the test short; nbdev_test runs the
notebooks with them). Their rows must appear in Table 2 (51) and Table 4 (52) beside the paper's twelve models printed
as rows, with the paper column and the difference for the output that names the paper model it reproduces; the
values in the tables must be the ones `evaluate` gives for the same files.
"""
import os, re
from html import unescape
from pathlib import Path
import numpy as np
import pytest
from execnb.nbio import read_nb
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / 'nbs' / 'experiments'
PAPER = ['BLIP-2', 'BLIP-2 NF', 'BEiT-3', 'X-VLM', 'X-VLM NF', 'IMRAM', 'VSRN', 'SCAN', 'ADV 2048-bit', 'ADV 64-bit',
         'UCCH', 'DADH']


def run_with_my_outputs(name: str, my_outputs: str):
    "Execute a copy of experiments/`name` with its MY_OUTPUTS cell replaced; return (notebook, namespace)."
    nb = read_nb(EXPERIMENTS / name)
    cells = [c for c in nb.cells if c.cell_type == 'code' and 'MY_OUTPUTS = [' in c.source]
    assert len(cells) == 1, f'{name} needs exactly one MY_OUTPUTS cell'
    first_code = next(c for c in nb.cells if c.cell_type == 'code')
    assert cells[0] is first_code, f'the MY_OUTPUTS cell must be the first code cell of {name}'
    assert re.search(r'MY_OUTPUTS = \[[^\]]*\n\]', cells[0].source), 'MY_OUTPUTS is not empty by default'
    assert 'STAND_INS = True' in cells[0].source
    cells[0].source = 'from fico_itr.paper import user_output\nMY_OUTPUTS = [\n' + my_outputs + '\n]\nSTAND_INS = False'
    skip = lambda c: c.cell_type != 'code' or re.search(r'^#\|\s*(slow|gpu)\b', c.source, re.M) is not None
    shell, cwd = CaptureShell(), os.getcwd()
    os.chdir(EXPERIMENTS)
    try: shell.run_all(nb, exc_stop=True, preproc=skip)
    finally: os.chdir(cwd)
    return nb, shell.user_ns


def table_html(nb, caption_start: str) -> str:
    "The HTML of the displayed table whose caption starts with `caption_start`."
    for c in nb.cells:
        for o in c.get('outputs', []):
            html = o.get('data', {}).get('text/html', '')
            html = ''.join(html) if isinstance(html, list) else html
            if f'<caption>{caption_start}' in html: return html
    raise AssertionError(f'no table captioned {caption_start!r} was displayed')


def rows_of(html: str) -> list:
    "The row names of a table rendered by `_table_view` (a pandas Styler)."
    return [unescape(r) for r in re.findall(r'class="row_heading level0 row\d+" >(.*?)</th>', html)]


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('my_model')
    rng = np.random.default_rng(0)
    for split, (ni, nc) in {'coco': (5000, 25000), 'f30k': (1000, 5000)}.items():
        np.save(d / f'{split}_img.npy', rng.standard_normal((ni, 32)).astype(np.float32))
        np.save(d / f'{split}_cap.npy', rng.standard_normal((nc, 32)).astype(np.float32))
        np.save(d / f'{split}_img_codes.npy', rng.random((ni, 64)) < .5)
        np.save(d / f'{split}_cap_codes.npy', rng.random((nc, 64)) < .5)
    return d


def check_rows(html: str, mine: list, paper_row_metric: str):
    rows = rows_of(html)
    for m in mine: assert any(r.startswith(m) for r in rows), f'{m!r} is not a row of the table: {rows}'
    paper_rows = [r for r in rows if r.endswith('(paper)')]
    assert 'BEiT-3 (paper)' in paper_rows and len(paper_rows) >= 8, paper_rows
    assert paper_row_metric in html


def test_my_outputs_in_table_2(files):
    nb, ns = run_with_my_outputs('51_instance_level.ipynb', f"""
    user_output('my random model', 'coco-5k', images=r'{files}/coco_img.npy', captions=r'{files}/coco_cap.npy',
                paper_model='BEiT-3'),
    user_output('my random hash', 'f30k-1k', images=r'{files}/f30k_img_codes.npy', captions=r'{files}/f30k_cap_codes.npy',
                measure='hamming'),""")
    html = table_html(nb, 'Table 2, coco-5k:')
    check_rows(html, ['my random model'], 'R@1')
    from fico_itr.paper import side_by_side
    sbs = side_by_side(ns['res'], 'coco-5k', metrics=['R@1', 'R@5', 'R@10'], paper_models=ns['PAPER_OF'], paper_rows=True)
    beit = sbs.loc['BEiT-3 (paper)', ('i2t', 'R@1', 'paper')]
    assert sbs.loc['my random model', ('i2t', 'R@1', 'paper')] == beit and beit > 50      # BEiT-3's printed figure
    assert sbs.loc['my random model', ('i2t', 'R@1', 'measured')] < 1                       # random vectors: chance level
    assert np.isclose(sbs.loc['my random model', ('i2t', 'R@1', 'Δ')],
                      sbs.loc['my random model', ('i2t', 'R@1', 'measured')] - beit)
    # the table shows the numbers evaluate() gives for the same files
    from fico_itr.data import coco5k_split
    from fico_itr.evaluate import evaluate
    direct = evaluate(coco5k_split(), images=np.load(files / 'coco_img.npy'), captions=np.load(files / 'coco_cap.npy'),
                      granularities=['instance'], metrics={'instance': ('R@1',)})
    assert np.isclose(direct.get('R@1', 'i2t'), sbs.loc['my random model', ('i2t', 'R@1', 'measured')])
    hash_html = table_html(nb, 'Table 2, f30k-1k:')
    check_rows(hash_html, ['my random hash'], 'R@10')
    assert 'my random hash' in rows_of(table_html(nb, 'Table 3, f30k-1k:'))
    assert any('my random model' in ''.join(o.get('data', {}).get('text/markdown', ''))
               for c in nb.cells for o in c.get('outputs', [])), 'no finding on your outputs'


def test_my_outputs_in_table_4(files):
    nb, ns = run_with_my_outputs('52_category_level.ipynb', f"""
    user_output('my random model', 'f30k-1k', images=r'{files}/f30k_img.npy', captions=r'{files}/f30k_cap.npy',
                paper_model='BEiT-3'),
    user_output('my random hash', 'f30k-1k', images=r'{files}/f30k_img_codes.npy', captions=r'{files}/f30k_cap_codes.npy',
                measure='hamming'),""")
    html = table_html(nb, 'Table 4, f30k-1k:')
    check_rows(html, ['my random model', 'my random hash'], 'mAP@N')
    assert 'derived from the caption words' in html                 # no labels were given: the caption says so
    t = ns['res'].table
    mine = t[(t.model == 'my random model') & (t.granularity == 'category') & (t.metric == 'mAP@K')]
    assert set(mine.k) >= {'10', '100', 'N'} and mine.value.notna().all()
    assert 'my random hash' in set(ns['ties'].model)                 # the tie report covers your codes too
