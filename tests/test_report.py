"""fico_itr.report: records read back, tables that never average and keep units and digits, the figures (opened as
PNG and checked for what they draw), staged outputs."""
import json
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from fico_itr.core import EvaluationSplit, get_conventions
from fico_itr.evaluate import evaluate, Results, tie_report
from fico_itr.similarity import HashCodes
from fico_itr.report import (_make_record, read_records, results_table, comparison_table, plot_recall_at_k, plot_pr_curves,
                             plot_tie_spread, _staged_output, write_report, _run_metrics)
from _helpers import raises

SP = EvaluationSplit.uniform(20, 5, name='uniform-20')
S = np.random.default_rng(0).standard_normal((20, 100)) + 3 * np.repeat(np.eye(20), 5, 1)


def test_issue13_item1_rows_differing_in_conventions_are_not_averaged():
    pct = evaluate(SP, S, metrics=['R@1'], model='CLIP')
    frac = evaluate(SP, S, metrics=['R@1'], model='CLIP', conventions='clip_benchmark')
    w = results_table(Results.concat([pct, frac]))
    assert len(w) == 2 and list(w.units) == ['percent', 'fraction']
    assert list(w['i2t R@1']) == [pct.get('R@1'), frac.get('R@1')]
    assert list(w.conventions) == ['preset=default;units=percent', 'preset=clip_benchmark;units=fraction']
    md = comparison_table(Results.concat([pct, frac]))
    assert f"| {frac.get('R@1'):.4f} |" in md and f"| {pct.get('R@1'):.1f} |" in md
    assert f"| {(pct.get('R@1') + frac.get('R@1')) / 2:.1f} |" not in md


def test_issue13_item9_fractions_keep_their_digits():
    t = evaluate(SP, S, metrics=['R@1'], conventions='clip_benchmark').table.copy()
    t.loc[t.direction == 'i2t', 'value'] = 0.89
    md = comparison_table(Results(t))
    assert '| 0.8900 |' in md and '| 0.9 |' not in md
    assert '0.89' in comparison_table(Results(t), fmt='csv').splitlines()[1]


def test_same_numbers_from_two_records_stay_apart(tmp_path):
    "Two records both named 'model' (item 1's CLI case: 5.0 and 100.0 were printed as 52.5)."
    good, bad = S, -np.repeat(np.eye(20), 5, 1)
    for name, scores in (('good', good), ('bad', bad)):
        res = evaluate(SP, scores, metrics=['R@1'])
        (tmp_path / f'{name}.json').write_text(json.dumps(_make_record(res, SP, get_conventions('default'), 'model')))
    both = read_records([tmp_path / 'good.json', tmp_path / 'bad.json'])
    w = results_table(both)
    assert list(w.record) == [str(tmp_path / 'good.json'), str(tmp_path / 'bad.json')]
    assert list(w['i2t R@1']) == [100.0, 0.0]


def test_metrics_names_are_checked():
    res = evaluate(SP, S, metrics=['R@1', 'R@5'])
    assert list(results_table(res, metrics=['R@5']).columns[-2:]) == ['i2t R@5', 't2i R@5']
    raises(lambda: comparison_table(res, metrics=['R@1', 'bogus']), 'unknown metric(s) bogus', 'R@1, R@5')
    raises(lambda: comparison_table(res, 'category'), 'no category-level numbers', 'instance')
    raises(lambda: comparison_table(res, fmt='html'), "unknown format 'html'")


def test_read_records_refuses_what_is_not_a_record(tmp_path):
    raises(lambda: read_records([tmp_path]), 'is a folder', exc=IsADirectoryError)
    raises(lambda: read_records([tmp_path / 'none.json']), 'does not exist', exc=FileNotFoundError)
    (tmp_path / 'a.json').write_text('[{"foo": 1}]')
    raises(lambda: read_records([tmp_path / 'a.json']), 'is not a fico-itr record')
    (tmp_path / 'b.json').write_text('{"results": [')
    raises(lambda: read_records([tmp_path / 'b.json']), 'is not JSON')


def _colours(path):
    "The distinct saturated colours of a PNG (the lines and marks; grey grid and black text left out)."
    a = np.asarray(Image.open(path).convert('RGB')).reshape(-1, 3).astype(int)
    sat = a.max(1) - a.min(1)
    return {tuple(c) for c in np.unique(a[sat > 80] // 32, axis=0)}


def test_figures_are_pngs_of_what_they_claim(tmp_path):
    ks = ['R@1', 'R@2', 'R@5', 'R@10', 'R@20', 'PR']
    a = evaluate(SP, S, metrics={'instance': ks}, model='a')
    b = evaluate(SP, S - 2.5 * np.repeat(np.eye(20), 5, 1), metrics={'instance': ks}, model='b')
    both = Results.concat([a, b])
    files = write_report(both, tmp_path / 'rep', 'toy: ')
    assert sorted(p.name for p in files) == ['instance.csv', 'instance.md', 'pr_curves.png', 'recall_at_k.png']
    for f in ('pr_curves.png', 'recall_at_k.png'):
        im = Image.open(tmp_path / 'rep' / f)
        assert im.format == 'PNG' and im.size[0] > 2 * im.size[1] > 400        # two panels side by side
        assert len(_colours(tmp_path / 'rep' / f)) >= 2                        # two models, two colours
    one = evaluate(SP, S, metrics={'instance': ks}, model='a')
    write_report(one, tmp_path / 'one')
    assert len(_colours(tmp_path / 'one' / 'recall_at_k.png')) < len(_colours(tmp_path / 'rep' / 'recall_at_k.png'))
    raises(lambda: plot_recall_at_k(evaluate(SP, S, metrics=['R@1'])), 'two or more K')
    raises(lambda: plot_pr_curves(evaluate(SP, S, metrics=['R@1'])), 'no PR points')
    import matplotlib as mpl
    assert mpl.rcParams['axes.grid'] is False                                   # the seaborn style stayed inside


def test_tie_spread_of_hash_codes(tmp_path):
    codes = np.repeat(np.eye(20, dtype=np.uint8), 5, 0)
    noisy = np.eye(20, dtype=np.uint8); noisy[::3, 0] ^= 1
    ties = tie_report(SP, images=HashCodes.from_bits(noisy), captions=HashCodes.from_bits(codes), measure='hamming',
                      metrics=['R@1', 'mAP@N'], model='20-bit codes')
    assert (ties.optimistic >= ties.expected).all() and (ties.expected >= ties.pessimistic).all() and ties.spread.max() > 0
    p = plot_tie_spread(ties, tmp_path / 'ties.png')
    assert Image.open(p).format == 'PNG'
    raises(lambda: plot_tie_spread(ties.drop(columns='optimistic'), tmp_path / 'x.png'), 'lacks optimistic')


def test_staged_output_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with _staged_output(tmp_path / 'rec.json') as t: t.write_text('{"half'); raise RuntimeError('disk full')
    with pytest.raises(KeyboardInterrupt):
        with _staged_output(tmp_path / 'rep', folder=True) as t: (t / 'a.md').write_text('x'); raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    (tmp_path / 'rep').mkdir(); (tmp_path / 'rep' / 'old.md').write_text('old'); (tmp_path / 'rep' / 'a.md').write_text('old')
    with _staged_output(tmp_path / 'rep', folder=True) as t: (t / 'a.md').write_text('new')
    assert {p.name: p.read_text() for p in (tmp_path / 'rep').iterdir()} == {'old.md': 'old', 'a.md': 'new'}
    assert sorted(p.name for p in tmp_path.iterdir()) == ['rep']


def test_run_metrics_table_and_curves():
    table, curves = _run_metrics(get_conventions('default'), EvaluationSplit.uniform(5000, 5))
    assert table == ('R@1', 'R@5', 'R@10', 'MedR', 'MeanR') and curves == ('R@2', 'R@20', 'R@50', 'R@100', 'R@200', 'R@500', 'R@1000', 'PR')
    assert _run_metrics(get_conventions('clip_benchmark'), SP)[0] == ('R@1', 'R@5', 'R@10')
    raises(lambda: _run_metrics(get_conventions('default'), SP, ['R1']), "unknown metric 'R1'")
