"""fico_itr.zoo: the registry, the loader on a fixture folder in FiCo-ITR's naming (tiny arrays), the paper's figures,
the side-by-side columns, the query/database protocol, the stand-ins and the plots.

The fixture writes what FiCo-ITR's paper tutorial reads (`{model}_{f30k|coco}_{img|txt|sim|sim_i2t|sim_t2i}.npy` and the
two `LAll` label files, with different labels per data set) in the layouts such outputs come in: a fusion model's t2i
matrix stored images x captions, VSE-repeated image rows, {-1,+1} codes and real-valued "codes".
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.io

from fico_itr.core import EvaluationSplit, get_conventions
from fico_itr.data import hashing_split, load_mirflickr25k
from fico_itr.evaluate import Results, evaluate
from fico_itr.similarity import HashCodes
from fico_itr.paper import (_DATASETS, MODELS, PAPER_FIGURES, _conventions_table, _fico_file_name, fico_inventory,
                            load_fico_results, _paper_table, side_by_side, _zoo_model)
from fico_itr.zoo import (ModelOutput, QueryDatabase, evaluate_outputs, evaluate_query_database,
                          _mirflickr_standin_outputs, outputs_table, _lavis_rerank, _text_standin_outputs)
from fico_itr.report import plot_pr_curves, plot_recall_at_k

from _helpers import DATA, raises

N = {'f30k': 6, 'coco': 50}


def make_folder(folder, seed=0):
    "FiCo-ITR's results folder in miniature; returns the arrays written, by (key, dataset, part)."
    rng, written = np.random.default_rng(seed), {}
    for ds, n in N.items():
        L = rng.random((n, 3 if ds == 'f30k' else 4)) < .5
        L[L.sum(1) == 0, 0] = True
        scipy.io.savemat(folder / _DATASETS[ds].labels_file, {'LAll': L.astype(np.uint8)})
        written['labels', ds] = L
        img = rng.standard_normal((n, 12))
        txt = np.repeat(img, 5, axis=0) + 1.5 * rng.standard_normal((5 * n, 12))
        S = (img @ txt.T).astype(np.float32)
        parts = {('blip2', 'sim_i2t'): S, ('blip2', 'sim_t2i'): S,                 # t2i stored images x captions
                 ('xvlm', 'sim_i2t'): S, ('xvlm', 'sim_t2i'): np.ascontiguousarray(S.T),
                 ('scan', 'sim'): S, ('vsrn', 'img'): np.repeat(img, 5, axis=0), ('vsrn', 'txt'): txt,
                 ('beit3', 'img'): img, ('beit3', 'txt'): txt,
                 ('ucch', 'img'): np.where(img[:, :8] >= 0, 1, -1), ('ucch', 'txt'): np.where(txt[:, :8] >= 0, 1, -1),
                 ('dadh', 'img'): img[:, :8], ('dadh', 'txt'): txt[:, :8]}
        if ds == 'f30k': parts.update({('adv(64bit)', 'img'): (img[:, :8] >= 0).astype(np.uint8),
                                       ('adv(64bit)', 'txt'): (txt[:, :8] >= 0).astype(np.uint8)})
        for (key, part), arr in parts.items():
            np.save(folder / f'{key}_{ds}_{part}.npy', arr); written[key, ds, part] = arr
    return written


@pytest.fixture(scope='module')
def released(tmp_path_factory):
    folder = tmp_path_factory.mktemp('results_data')
    return folder, make_folder(folder)


@pytest.fixture(scope='module')
def loaded(released):
    folder, _ = released
    return {(o.model, o.dataset): o for o in load_fico_results(folder)}


def test_registry():
    assert list(MODELS) == ['BLIP-2', 'BLIP-2 NF', 'BEiT-3', 'X-VLM', 'X-VLM NF', 'IMRAM', 'VSRN', 'SCAN', 'ADV 2048-bit',
                            'ADV 64-bit', 'UCCH', 'DADH']
    kinds = {m.name: m.kind for m in MODELS.values()}
    assert [n for n, k in kinds.items() if k == 'i2t_t2i'] == ['BLIP-2', 'X-VLM']
    assert [n for n, k in kinds.items() if k == 'similarity'] == ['BLIP-2 NF', 'X-VLM NF', 'IMRAM', 'SCAN']
    assert [n for n, k in kinds.items() if k == 'embeddings'] == ['BEiT-3', 'VSRN']
    assert {m.name for m in MODELS.values() if m.family == 'CG'} == {'ADV 2048-bit', 'ADV 64-bit', 'UCCH', 'DADH'}
    assert MODELS['BLIP-2'].rerank_depth == {'f30k': 128, 'coco': 256}
    assert _zoo_model('xvlm(nf)').name == 'X-VLM NF' and _zoo_model('beit-3').key == 'beit3'
    assert _fico_file_name('BLIP-2 NF', 'coco', 'sim') == 'blip2(nf)_coco_sim.npy'
    raises(lambda: _fico_file_name('SCAN', 'coco', 'emb'), "unknown part 'emb'")
    raises(lambda: _zoo_model('CLIP'), "unknown model 'CLIP'", exc=KeyError)


def test_inventory(released):
    folder, _ = released
    inv = fico_inventory(folder).set_index(['model', 'dataset'])
    assert inv.loc[('BLIP-2', 'f30k'), 'status'] == 'found' and inv.loc[('BLIP-2', 'f30k'), 'kind'] == 'i2t_t2i'
    assert inv.loc[('IMRAM', 'coco'), 'status'] == 'missing'
    assert inv.loc[('(labels)', 'coco'), 'status'] == 'found'
    assert ('ADV 64-bit', 'coco') not in inv.index and inv.loc[('ADV 64-bit', 'f30k'), 'status'] == 'found'
    assert inv.loc[('BLIP-2', 'coco'), 'files'] == 'blip2_coco_sim_i2t.npy, blip2_coco_sim_t2i.npy'


def test_loader_kinds_depths_and_notes(loaded):
    assert len(loaded) == 2 * 7 + 1
    b = loaded['BLIP-2', 'f30k-1k']
    assert (b.kind, b.rerank_depth, loaded['BLIP-2', 'coco-5k'].rerank_depth) == ('i2t_t2i', 128, 256)
    assert b.scores['t2i_similarity'].shape == (30, 6) and any('transposed' in n for n in b.notes)
    assert not any('transposed' in n for n in loaded['X-VLM', 'f30k-1k'].notes)   # stored captions x images already
    v = loaded['VSRN', 'coco-5k']
    assert v.scores['images'].shape == (50, 12) and any('repeated 5x' in n for n in v.notes)
    assert loaded['UCCH', 'f30k-1k'].measure == 'hamming' and isinstance(loaded['UCCH', 'f30k-1k'].scores['images'], HashCodes)
    assert loaded['ADV 64-bit', 'f30k-1k'].measure == 'hamming'                      # {0,1} codes
    d = loaded['DADH', 'f30k-1k']
    assert d.measure == 'cosine' and any('not binary' in n for n in d.notes)
    assert all(o.paper_model == o.model for o in loaded.values())
    assert {o.dataset for o in loaded.values()} == {'f30k-1k', 'coco-5k'}
    t = outputs_table(list(loaded.values()))
    assert t.loc[('BLIP-2', 'coco-5k'), 'rerank_depth'] == 256 and t.loc[('SCAN', 'coco-5k'), 'measure'] == 'precomputed'


def test_each_dataset_reads_its_own_labels(released, loaded):
    _, w = released
    # FiCo-ITR's demo loads the Flickr30K file for both data sets; here COCO must get COCO's labels
    np.testing.assert_array_equal(loaded['SCAN', 'coco-5k'].split.labels, w['labels', 'coco'])
    np.testing.assert_array_equal(loaded['SCAN', 'f30k-1k'].split.labels, w['labels', 'f30k'])
    assert loaded['SCAN', 'coco-5k'].split.labels.shape == (50, 4)


def test_loaded_outputs_evaluate_as_the_raw_arrays(released, loaded):
    _, w = released
    for ds, name in (('f30k', 'f30k-1k'), ('coco', 'coco-5k')):
        split = EvaluationSplit.uniform(N[ds], 5, w['labels', ds], name)
        m = {'instance': ('R@1', 'R@5', 'MedR'), 'category': ('mAP@5', 'mAP@N')}
        S = w['scan', ds, 'sim']
        pairs = [('SCAN', dict(similarity=S), 'default'),
                 ('VSRN', dict(images=w['vsrn', ds, 'img'][::5], captions=w['vsrn', ds, 'txt']), 'default'),
                 ('UCCH', dict(images=w['ucch', ds, 'img'], captions=w['ucch', ds, 'txt'], measure='hamming'), 'default'),
                 ('BLIP-2', dict(i2t_similarity=S, t2i_similarity=S.T),
                  get_conventions('default', rerank_depth=MODELS['BLIP-2'].rerank_depth[ds]))]
        for model, kw, conv in pairs:
            got = loaded[model, name].evaluate(metrics=m).table
            want = evaluate(split, **kw, conventions=conv, metrics=m, model=model, progress=False).table
            pd.testing.assert_frame_equal(got, want)
    assert math.isnan(loaded['BLIP-2', 'f30k-1k'].evaluate().get('mAP@N', 'i2t', 'category'))


def test_loader_errors(tmp_path, released):
    folder, _ = released
    raises(lambda: load_fico_results(tmp_path / 'absent'), 'is not a folder', exc=FileNotFoundError)
    raises(lambda: load_fico_results(tmp_path), 'no FiCo-ITR outputs in', 'blip2_f30k_sim_i2t.npy', exc=FileNotFoundError)
    raises(lambda: load_fico_results(folder, missing='error'), 'lacks', exc=FileNotFoundError)
    raises(lambda: load_fico_results(folder, datasets=['flickr']), "unknown data set 'flickr'")
    raises(lambda: load_fico_results(folder, missing='warn'), "`missing` must be 'skip' or 'error'")
    assert [o.model for o in load_fico_results(folder, models=['SCAN', 'ucch'], datasets='f30k')] == ['SCAN', 'UCCH']
    # rows that do not fit the split: named file, and the fix
    bad = tmp_path / 'bad'; bad.mkdir()
    np.save(bad / 'beit3_f30k_img.npy', np.zeros((7, 4))); np.save(bad / 'beit3_f30k_txt.npy', np.ones((5000, 4)))
    raises(lambda: load_fico_results(bad), 'beit3_f30k_img.npy', 'has 7 rows but')
    lavis = tmp_path / 'lavis'; lavis.mkdir()
    np.save(lavis / 'scan_coco_sim.npy', np.zeros((2, 25010), np.float32))
    raises(lambda: load_fico_results(lavis, splits={'coco': EvaluationSplit.uniform(2, 12500)}), '25,010 captions',
           "splits={'coco': load_lavis_annotations")
    rep = tmp_path / 'rep'; rep.mkdir()
    np.save(rep / 'vsrn_f30k_txt.npy', np.ones((5000, 4)))
    scipy.io.savemat(rep / _DATASETS['f30k'].labels_file, {'LAll': np.ones((1000, 2), np.uint8)})
    np.save(rep / 'vsrn_f30k_img.npy', np.concatenate([np.ones((1, 4)), np.zeros((4999, 4))]))
    raises(lambda: load_fico_results(rep), 'the rows of one image differ')


def test_other_kind_and_custom_split(tmp_path):
    S = np.random.default_rng(1).standard_normal((4, 20)).astype(np.float32)
    np.save(tmp_path / 'blip2_f30k_sim.npy', S)                   # a fusion model saved as one matrix
    out = load_fico_results(tmp_path, splits={'f30k': EvaluationSplit.uniform(4, 5, name='mine')})
    assert len(out) == 1 and out[0].kind == 'similarity' and out[0].rerank_depth is None
    assert any('expects i2t_t2i files; found similarity' in n for n in out[0].notes)
    assert out[0].dataset == 'f30k-1k' and out[0].split.labels is None
    inv = fico_inventory(tmp_path, models='BLIP-2', datasets='f30k').set_index('model')
    assert inv.loc['BLIP-2', 'status'] == 'found as similarity'


def test_paper_figures():
    P = PAPER_FIGURES.set_index(['model', 'dataset', 'direction', 'granularity', 'metric', 'k']).value
    assert P['BLIP-2', 'coco-5k', 'i2t', 'instance', 'R@K', '1'] == 85.4
    assert P['SCAN', 'f30k-1k', 't2i', 'instance', 'R@K', '10'] == 82.2
    assert P['ADV 64-bit', 'f30k-1k', 'i2t', 'instance', 'R@K', '200'] == 98.2
    assert P['UCCH', 'f30k-1k', 't2i', 'instance', 'R@K', '50'] == 68.7
    assert P['DADH', 'coco-5k', 't2i', 'category', 'mAP@K', '10'] == 75.6
    assert P['BEiT-3', 'f30k-1k', 't2i', 'category', 'mAP@K', 'N'] == 94.6
    assert math.isnan(P['BLIP-2', 'coco-5k', 'i2t', 'category', 'mAP@K', 'N'])
    assert ('ADV 2048-bit', 'coco-5k') not in set(zip(PAPER_FIGURES.model, PAPER_FIGURES.dataset))
    assert not PAPER_FIGURES.duplicated(['model', 'dataset', 'direction', 'granularity', 'metric', 'k']).any()
    assert _paper_table('category', 'coco-5k').shape == (10, 6)
    raises(lambda: _paper_table('extended'), 'the paper prints no extended figures')


def test_side_by_side_difference_with_the_papers_figures(released, loaded):
    res = evaluate_outputs([loaded['SCAN', 'coco-5k'], loaded['UCCH', 'coco-5k']], get_conventions('default', folds=5),
                           granularities=['instance'], metrics={'instance': ('R@1', 'R@5')})
    # the fixture's 50 COCO images make 5 folds of 10 (COCO's 5,000 make 5 of 1,000): the columns are what matter here
    paper = pd.DataFrame([('SCAN', 'coco-5k', 'i2t', 'instance', 'R@K', '1', 44.9, 'Table 2'),
                          ('SCAN', 'coco-5k', 't2i', 'instance', 'R@K', '5', 62.8, 'Table 2'),
                          ('UCCH', 'coco-5k', 'i2t', 'instance', 'R@K', '1', 6.2, 'Table 2')], columns=PAPER_FIGURES.columns)
    t = side_by_side(res, 'coco-5k', metrics=['R@1', 'R@5'], paper=paper)
    assert list(t.columns[:4]) == [('i2t', 'R@1', 'measured'), ('i2t', 'R@1', '1K (5-fold)'), ('i2t', 'R@1', 'paper'),
                                   ('i2t', 'R@1', 'Δ')]
    assert [c[:2] for c in t.columns[::4]] == [('i2t', 'R@1'), ('i2t', 'R@5'), ('t2i', 'R@1'), ('t2i', 'R@5')]
    for model, d, metric, p in (('SCAN', 'i2t', 'R@1', 44.9), ('SCAN', 't2i', 'R@5', 62.8), ('UCCH', 'i2t', 'R@1', 6.2)):
        measured = res.get(metric, d, 'instance', model, 'coco-5k')
        assert t.loc[model, (d, metric, 'measured')] == measured
        assert t.loc[model, (d, metric, 'paper')] == p
        assert t.loc[model, (d, metric, 'Δ')] == pytest.approx(measured - p, abs=1e-12)
    assert math.isnan(t.loc['UCCH', ('t2i', 'R@5', 'Δ')]) and math.isnan(t.loc['SCAN', ('i2t', 'R@5', 'paper')])
    fold = res.table[res.table.dataset.str.contains('5-fold mean') & (res.table.model == 'SCAN') & (res.table.direction == 'i2t')
                     & (res.table.metric == 'R@K') & (res.table.k == '1')].value.item()
    assert t.loc['SCAN', ('i2t', 'R@1', '1K (5-fold)')] == fold
    # with the paper's own table (the default), the paper column holds the printed figure
    assert side_by_side(res, 'coco-5k', metrics=['R@1']).loc['SCAN', ('i2t', 'R@1', 'paper')] == 44.9
    raises(lambda: side_by_side(res, 'coco-5k', metrics=['R@3']), "`metrics` ['R@3'] are not in the results")


def test_conventions_table_differences(loaded):
    outs = [loaded['SCAN', 'coco-5k'], loaded['UCCH', 'coco-5k'], loaded['BLIP-2', 'coco-5k']]
    kw = dict(metrics={'category': ('mAP@10', 'mAP@N')}, granularities=['category'])
    runs = {'default': evaluate_outputs(outs, **kw), 'ucch': evaluate_outputs(outs, get_conventions('ucch', units='percent'), **kw),
            'trec_eval': evaluate_outputs(outs, get_conventions('trec_eval', units='percent'), **kw)}
    t = _conventions_table(runs, 'coco-5k', ['mAP@10', 'mAP@N'])
    assert list(t.columns.get_level_values(1)[:5]) == ['default', 'ucch', 'Δ ucch', 'trec_eval', 'Δ trec_eval']
    for (model, d) in t.index:
        for m in ('mAP@10', 'mAP@N'):
            for p in ('ucch', 'trec_eval'):
                want = runs[p].get(m, d, 'category', model, 'coco-5k') - runs['default'].get(m, d, 'category', model, 'coco-5k')
                got = t.loc[(model, d), (m, f'Δ {p}')]
                assert (math.isnan(want) and math.isnan(got)) or got == pytest.approx(want, abs=1e-12)
    assert math.isnan(t.loc[('BLIP-2', 'i2t'), ('mAP@N', 'default')])          # n/a past the rerank depth, in every column
    raises(lambda: _conventions_table(runs, 'coco-1k', ['mAP@10']), "holds no category results for data set 'coco-1k'")


def test_no_paper_column_beside_a_stand_in():
    split = EvaluationSplit.uniform(30, 5, name='coco-5k')
    rng = np.random.default_rng(0)
    o = ModelOutput('stand-in: x (embeddings)', 'coco-5k', 'FG', 'embeddings', split,
                    {'images': rng.standard_normal((30, 8)), 'captions': rng.standard_normal((150, 8))})
    t = side_by_side(o.evaluate(), 'coco-5k')
    assert set(t.columns.get_level_values(2)) == {'measured'}


def test_query_database_is_category_retrieval():
    rng = np.random.default_rng(3)
    L = rng.random((150, 5)) < .3; L[L.sum(1) == 0, 1] = True
    q, g = rng.standard_normal((150, 6)), rng.standard_normal((150, 6))
    a = evaluate_query_database(QueryDatabase(L, L, 'toy', 'i2t'), q, g)
    b = evaluate(EvaluationSplit.uniform(150, 1, L, 'toy'), images=q, captions=g, directions=['i2t'],
                 granularities=['category'], progress=False)
    np.testing.assert_allclose(a.table.value.to_numpy(), b.table.value.to_numpy())
    c = evaluate_query_database(QueryDatabase(L[:40], L[40:], 'qd', 't2t'), q[:40], g[40:], metrics=['mAP@N', 'P@10'],
                                conventions='ucch')
    assert set(c.table.direction) == {'t2t'} and 'preset=ucch' in c.table.convention.iloc[0]
    raises(lambda: evaluate_query_database(QueryDatabase(L, L), q[:3], g), '`queries` has 3 rows')
    raises(lambda: evaluate_query_database(EvaluationSplit.uniform(3, 1), q, g), '`split` must be a QueryDatabase', exc=TypeError)
    raises(lambda: ModelOutput('m', 'd', 'FG', 'embeddings', QueryDatabase(L, L), {'images': q, 'captions': g}),
           "needs `scores` with keys ['database', 'queries']")


def test_rerank_matrices():
    F = np.array([[3., 1, 2, 0], [0, 5, 1, 2]], np.float32)
    R = np.full_like(F, .5)
    i2t, t2i = _lavis_rerank(F, R, 2, fill=-1)
    np.testing.assert_allclose(i2t, [[3.5, -1, 2.5, -1], [-1, 5.5, -1, 2.5]])
    np.testing.assert_allclose(t2i, F.T + .5)                     # each caption's top 2 of 2 images
    raises(lambda: _lavis_rerank(F, R[:, :3], 2), 'must have the same shape')


def test_text_standins_on_real_captions():
    from fico_itr.data import coco5k_split
    split, _ = coco5k_split().subset(np.arange(200), 'coco-200')
    outs = _text_standin_outputs(split, dim=48, bits=(8, 32), rerank_depth=16)
    assert [o.kind for o in outs] == ['similarity', 'i2t_t2i', 'embeddings', 'hash_codes', 'hash_codes']
    assert all(o.model.startswith('stand-in: ') and o.paper_model is None and o.dataset == 'coco-200 text stand-in'
               for o in outs)
    assert outs[1].rerank_depth == 16 and outs[3].measure == 'hamming' and outs[3].scores['images'].n_bits == 8
    res = evaluate_outputs(outs, granularities=['instance'])
    r1 = {o.model: res.get('R@1', 'i2t', model=o.model) for o in outs}
    assert r1['stand-in: TF-IDF cosine (similarity matrix)'] > r1['stand-in: ITQ 8-bit (hash codes)']
    assert math.isnan(res.get('MeanR', 'i2t', model=outs[1].model))            # past the rerank depth
    raises(lambda: _text_standin_outputs(EvaluationSplit.uniform(4, 2)), 'needs caption texts')


@pytest.mark.skipif(not (DATA / 'mirflickr25k').is_dir(), reason='MIRFlickr-25K reference files not present')
def test_mirflickr_standin_protocol():
    mir = load_mirflickr25k(DATA / 'mirflickr25k')
    hs = hashing_split(mir, 2000, 10000, seed=0)
    outs = _mirflickr_standin_outputs(mir, hs, dim=64, bits=(16,))
    assert [o.model for o in outs] == ['stand-in: tags TF-IDF+SVD 64-D (embeddings)', 'stand-in: tags ITQ 16-bit (hash codes)']
    qd = outs[0].split
    assert (qd.n_queries, qd.n_database, qd.direction) == (2000, 18015, 't2t')
    np.testing.assert_array_equal(qd.query_labels, mir.labels[hs.query])
    r = outs[1].evaluate(metrics=['mAP@100'])
    assert 40 < r.get('mAP@100', 't2t') < 100
    ties = outs[1].tie_report(reported=r, metrics=['mAP@100'])
    assert ties.reported.iloc[0] == r.get('mAP@100', 't2t') and ties.spread.iloc[0] > 0    # 16-bit codes tie


def test_plots_list_every_model():
    import matplotlib; matplotlib.use('Agg')
    rng = np.random.default_rng(0)
    split = EvaluationSplit.uniform(40, 5, rng.random((40, 4)) < .4, 'toy')
    I, C = rng.standard_normal((40, 8)), rng.standard_normal((200, 8))
    S = I @ C.T
    outs = [ModelOutput(f'model {i}', 'toy', 'FG' if i % 2 else 'CG', 'similarity', split, {'similarity': S + i})
            for i in range(11)]
    outs.append(ModelOutput('reranker', 'toy', 'FG', 'i2t_t2i', split, {'i2t_similarity': S, 't2i_similarity': S.T},
                            rerank_depth=10))
    res = evaluate_outputs(outs, metrics={'instance': ('R@1', 'R@5', 'R@10'), 'category': ('mAP@10', 'PR')})
    fig = plot_pr_curves(res, 'twelve models')
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) == 12 and labels[-1] == 'reranker: no curve (rerank depth 10)'
    assert len({tuple(np.round(line.get_color(), 3)) if not isinstance(line.get_color(), str) else line.get_color()
                for line in fig.axes[0].get_lines()}) == 11          # eleven curves, eleven colours
    fig2 = plot_recall_at_k(res, 'R@K')
    assert len(fig2.axes) == 2
    raises(lambda: plot_pr_curves(Results(res.table[res.table.metric != 'PR']), 't'), 'no PR points')
