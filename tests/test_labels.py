"""fico_itr.labels on fixtures in the real formats and on the project's real reference data.

* COCO instances files: a tiny fixture in the real layout, written here (COCO's real labels of the 5K test images
  are not available offline).
* Caption keywords: rules on hand-written captions; label statistics on the real COCO 5K and Flickr30K 1K captions.
* Query2Label: .npy / .npz / .mat (v5 and v7.3) outputs; the adapter's errors and its pipeline with a stand-in model.
* Extended positives: eccv-caption 0.1.0's own data files (consistency, caption-id order), and a cross-check of the
  engine's 'eccv' preset against eccv-caption's `Metrics` on the real 5K split with seeded random scores.

Real files: the folder `shared` beside the repository (shared/data/README.md says what each is).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from fico_itr.core import EvaluationSplit, get_conventions
from fico_itr.evaluate import evaluate
from fico_itr.labels import (COCO_CATEGORIES, COCO_CLASSES, CAPTION_TERMS, CaptionKeywordLabeler, ECCV_KINDS,
                             ExtendedPositives, LabelGenerator, Query2LabelAdapter, coco5k_caption_ids,
                             coco_labels_from_instances, eccv_caption_data_dir, eccv_positives, label_agreement,
                             label_statistics, load_eccv_caption_data, load_query2label)

# eccv_caption warns at import when the optional ujson is missing: harmless here
pytestmark = pytest.mark.filterwarnings('ignore:failed to import `ujson`:UserWarning')

from _helpers import DATA, raises
COCO, F30K = DATA / 'coco_karpathy_test', DATA / 'f30k_karpathy_test'
needs_data = pytest.mark.skipif(not COCO.is_dir(), reason=f'reference data not found at {DATA}')


def read_vse(folder, prefix):
    "The VSE/SCAN text layout: captions, per-line image ids, cap2img and one image id per image."
    caps = Path(folder, f'{prefix}_caps.txt').read_text().splitlines()
    line_ids = np.array(Path(folder, f'{prefix}_ids.txt').read_text().split(), dtype=np.int64)
    assert len(caps) == len(line_ids)
    starts = np.flatnonzero(np.r_[True, line_ids[1:] != line_ids[:-1]])
    cap2img = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(line_ids)]))
    return caps, line_ids, cap2img, line_ids[starts]


@pytest.fixture(scope='module')
def coco5k():
    caps, line_ids, c2i, image_ids = read_vse(COCO, 'testall')
    assert (np.bincount(c2i) == 5).all()
    return EvaluationSplit(c2i, name='coco-5k', image_ids=image_ids, captions=caps), line_ids


def names(row): return sorted(COCO_CLASSES[j] for j in np.flatnonzero(row))


# ----------------------------------------------------------------------------------------------------------------------
# COCO categories and instances files
# ----------------------------------------------------------------------------------------------------------------------
def test_coco_categories():
    assert len(COCO_CATEGORIES) == 80 and COCO_CATEGORIES[0] == (1, 'person') and COCO_CATEGORIES[-1] == (90, 'toothbrush')
    ids = [c for c, _ in COCO_CATEGORIES]
    assert ids == sorted(ids) and len(set(ids)) == 80 and max(ids) == 90
    assert sorted(set(range(1, 91)) - set(ids)) == [12, 26, 29, 30, 45, 66, 68, 69, 71, 83]
    assert COCO_CLASSES[COCO_CLASSES.index('dining table')] == 'dining table' and COCO_CLASSES.index('dining table') == 60
    assert set(CAPTION_TERMS) == set(COCO_CLASSES), 'every class has caption terms'


def write_instances(path, images, annotations, categories=COCO_CATEGORIES):
    anns = [dict(id=k + 1, image_id=i, category_id=c, bbox=[1.0, 2.0, 3.0, 4.0], area=12.0, iscrowd=crowd,
                 segmentation=[[1, 2, 3, 4, 5, 6]]) for k, (i, c, crowd) in enumerate(annotations)]
    Path(path).write_text(json.dumps(dict(
        info={'year': 2014}, licenses=[], annotations=anns,
        images=[dict(id=i, file_name=f'COCO_val2014_{i:012d}.jpg', width=640, height=480) for i in images],
        categories=[dict(id=c, name=n, supercategory='s') for c, n in categories])))


@pytest.fixture()
def instances(tmp_path):
    train, val = tmp_path / 'instances_train2014.json', tmp_path / 'instances_val2014.json'
    write_instances(train, [1, 2], [(1, 1, 0), (1, 18, 0), (1, 4, 0), (1, 18, 0), (2, 67, 0), (2, 47, 0), (2, 1, 0)])
    write_instances(val, [5, 7, 9], [(5, 90, 0), (5, 81, 0), (7, 1, 1)])
    return train, val


def test_instances_join_order_and_crowd(instances):
    train, val = instances
    L = coco_labels_from_instances([train, val], np.array([7, 5, 2, 1, 2]))
    assert L.shape == (5, 80) and L.dtype == bool
    assert [names(r) for r in L] == [['person'], ['sink', 'toothbrush'], ['cup', 'dining table', 'person'],
                                     ['dog', 'motorcycle', 'person'], ['cup', 'dining table', 'person']]
    # one path as a string works, and float ids that are whole numbers are accepted
    assert coco_labels_from_instances(str(val), [5.0])[0, 79]


def test_instances_missing_and_unlabelled(instances):
    train, val = instances
    raises(lambda: coco_labels_from_instances([train, val], [1, 12345, 54321]), 'in none of the files',
           str(train), str(val), '2 of `image_ids`', 'first: 12345')
    raises(lambda: coco_labels_from_instances([train], [5]), str(train), 'train2014 and val2014')
    raises(lambda: coco_labels_from_instances([train, val], [9]), 'no object annotation', 'allow_unlabelled=True')
    L = coco_labels_from_instances([train, val], [9, 1], allow_unlabelled=True)
    assert not L[0].any() and L[1].sum() == 3


def test_instances_bad_files(tmp_path, instances):
    bad = tmp_path / 'bad.json'
    write_instances(bad, [1], [(1, 91, 0)])
    raises(lambda: coco_labels_from_instances(bad, [1]), str(bad), 'category_id 91')
    renamed = tmp_path / 'renamed.json'
    write_instances(renamed, [1], [(1, 1, 0)], categories=[(1, 'human')])
    raises(lambda: coco_labels_from_instances(renamed, [1]), "names category 1 'human'", "'person'")
    caps = tmp_path / 'captions_val2014.json'
    caps.write_text(json.dumps({'images': [{'id': 1}], 'annotations': [{'image_id': 1, 'id': 7, 'caption': 'a dog'}]}))
    raises(lambda: coco_labels_from_instances(caps, [1]), 'without image_id/category_id')
    raises(lambda: coco_labels_from_instances(tmp_path / 'none.json', [1]), 'does not exist', exc=FileNotFoundError)
    raises(lambda: coco_labels_from_instances([], [1]), '`instances_paths` is empty')
    raises(lambda: coco_labels_from_instances(instances[0], ['a']), "`image_ids[0]` is 'a' (str): ids must be integers")


# ----------------------------------------------------------------------------------------------------------------------
# caption keywords
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('caption, expected', [
    ("A MAN riding a Motorbike.", ['motorcycle', 'person']),
    ("Men and women and children", ['person']),
    ("two girls, a boy and some kids", ['person']),
    ("A player swings", ['person']),
    ("A family eating at the table", ['dining table', 'person']),
    ("a cellphone, a cell phone and a phone", ['cell phone']),
    ("a motor bike and a dirt bike", ['motorcycle']),
    ("a bike and a bicycle", ['bicycle']),
    ("A plane and a jet above an airliner", ['airplane']),
    ("A television and a TV and a T.V.", ['tv']),
    ("A sofa and a couch", ['couch']),
    ("A hot-dog, a hotdog and hot dogs", ['hot dog']),
    ("a teddy bear", ['teddy bear']),
    ("a polar bear", ['bear']),
    ("The cart carries pineapples and carrots", ['carrot']),
    ("Scattered", []),
    ("Buses and busses and a bus", ['bus']),
    ("Knives, a knife, forks and spoons", ['fork', 'knife', 'spoon']),
    ("A baby elephant with its mother", ['elephant', 'person']),   # 'mother' alone is a person: a known limit
    ("A baby in a high chair", ['chair', 'person']),
    ("Cows in a field with no people", ['cow']),
    ("A room without a television", []),
    ("A couple of zebras", ['zebra']),
    ("A young couple", ['person']),
    ("A train on the train tracks", ['train']),
    ("People waiting at a bus stop", ['person']),
    ("An orange cat and three oranges", ['cat', 'orange']),
    ("A surfer rides a wave", ['person', 'surfboard']),
    ("A skateboarder does a trick", ['person', 'skateboard']),
    ("A salmon on a bed of rice", []),
    ("A man wearing a ball cap", ['person']),
    ("A laptop, a computer mouse and a keyboard on a desk", ['keyboard', 'laptop', 'mouse']),
    ("A stuffed animal on a bed", ['bed', 'teddy bear']),
    ("A fridge next to a stove and a microwave oven", ['microwave', 'oven', 'refrigerator']),
    ("A glass of wine and a bottle", ['bottle', 'wine glass']),
    ("A traffic light above a stop sign near a fire hydrant", ['fire hydrant', 'stop sign', 'traffic light']),
])
def test_keyword_rules(caption, expected):
    assert names(CaptionKeywordLabeler().caption_labels([caption])[0]) == expected


def test_keyword_options_and_errors():
    kw = CaptionKeywordLabeler()
    assert isinstance(kw, LabelGenerator)
    assert kw.explain("no dogs and a cat") == [('dogs', 'negated'), ('cat', ['cat'])]
    assert kw.explain("a couple of cats") == [('couple of', []), ('cats', ['cat'])]
    desk = CaptionKeywordLabeler(extra_terms={'dining table': 'desk'})
    assert names(desk.caption_labels(['two desks'])[0]) == ['dining table']
    assert names(CaptionKeywordLabeler(extra_blockers=['dog park']).caption_labels(['a dog park'])[0]) == []
    only_cats = CaptionKeywordLabeler(terms={'cat': ['cat']})
    assert names(only_cats.caption_labels(['a cat and a dog'])[0]) == ['cat']
    raises(lambda: CaptionKeywordLabeler(extra_terms={'people': ['folks']}), "unknown classes ['people']")
    for bad in (0, -1, 1.5, True):
        raises(lambda: CaptionKeywordLabeler(min_captions=bad), '`min_captions` must be an int >= 1')
    raises(lambda: kw.caption_labels('a cat'), 'got one string', exc=TypeError)
    raises(lambda: kw.caption_labels(['a cat', 3]), '`captions[1]` is int', exc=TypeError)
    raises(lambda: kw(EvaluationSplit.uniform(2, 1)), 'has no caption texts')
    raises(lambda: kw('not a split'), '`split` must be an EvaluationSplit', exc=TypeError)


def test_keyword_min_captions_and_label_split():
    caps = ['a dog', 'a dog and a cat', 'a man', 'a cat', 'a cat', 'a bus']
    split = EvaluationSplit(np.array([0, 0, 0, 1, 1, 1]), captions=caps)
    union, two, three = (CaptionKeywordLabeler(min_captions=k)(split) for k in (1, 2, 3))
    assert [names(r) for r in union] == [['cat', 'dog', 'person'], ['bus', 'cat']]
    assert [names(r) for r in two] == [['dog'], ['cat']]
    assert not three.any()
    labelled = CaptionKeywordLabeler().label_split(split)
    assert labelled.labels.shape == (2, 80) and labelled.captions == caps and split.labels is None


@needs_data
def test_keyword_statistics_on_real_captions(coco5k):
    "Label statistics on the real COCO 5K and Flickr30K 1K test captions (regression bounds around measured values)."
    split, _ = coco5k
    L = CaptionKeywordLabeler()(split)
    s = label_statistics(L)
    assert s['images'] == 5000 and s['distinct classes used'] == 80
    assert abs(s['labels per image (mean)'] - 2.041) < 0.05 and s['labels per image (median)'] == 2.0
    assert abs(s["share with 'person'"] - 0.513) < 0.01 and s['images without a label'] < 0.03
    assert s['most frequent'].startswith('person 51.3%, dining table 12.0%')
    L2 = CaptionKeywordLabeler(min_captions=2)(split)
    assert (L2 <= L).all() and abs(L2[:, 0].mean() - 0.458) < 0.01
    caps, _, c2i, _ = read_vse(F30K, 'test')
    F = CaptionKeywordLabeler()(EvaluationSplit(c2i, captions=caps))
    f = label_statistics(F)
    assert f['images'] == 1000 and abs(f["share with 'person'"] - 0.934) < 0.01
    assert abs(f['labels per image (mean)'] - 1.564) < 0.05 and f['images without a label'] < 0.01
    raises(lambda: label_statistics(np.zeros((3, 4), bool)), '4 columns but `classes` names 80')


# ----------------------------------------------------------------------------------------------------------------------
# agreement
# ----------------------------------------------------------------------------------------------------------------------
def test_label_agreement_by_hand():
    ref = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
    pred = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
    a = label_agreement(pred, ref, classes=['a', 'b', 'c'])
    pc = a.per_class.set_index('class')
    assert pc.loc['a', ['ref', 'pred', 'tp']].tolist() == [2, 3, 2]
    np.testing.assert_allclose(pc.loc['a', ['precision', 'recall', 'f1']].astype(float), [2 / 3, 1, 0.8])
    np.testing.assert_allclose(pc.loc['b', ['precision', 'recall', 'f1']].astype(float), [1, 0.5, 2 / 3])
    assert pc.loc['c', ['precision', 'recall', 'f1']].isna().all()          # absent from both: left out of macro F1
    np.testing.assert_allclose([a.micro_precision, a.micro_recall, a.micro_f1], [3 / 4, 3 / 4, 3 / 4])
    np.testing.assert_allclose(a.macro_f1, (0.8 + 2 / 3) / 2)
    assert a.summary()['classes compared'] == 2 and a.n_items == 4
    raises(lambda: label_agreement(pred[:, :2], ref), '`pred` has shape (4, 2) but `ref` has shape (4, 3)')
    raises(lambda: label_agreement(pred, ref, classes=['a']), '`classes` names 1 classes but the labels have 3')
    raises(lambda: label_agreement(pred * 2, ref), '`pred` must be multi-hot')


def test_label_agreement_keywords_vs_instances_fixture(instances):
    "The caption-keyword labels of four fixture images against their COCO instances labels."
    train, val = instances
    caps = ["A man riding a motorbike with his dog.", "A man and his dog on a motorcycle in a car park.",
            "A cup of coffee on a table.", "A mug next to a laptop at the dining table.",
            "A bathroom sink with a toothbrush.", "A sink next to a toilet.",
            "A crowd gathers outside.", "People in the street."]
    split = EvaluationSplit(np.repeat(np.arange(4), 2), image_ids=[1, 2, 5, 7], captions=caps)
    ref = coco_labels_from_instances([train, val], split.image_ids)
    a = label_agreement(CaptionKeywordLabeler()(split), ref)
    pc = a.per_class.set_index('class')
    assert int(pc.tp.sum()) == 8 and int((pc.pred - pc.tp).sum()) == 3 and int((pc.ref - pc.tp).sum()) == 1
    assert sorted(pc.index[(pc.pred > 0) & (pc.tp == 0)]) == ['car', 'laptop', 'toilet']
    np.testing.assert_allclose([a.micro_precision, a.micro_recall, a.micro_f1], [8 / 11, 8 / 9, 0.8])
    np.testing.assert_allclose(a.macro_f1, 6.8 / 10)    # 10 classes in pred or ref: 6 at F1 1, person 0.8, 3 at 0


# ----------------------------------------------------------------------------------------------------------------------
# Query2Label
# ----------------------------------------------------------------------------------------------------------------------
def test_load_query2label_formats(tmp_path):
    rng = np.random.default_rng(3)
    P = rng.random((7, 80)); P[0, :3] = [0.5, 0.50001, 0.49999]
    np.save(tmp_path / 'p.npy', P)
    assert (load_query2label(tmp_path / 'p.npy') == (P > 0.5)).all()
    assert load_query2label(tmp_path / 'p.npy')[0, :3].tolist() == [False, True, False]
    assert (load_query2label(tmp_path / 'p.npy', threshold=0.8) == (P > 0.8)).all()
    np.savez(tmp_path / 'one.npz', P); np.savez(tmp_path / 'two.npz', labels=P, names=np.arange(3))
    assert (load_query2label(tmp_path / 'one.npz') == (P > 0.5)).all()
    raises(lambda: load_query2label(tmp_path / 'two.npz'), "holds 2 arrays ('labels', 'names')", 'pass `key`')
    raises(lambda: load_query2label(tmp_path / 'two.npz', key='LAll'), "`key` 'LAll' is not in")
    hard = (P > 0.3).astype(np.uint8)
    scipy.io.savemat(tmp_path / 'l.mat', {'LAll': hard})
    assert (load_query2label(tmp_path / 'l.mat', threshold=0.9) == hard.astype(bool)).all()   # 0/1 kept
    np.save(tmp_path / 'f.npy', hard.astype(np.float32))
    assert (load_query2label(tmp_path / 'f.npy') == hard.astype(bool)).all()
    np.save(tmp_path / 'logits.npy', np.log(P / (1 - P)))
    raises(lambda: load_query2label(tmp_path / 'logits.npy'), 'look', 'like logits', 'logits=True')
    assert (load_query2label(tmp_path / 'logits.npy', logits=True)[1:] == (P > 0.5)[1:]).all()
    np.save(tmp_path / 't.npy', P.T)
    raises(lambda: load_query2label(tmp_path / 't.npy'), '80 classes were expected', 'it looks transposed')
    assert load_query2label(tmp_path / 't.npy', n_classes=None).shape == (80, 7)
    np.save(tmp_path / 'nan.npy', np.full((2, 80), np.nan))
    raises(lambda: load_query2label(tmp_path / 'nan.npy'), 'NaN')
    (tmp_path / 'x.csv').write_text('1,0')
    raises(lambda: load_query2label(tmp_path / 'x.csv'), "unknown array format '.csv'")
    raises(lambda: load_query2label(tmp_path / 'p.npy', threshold=1.5), '`threshold` must be in (0, 1)')
    raises(lambda: load_query2label(tmp_path / 'absent.npy'), 'does not exist', exc=FileNotFoundError)


def test_load_query2label_mat73(tmp_path):
    h5py = pytest.importorskip('h5py')
    L = (np.random.default_rng(4).random((6, 80)) > 0.7).astype(np.uint8)
    with h5py.File(tmp_path / 'v73.mat', 'w', userblock_size=512) as f:
        f.create_dataset('LAll', data=L.T)           # MATLAB stores arrays column-major
    with open(tmp_path / 'v73.mat', 'r+b') as fh:    # MATLAB's 128-byte text header in the userblock
        fh.write(b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .'.ljust(116)
                 + b'\x00' * 8 + b'\x00\x02IM')
    assert (load_query2label(tmp_path / 'v73.mat') == L.astype(bool)).all()


class MeanColour(torch.nn.Module):
    "Stand-in for Query2Label: logits of person from the mean red, of car from the mean green."
    def forward(self, x):
        out = torch.full((len(x), 80), -10.0)
        out[:, 0], out[:, 2] = 20 * (x[:, 0].mean((1, 2)) - 0.5), 20 * (x[:, 1].mean((1, 2)) - 0.5)
        return out


def test_query2label_adapter(tmp_path):
    from PIL import Image
    w = tmp_path / 'q2l.pth'
    raises(lambda: Query2LabelAdapter(w, tmp_path), str(w), 'does not download', exc=FileNotFoundError)
    w.write_bytes(b'x')
    raises(lambda: Query2LabelAdapter(w, tmp_path), "model code is not available", 'build_model=', exc=ImportError)
    raises(lambda: Query2LabelAdapter(w, tmp_path / 'nowhere', build_model=lambda p: MeanColour()), 'is not a folder',
           exc=FileNotFoundError)
    for name, rgb in (('a/red.png', (250, 10, 10)), ('a/green.jpg', (10, 250, 10)), ('a/grey.png', (128, 40, 128))):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new('RGB', (40, 30), rgb).save(tmp_path / name)
    split = EvaluationSplit(np.array([0, 1, 2, 2]), image_files=['a/red.png', 'a/green.jpg', 'a/grey.png'])
    built = []
    q2l = Query2LabelAdapter(w, tmp_path, build_model=lambda p: built.append(p) or MeanColour(), mean=(0, 0, 0),
                             std=(1, 1, 1), image_size=8, batch_size=2)
    assert [names(r) for r in q2l(split)] == [['person'], ['car'], ['person']]
    assert q2l.scores(split).shape == (3, 80) and built == [w]            # the model is built once
    assert q2l.label_split(split).labels[:, 0].tolist() == [True, False, True]
    missing = EvaluationSplit(np.arange(2), image_files=['a/red.png', 'a/blue.png'])
    raises(lambda: q2l(missing), '1 of the split', 'a/blue.png', exc=FileNotFoundError)
    wrong = Query2LabelAdapter(w, tmp_path, build_model=lambda p: torch.nn.Flatten(), image_size=4)
    raises(lambda: wrong(split), 'expected (3, 80) logits')


# ----------------------------------------------------------------------------------------------------------------------
# eccv-caption data and caption ids
# ----------------------------------------------------------------------------------------------------------------------
def _transpose(d):
    out = {}
    for k, vs in d.items():
        for v in vs: out.setdefault(v, set()).add(k)
    return out


def test_eccv_caption_data_consistency():
    "What the package's files hold: counts, and image_to_caption vs caption_to_image consistency per kind."
    orig, cxc, eccv = (load_eccv_caption_data(k) for k in ECCV_KINDS)
    test_ids = np.load(eccv_caption_data_dir() / 'coco_test_ids.npy')
    all_caps, all_imgs = set(test_ids.tolist()), set(orig['i2t'])
    assert len(test_ids) == 25000 == len(all_caps) and len(all_imgs) == 5000
    # original: 5 captions per image, one image per caption, the two files transposes of each other
    assert {len(v) for v in orig['i2t'].values()} == {5} and {len(v) for v in orig['t2i'].values()} == {1}
    assert set(orig['t2i']) == all_caps
    assert _transpose(orig['i2t']) == {c: set(v) for c, v in orig['t2i'].items()}
    # cxc: every image, 24,972 captions; the two files are transposes; 29 images lack one of their own captions
    assert set(cxc['i2t']) == all_imgs and len(cxc['t2i']) == 24972 and set(cxc['t2i']) <= all_caps
    assert _transpose(cxc['i2t']) == {c: set(v) for c, v in cxc['t2i'].items()}
    assert sum(not set(orig['i2t'][i]) <= set(v) for i, v in cxc['i2t'].items()) == 29
    # eccv: a subset of the queries; positives are 5K ids except two caption ids; t2i always holds the own image
    assert len(eccv['i2t']) == 1261 and len(eccv['t2i']) == 1332
    assert set(eccv['i2t']) <= all_imgs and set(eccv['t2i']) <= all_caps
    outside = sorted(c for v in eccv['i2t'].values() for c in v if c not in all_caps)
    assert outside == [144675, 467259]
    assert all(x in all_imgs for v in eccv['t2i'].values() for x in v)
    assert all(orig['t2i'][c][0] in v for c, v in eccv['t2i'].items())
    # the two eccv files are not transposes of each other: they judge different query sets
    tr = _transpose(eccv['i2t'])
    assert sum(tr.get(c, set()) == set(v) for c, v in eccv['t2i'].items()) < 100
    raises(lambda: load_eccv_caption_data('pm'), "unknown kind 'pm'")
    raises(lambda: eccv_caption_data_dir('/nonexistent/folder'), 'is not a folder', exc=FileNotFoundError)


@needs_data
def test_coco5k_caption_ids_order(coco5k):
    split, line_ids = coco5k
    orig = load_eccv_caption_data('original')
    test_ids = np.load(eccv_caption_data_dir() / 'coco_test_ids.npy')
    ids = coco5k_caption_ids(split.image_ids)
    # the package's caption order: consecutive groups of 5 in testall_ids.txt's image order, ascending within an image
    assert (ids == test_ids).all()
    assert [orig['t2i'][c][0] for c in test_ids] == line_ids.tolist()
    g = ids.reshape(-1, 5)
    assert (np.diff(g, axis=1) > 0).all()
    assert all(set(row) == set(orig['i2t'][int(i)]) for row, i in zip(g.tolist(), split.image_ids))
    # the listed order of original_image_to_caption.json is a different order (ascending for 37 images only)
    listed = np.array([orig['i2t'][int(i)] for i in split.image_ids])
    assert int((np.diff(listed, axis=1) > 0).all(1).sum()) == 37
    # the first image, checked against public copies of Karpathy's dataset_coco.json (sentids and raw texts)
    assert ids[:5].tolist() == [770337, 771687, 772707, 776154, 781998]
    assert split.captions[:3] == ['A man with a red helmet on a small moped on a dirt road .',
                                  'Man riding a motor bike on a dirt road on the countryside .',
                                  'A man riding on the back of a motorcycle .']
    # any order and subset of images works
    sub = split.image_ids[[10, 3]]
    assert coco5k_caption_ids(sub).tolist() == ids[50:55].tolist() + ids[15:20].tolist()
    raises(lambda: coco5k_caption_ids(line_ids), 'repeats 5000 ids', 'line_ids[::5]')
    raises(lambda: coco5k_caption_ids([391895, 391895, 60623]), 'repeats 1 ids (first: 391895)')
    assert 1 not in set(split.image_ids.tolist())
    raises(lambda: coco5k_caption_ids([391895, 1]), 'not COCO Karpathy 5K test images (first: 1)')


@needs_data
def test_eccv_positives_mapping(coco5k):
    split, _ = coco5k
    cap_ids = coco5k_caption_ids(split.image_ids)
    data = {k: load_eccv_caption_data(k) for k in ECCV_KINDS}
    rng = np.random.default_rng(5)
    # a shuffled subset: 700 images and the captions of 900 images, in random orders
    imgs = split.image_ids[rng.permutation(5000)[:700]]
    caps = cap_ids[rng.permutation(25000)][:4500]
    for kind in ECCV_KINDS:
        pos = eccv_positives(imgs, caps, kind)
        assert isinstance(pos, ExtendedPositives) and set(pos) == {'i2t', 't2i'}
        assert len(pos['i2t']) == 700 and len(pos['t2i']) == 4500
        n_drop = {'i2t': 0, 't2i': 0}
        for d, queries, gallery in (('i2t', imgs, caps), ('t2i', caps, imgs)):
            gset = {int(g): k for k, g in enumerate(gallery)}
            for q, qid in enumerate(queries):
                listed = data[kind][d].get(int(qid))
                assert pos.covered[d][q] == (listed is not None)
                want = sorted(gset[x] for x in (listed or ()) if x in gset)
                assert pos[d][q].tolist() == want
                n_drop[d] += len(listed or ()) - len(want)
        assert pos.n_dropped == n_drop
    full = eccv_positives(split.image_ids, cap_ids, 'eccv', missing='original')
    assert full.covered['i2t'].sum() == 1261
    unc = np.flatnonzero(~full.covered['t2i'])[:3]
    assert [full['t2i'][k].tolist() for k in unc] == [[split.cap2img[k]] for k in unc]
    raises(lambda: eccv_positives(split.image_ids, cap_ids, 'coco'), "unknown kind 'coco'")
    raises(lambda: eccv_positives(split.image_ids, cap_ids, missing='zero'), "`missing` must be 'empty' or 'original'")
    raises(lambda: eccv_positives(np.r_[split.image_ids, 391895], cap_ids), '`image_ids` repeats 1 ids')
    # image ids passed as caption ids: 137 of the 5,000 image ids happen to be caption ids too, the rest are not
    raises(lambda: eccv_positives(split.image_ids, split.image_ids), '4863 of `caption_ids` are not COCO 5K test caption ids',
           'coco5k_caption_ids(image_ids)')


# ----------------------------------------------------------------------------------------------------------------------
# the engine's 'eccv' preset against eccv-caption's own Metrics on the real 5K split
# ----------------------------------------------------------------------------------------------------------------------
@needs_data
def test_eccv_preset_against_eccv_caption_metrics_on_real_5k(coco5k):
    "R-Precision, mAP@R and R@K of evaluate(..., positives=eccv_positives(...)) == eccv-caption's Metrics on the same rankings."
    from eccv_caption import Metrics
    from eccv_caption._metrics import compute_eccv_metrics
    split, _ = coco5k
    img_ids, cap_ids = split.image_ids, coco5k_caption_ids(split.image_ids)
    S = np.random.default_rng(2024).random((5000, 25000))     # float64 draws: ties are vanishingly rare, checked below
    # eccv-caption takes ranked id lists; its metrics read at most the top max(R, 10) items, so the top 64 suffice
    top = 64
    St = torch.from_numpy(S)
    vi, ii = St.topk(top, dim=1)
    vt, it = St.T.topk(top, dim=1)
    for v in (vi, vt): assert (v[:, :-1] > v[:, 1:]).all(), 'a tie inside the ranked lists'
    i2t = {int(q): cap_ids[row].tolist() for q, row in zip(img_ids, ii.numpy())}
    t2i = {int(q): img_ids[row].tolist() for q, row in zip(cap_ids, it.numpy())}
    gts = {k: load_eccv_caption_data(k) for k in ECCV_KINDS}
    assert max(len(v) for d in ('i2t', 't2i') for v in gts['eccv'][d].values()) <= top
    theirs = Metrics().compute_all_metrics(i2t, t2i, target_metrics=('eccv_r1', 'eccv_map_at_r', 'eccv_rprecision',
                                                                       'coco_5k_recalls', 'cxc_recalls'), Ks=(1, 5, 10))

    skip = get_conventions('eccv', empty='skip')
    pos = eccv_positives(img_ids, cap_ids, 'eccv')
    ours = evaluate(split, S, positives=pos, granularities=['extended'], conventions=skip, progress=False)
    metric_names = {'eccv_rprecision': 'R-Precision', 'eccv_map_at_r': 'mAP@R', 'eccv_r1': 'R@1'}
    for key, metric in metric_names.items():
        # t2i: identical; i2t: eccv-caption counts the two positives outside the 25,000 captions in R, fico-itr drops
        # them (they cannot be ranked), so two of 1,261 queries may differ (by less than 1 each)
        np.testing.assert_allclose(ours.get(metric, 't2i', 'extended'), theirs[key]['t2i'], rtol=1e-12, err_msg=key)
        assert abs(ours.get(metric, 'i2t', 'extended') - theirs[key]['i2t']) <= 2 / 1261, key
    np.testing.assert_allclose(ours.get('R@1', 'i2t', 'extended'), theirs['eccv_r1']['i2t'], rtol=1e-12)
    # with the two outside ids left out of eccv-caption's ground truth too, every number is identical
    in_split = set(cap_ids.tolist())
    gt_i2t = {i: [c for c in v if c in in_split] for i, v in gts['eccv']['i2t'].items()}
    exact = compute_eccv_metrics(i2t, gt_i2t)
    for key, metric in metric_names.items():
        np.testing.assert_allclose(ours.get(metric, 'i2t', 'extended'), exact[key], rtol=1e-12, err_msg=key)

    # COCO 5K (original) and CxC recalls: R@K-only runs are cheap
    for kind, prefix in (('original', 'coco_5k'), ('cxc', 'cxc')):
        res = evaluate(split, S, positives=eccv_positives(img_ids, cap_ids, kind), granularities=['extended'],
                       metrics=['R@1', 'R@5', 'R@10'], conventions=skip, progress=False)
        for K in (1, 5, 10):
            for d in ('i2t', 't2i'):
                np.testing.assert_allclose(res.get(f'R@{K}', d, 'extended'), theirs[f'{prefix}_r{K}'][d], rtol=1e-12,
                                           err_msg=f'{kind} {d} R@{K}')
    inst = evaluate(split, S, granularities=['instance'], conventions='eccv', progress=False)
    for d in ('i2t', 't2i'):
        np.testing.assert_allclose(inst.get('R@1', d, 'instance'), theirs['coco_5k_r1'][d], rtol=1e-12)

    # the 'eccv' preset as shipped: its empty rule decides how uncovered queries count
    preset = evaluate(split, S, positives=pos, granularities=['extended'], conventions='eccv', metrics=['R@1'],
                      progress=False)
    share = {'i2t': 1261 / 5000, 't2i': 1332 / 25000}
    for d in ('i2t', 't2i'):
        scale = 1.0 if get_conventions('eccv').empty == 'skip' else share[d]
        np.testing.assert_allclose(preset.get('R@1', d, 'extended'), theirs['eccv_r1'][d] * scale, rtol=1e-12)


# ----------------------------------------------------------------------------------------------------------------------
# every number right or refused (issue 13): labels checked on every row, positives read as given, ids never rounded
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('value', [0.3, -1.0, 2.0, np.nan])
def test_check_labels_every_row(tmp_path, value):
    "Item 5: a value other than 0/1 at row 120,000 is refused, in an array and in a memmap read in blocks."
    from fico_itr.core import check_labels
    L = np.zeros((130_000, 3), np.float32); L[::7, 0] = 1
    good = check_labels(L, len(L))
    assert good.dtype == bool and (good == (L == 1)).all()
    L[120_000, 1] = value
    frag = 'NaN' if np.isnan(value) else 'at row 120,000, column 1'
    raises(lambda: check_labels(L, len(L)), '`labels`', frag)
    np.save(tmp_path / 'L.npy', L)
    raises(lambda: check_labels(np.load(tmp_path / 'L.npy', mmap_mode='r'), len(L)), '`labels`', frag)
    raises(lambda: EvaluationSplit(np.arange(len(L)), L), '`labels`', frag)   # the split takes the same check


def test_check_labels_memmap_and_dtypes(tmp_path):
    "0/1 labels stored as uint8 in a memmap come back as the same bool matrix; text labels are refused."
    from fico_itr.core import check_labels
    L = (np.random.default_rng(0).random((50_000, 24)) < 0.2)
    np.save(tmp_path / 'L.npy', L.astype(np.uint8))
    assert (check_labels(np.load(tmp_path / 'L.npy', mmap_mode='r'), 50_000) == L).all()
    raises(lambda: check_labels(np.array([['1', '0']]), 1), 'dtype <U1', exc=TypeError)


def positives_example():
    "The issue's example: 20 images x 5 captions, scores peaked on each image's own captions."
    sp = EvaluationSplit.uniform(20, 5)
    S = np.random.default_rng(0).normal(size=(20, 100)) + 3 * np.repeat(np.eye(20), 5, 1)
    as_lists = {'i2t': [list(range(5 * i, 5 * i + 5)) for i in range(20)], 't2i': [[j // 5] for j in range(100)]}
    return sp, S, as_lists


def test_positives_as_dict_sets_and_masks():
    "Item 6: {query: items} is that mapping (i2t R@1 100.0, was 0.0); sets, generators and masks mean the same lists."
    sp, S, lists = positives_example()
    run = lambda pos: evaluate(sp, S, metrics=['R@1'], granularities=['extended'], positives=pos).table
    want = run(lists)
    assert want.set_index('direction').value.to_dict() == {'i2t': 100.0, 't2i': 85.0}
    forms = {'dict': {d: dict(enumerate(v)) for d, v in lists.items()},
             'dict in another order': {d: dict(reversed(list(enumerate(v)))) for d, v in lists.items()},
             'sets': {d: [set(p) for p in v] for d, v in lists.items()},
             'generators': {d: [(x for x in p) for p in v] for d, v in lists.items()},
             'masks': {d: [np.isin(np.arange(100 if d == 'i2t' else 20), p) for p in v] for d, v in lists.items()},
             'repeated items': {d: [p + p for p in v] for d, v in lists.items()}}
    for name, pos in forms.items(): assert run(pos).equals(want), name


def test_positives_refused_forms():
    "Item 6: a dict missing a query, a set of queries, a ragged entry or a short mask are errors naming the accepted forms."
    from fico_itr.ranking import Positives
    raises(lambda: Positives({0: [1], 2: [0]}, 4), 'every query index 0..n_queries-1', 'accepted:')
    raises(lambda: Positives({'a': [1]}, 4), "keys 'a'", 'every query index')
    raises(lambda: Positives({1, 2}, 4), '`positives` is of type set', 'a dict {query index', exc=TypeError)
    raises(lambda: Positives(3, 4), '`positives` is of type int', exc=TypeError)
    import pandas as pd
    raises(lambda: Positives(pd.DataFrame({'q': [[1]]}), 4), '`positives` is of type DataFrame', exc=TypeError)
    raises(lambda: Positives([[0, [1, 2]]], 4), '`positives[0]` is not a flat list')
    raises(lambda: Positives([np.array([True, False])], 4), 'a mask needs one entry per gallery item (4)')
    raises(lambda: Positives([['a']], 4), '`positives[0]` holds <U1 values', exc=TypeError)
    raises(lambda: Positives([[1], [4]], 4), '`positives[1]` refers to gallery items outside 0..3')


def test_positives_not_rounded():
    "Item 12: a positive 3.5 is an error, not item 3; 3.0 is item 3."
    from fico_itr.ranking import Positives
    raises(lambda: Positives([[0], [3.5]], 5), '`positives[1]` holds 3.5', 'integers')
    raises(lambda: Positives([[np.nan]], 5), '`positives[0]` holds nan')
    assert Positives([[0], [3.0]], 5).block(0, 2).tolist() == Positives([[0], [3]], 5).block(0, 2).tolist()
    sp, S, lists = positives_example()
    lists['i2t'][0] = [0.5]
    raises(lambda: evaluate(sp, S, metrics=['R@1'], granularities=['extended'], positives=lists), 'positives[0]')


def test_coco_ids_not_rounded(tmp_path, instances):
    "Item 12: COCO id 1000.7 (argument or file) is an error, not 1000; 1000.0 and '1000' are 1000."
    train, _ = instances
    write_instances(tmp_path / 'big.json', [1000], [(1000, 18, 0)])
    want = coco_labels_from_instances(tmp_path / 'big.json', [1000])
    for same in ([1000.0], ['1000'], np.array([1000], np.uint32)):
        assert (coco_labels_from_instances(tmp_path / 'big.json', same) == want).all()
    raises(lambda: coco_labels_from_instances(tmp_path / 'big.json', [1000.7]), '`image_ids[0]` is 1000.7', 'nothing is rounded')
    raises(lambda: coco_labels_from_instances(tmp_path / 'big.json', np.array([1000.7])), '`image_ids[0]` is 1000.7')
    raises(lambda: coco_labels_from_instances(tmp_path / 'big.json', ['1000.7']), "'1000.7' (str)")
    raises(lambda: coco_labels_from_instances(tmp_path / 'big.json', [True]), 'booleans', exc=TypeError)
    raises(lambda: coco_labels_from_instances(tmp_path / 'big.json', np.array([2**64 - 1], np.uint64)), 'beyond int64')
    write_instances(tmp_path / 'frac.json', [1000], [(1000.7, 18, 0)])
    raises(lambda: coco_labels_from_instances(tmp_path / 'frac.json', [1000]), 'image_id of annotation 1', 'frac.json', '1000.7')
    write_instances(tmp_path / 'fcat.json', [1000], [(1000, 18.5, 0)])
    raises(lambda: coco_labels_from_instances(tmp_path / 'fcat.json', [1000]), 'category_id of annotation 1', '18.5')
    raises(lambda: coco5k_caption_ids([391895.5]), '`image_ids[0]` is 391895.5')
    raises(lambda: eccv_positives([391895], [1.5]), '`caption_ids[0]` is 1.5')


def test_instances_json_with_bom(tmp_path, instances):
    "A byte-order mark in front of an instances file does not change the labels."
    train, _ = instances
    bom = tmp_path / 'bom.json'; bom.write_bytes(b'\xef\xbb\xbf' + train.read_bytes())
    assert (coco_labels_from_instances(bom, [1, 2]) == coco_labels_from_instances(train, [1, 2])).all()
    bom.write_bytes(train.read_bytes()[:-40])
    raises(lambda: coco_labels_from_instances(bom, [1, 2]), 'bom.json', 'is not valid JSON, or is truncated')


def test_other_integer_arguments_not_truncated(tmp_path):
    "Item 12: the keyword labeler's cap2img and n_images, and Query2LabelAdapter's sizes, are never truncated."
    kw = CaptionKeywordLabeler()
    caps = ['a dog', 'a cat', 'a cat']
    assert kw.image_labels(caps, [0, 1, 1]).shape == (2, 80)
    raises(lambda: kw.image_labels(caps, [0, 1.5, 1]), '`cap2img` must hold integer image indices', '1.5')
    raises(lambda: kw.image_labels(caps, [0, -1, 1]), 'image index -1, outside 0..1')
    raises(lambda: kw.image_labels(caps, [0, 1, 1], n_images=2.5), '`n_images` must be a positive int')
    raises(lambda: kw.image_labels(caps, [0, 1, 2], n_images=2), 'image index 2, outside 0..1')
    w = tmp_path / 'q2l.pth'; w.write_bytes(b'x')
    build = lambda p: MeanColour()
    raises(lambda: Query2LabelAdapter(w, tmp_path, build_model=build, image_size=448.5), '`image_size` must be a positive int')
    raises(lambda: Query2LabelAdapter(w, tmp_path, build_model=build, batch_size=0), '`batch_size` must be a positive int')


def test_query2label_truncated_file(tmp_path):
    "Item 10: a Query2Label output cut short is a one-line error naming the file (the loader is data.load_array)."
    np.save(tmp_path / 'p.npy', np.random.default_rng(0).random((50, 80)))
    (tmp_path / 'cut.npy').write_bytes((tmp_path / 'p.npy').read_bytes()[:5000])
    raises(lambda: load_query2label(tmp_path / 'cut.npy'), 'cut.npy is truncated or corrupt')
