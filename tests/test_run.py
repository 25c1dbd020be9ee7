"""`fico-itr encode` and `fico-itr run` end to end, as a user runs them (subprocess), offline: tiny random-init models of
each transformers kind saved with save_pretrained, and a split of real photographs that scikit-image ships (saved as
JPEG files) with captions written here. Every model is named "random-init" in the outputs."""
import json, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
from PIL import Image

skimage_data = pytest.importorskip('skimage.data')
import transformers as tf
from fico_itr.data import load_lavis_annotations
from test_cli import one_line_error
from fico_itr.evaluate import evaluate
from fico_itr.similarity import similarity
from fico_itr.encoders import (ClipDualEncoder, SiglipDualEncoder, BlipDualEncoder, Blip2DualEncoder, _EncodedSplit,
                               load_encoder, _max_over_tokens_similarity, _wordlevel_tokenizer, _tiny_config)

FICO = str(Path(sys.executable).parent / 'fico-itr')
PHOTOS = {'astronaut': ['a woman in a space suit', 'an astronaut in front of a flag'],
          'coffee': ['a cup of coffee on a saucer', 'coffee in a white cup'],
          'chelsea': ['a cat lying down', 'a tabby cat looking up'],
          'rocket': ['a rocket on the launch pad', 'a rocket ready to fly'],
          'camera': ['a man with a camera on a tripod', 'a black and white photo of a photographer']}   # grayscale
METRICS = 'R@1,R@2,R@5,MedR'
KINDS = {'clip': (ClipDualEncoder, 'CLIPModel', tf.CLIPProcessor, tf.CLIPImageProcessorPil(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32})),
         'siglip': (SiglipDualEncoder, 'SiglipModel', tf.SiglipProcessor, tf.SiglipImageProcessorPil(size={'height': 32, 'width': 32})),
         'blip': (BlipDualEncoder, 'BlipForImageTextRetrieval', tf.BlipProcessor, tf.BlipImageProcessorPil(size={'height': 32, 'width': 32})),
         'blip2': (Blip2DualEncoder, 'Blip2ForImageTextRetrieval', tf.Blip2Processor, tf.BlipImageProcessorPil(size={'height': 32, 'width': 32}))}


def run(*args):
    return subprocess.run([FICO, *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    "A folder of five real photographs (JPEG) and a LAVIS-style split file naming them with two captions each."
    root = tmp_path_factory.mktemp('photos')
    (root / 'images').mkdir()
    for name in PHOTOS: Image.fromarray(getattr(skimage_data, name)()).save(root / 'images' / f'{name}.jpg', quality=90)
    (root / 'split.json').write_text(json.dumps([{'image': f'{n}.jpg', 'caption': c} for n, c in PHOTOS.items()]))
    return root


@pytest.fixture(scope='module')
def models(tmp_path_factory, photos):
    "One tiny random-init model folder per kind, written with save_pretrained (weights, config, processor, tokenizer)."
    root = tmp_path_factory.mktemp('models')
    tok = _wordlevel_tokenizer([c for cs in PHOTOS.values() for c in cs], 200)
    out = {}
    for kind, (adapter, cls, processor, image_processor) in KINDS.items():
        enc = adapter.from_config(_tiny_config(cls, len(tok)), image_processor, tok)
        folder = root / f'random-init-{kind}'
        extra = {'num_query_tokens': 4} if kind == 'blip2' else {}
        processor(image_processor=image_processor, tokenizer=tok, **extra).save_pretrained(folder)
        enc.model.save_pretrained(folder)
        out[kind] = folder
    return out


def _paths(photos): return [photos / 'images' / f'{n}.jpg' for n in PHOTOS]


def _values(rows): return {(r['model'], r['direction'], r['metric'], r['k']): r['value'] for r in rows}


def test_run_clip_writes_record_tables_figures_under_a_minute(photos, models, tmp_path):
    t0 = time.perf_counter()
    r = run('run', '--model', models['clip'], '--name', 'random-init CLIP', '--split-file', photos / 'split.json',
            '--images-dir', photos / 'images', '--out-dir', tmp_path / 'run', '--metrics', METRICS)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert seconds < 60, seconds
    assert '| random-init CLIP | split |' in r.stdout
    out = tmp_path / 'run'
    rec = json.loads((out / 'record.json').read_text())
    assert sorted(p.name for p in out.iterdir()) == ['emb.npz', 'record.json', 'report']
    assert sorted(p.name for p in (out / 'report').iterdir()) == ['instance.csv', 'instance.md', 'pr_curves.png', 'recall_at_k.png']
    for png in ('pr_curves.png', 'recall_at_k.png'): assert Image.open(out / 'report' / png).format == 'PNG'
    m = rec['encoding']['model']
    assert (m['name'], m['kind'], m['class'], m['precision'], len(m['weights_sha256'])) == ('random-init CLIP', 'clip', 'CLIPModel', 'fp32', 64)
    assert m['preprocessing']['crop_size'] == {'height': 32, 'width': 32}
    assert rec['encoding']['bytes_per_item'] == {'images': 64, 'captions': 64} and rec['encoding']['reused'] is False
    assert rec['split'] == {'name': 'split', 'n_images': 5, 'n_captions': 10, 'labels': None}
    assert rec['rerank'] is None and rec['command'][:2] == ['fico-itr', 'run']
    # the record equals evaluate on embeddings computed here, directly from the same folder and the same files
    enc = ClipDualEncoder.from_pretrained(models['clip'])
    split = load_lavis_annotations(photos / 'split.json')
    direct = evaluate(split, images=enc.encode_images(_paths(photos)), captions=enc.encode_texts(split.captions),
                      measure='cosine', metrics=METRICS.split(','), model='random-init CLIP')
    assert _values(rec['results']) == _values(direct.table.to_dict('records'))
    assert {(c['metric'], c['k']) for c in rec['curves']} == {('PR', f'{r / 10:.1f}') for r in range(11)}   # R@K up to 5 images are in the table
    # run again: the embeddings of the same weights, pre-processing and precision on the same split are reused
    again = run('run', '--model', models['clip'], '--name', 'random-init CLIP', '--split-file', photos / 'split.json',
                '--images-dir', photos / 'images', '--out-dir', out, '--metrics', METRICS)
    assert again.returncode == 0, again.stderr
    rec2 = json.loads((out / 'record.json').read_text())
    assert rec2['encoding']['reused'] is True and _values(rec2['results']) == _values(rec['results'])
    assert not [p for p in out.iterdir() if '.partial' in p.name]


@pytest.mark.parametrize('kind', ['siglip', 'blip', 'blip2'])
def test_encode_each_kind_equals_the_encoder(photos, models, tmp_path, kind):
    r = run('encode', '--model', models[kind], '--name', f'random-init {kind}', '--split-file', photos / 'split.json',
            '--images-dir', photos / 'images', '--out', tmp_path / 'emb.npz')
    assert r.returncode == 0, r.stderr
    e = _EncodedSplit.load(tmp_path / 'emb.npz')
    enc = load_encoder(models[kind])
    split = load_lavis_annotations(photos / 'split.json')
    np.testing.assert_array_equal(e.images.values, enc.encode_images(_paths(photos)).values)
    np.testing.assert_array_equal(e.captions.values, enc.encode_texts(split.captions).values)
    assert list(e.image_ids) == [f'{n}.jpg' for n in PHOTOS] and list(e.caption_ids) == list(range(10))
    assert (e.model['name'], e.model['kind']) == (f'random-init {kind}', kind)
    assert e.seconds['images'] > 0 and e.bytes_per_item['captions'] == e.captions.values.shape[1] * 4
    if kind == 'blip2': assert e.images.values.shape == (5, 4, 16)     # one embedding per query token


def test_run_blip_reranks_with_its_itm_head(photos, models, tmp_path):
    r = run('run', '--model', models['blip'], '--name', 'random-init BLIP', '--split-file', photos / 'split.json',
            '--images-dir', photos / 'images', '--out-dir', tmp_path / 'run', '--metrics', METRICS, '--rerank-depth', '3')
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / 'run' / 'record.json').read_text())
    models_in = list(dict.fromkeys(x['model'] for x in rec['results']))
    assert models_in == ['random-init BLIP (ITC)', 'random-init BLIP (ITC+ITM rerank, depth 3)']
    assert rec['rerank']['depth'] == 3 and rec['rerank']['n_pairs'] == {'i2t': 15, 't2i': 30}
    reranked = [x for x in rec['results'] if 'rerank' in x['model']]
    assert all('rerank_depth=3' in x['convention'] for x in reranked)
    # the first stage equals the ITC scores computed directly
    enc = load_encoder(models['blip'])
    split = load_lavis_annotations(photos / 'split.json')
    S = similarity(enc.encode_images(_paths(photos)).values, enc.encode_texts(split.captions).values, 'inner_product')
    direct = evaluate(split, S, metrics=METRICS.split(','), model='random-init BLIP (ITC)')
    assert {k: v for k, v in _values(rec['results']).items() if 'ITC)' in k[0]} == _values(direct.table.to_dict('records'))


def test_run_blip2_first_stage_is_the_max_over_query_tokens(photos, models, tmp_path):
    r = run('run', '--model', models['blip2'], '--name', 'random-init BLIP-2', '--split-file', photos / 'split.json',
            '--images-dir', photos / 'images', '--out-dir', tmp_path / 'run', '--metrics', METRICS)
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / 'run' / 'record.json').read_text())
    assert rec['measure'] == 'max over query tokens' and rec['rerank']['depth'] is None    # no paper depth for this split
    enc = load_encoder(models['blip2'])
    split = load_lavis_annotations(photos / 'split.json')
    S = _max_over_tokens_similarity(enc.encode_images(_paths(photos)), enc.encode_texts(split.captions))
    direct = evaluate(split, S, metrics=METRICS.split(','), model='random-init BLIP-2 (ITC)')
    assert _values(rec['results']) == _values(direct.table.to_dict('records'))


def _copy_images(photos, dst):
    dst.mkdir()
    for p in _paths(photos): (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_image_mistakes_get_one_line_and_leave_nothing(photos, models, tmp_path):
    args = ['--model', models['clip'], '--split-file', photos / 'split.json', '--metrics', METRICS]
    # a missing image: counted and named before the model loads
    imgs = _copy_images(photos, tmp_path / 'missing'); (imgs / 'coffee.jpg').unlink(); (imgs / 'rocket.jpg').unlink()
    one_line_error(run('run', *args, '--images-dir', imgs, '--out-dir', tmp_path / 'o1'), "2 of the 5 images of split 'split'",
                   'coffee.jpg, rocket.jpg')
    # a corrupt image: a truncated JPEG
    imgs = _copy_images(photos, tmp_path / 'corrupt')
    (imgs / 'chelsea.jpg').write_bytes((imgs / 'chelsea.jpg').read_bytes()[:500])
    one_line_error(run('run', *args, '--images-dir', imgs, '--out-dir', tmp_path / 'o2'), 'chelsea.jpg', 'is not a readable image')
    assert not (tmp_path / 'o2' / 'record.json').exists() and not (tmp_path / 'o2' / 'emb.npz').exists()
    # an empty folder
    (tmp_path / 'empty').mkdir()
    one_line_error(run('encode', *args[:4], '--images-dir', tmp_path / 'empty', '--out', tmp_path / 'e.npz'), 'is empty')
    assert not (tmp_path / 'e.npz').exists()
    # a folder that is not there
    one_line_error(run('encode', *args[:4], '--images-dir', tmp_path / 'nowhere', '--out', tmp_path / 'e.npz'), 'does not exist')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['corrupt', 'empty', 'missing', 'o2']
    assert sorted(p.name for p in (tmp_path / 'o2').iterdir()) == []


def test_model_mistakes_get_one_line(photos, models, tmp_path):
    common = ['--split-file', photos / 'split.json', '--images-dir', photos / 'images', '--out', tmp_path / 'e.npz']
    one_line_error(run('encode', '--model', models['clip'], '--kind', 'blip', *common),
                   '--kind blip but model folder', 'holds a clip model: pass --kind clip')
    one_line_error(run('encode', '--model', tmp_path / 'no-model', *common), 'does not exist', 'save_pretrained')
    (tmp_path / 'not-a-model').mkdir(); (tmp_path / 'not-a-model' / 'weights.bin').write_bytes(b'x')
    one_line_error(run('encode', '--model', tmp_path / 'not-a-model', *common), 'has no config.json', 'config.json, the weights')
    # a BLIP folder of the captioning model is not the retrieval model
    cap = tmp_path / 'blip-captioning'; cap.mkdir()
    cfg = json.loads((models['blip'] / 'config.json').read_text()); cfg['architectures'] = ['BlipForConditionalGeneration']
    (cap / 'config.json').write_text(json.dumps(cfg))
    one_line_error(run('encode', '--model', cap, *common), 'holds a BlipForConditionalGeneration, not the BlipForImageTextRetrieval')
    one_line_error(run('encode', '--model', models['clip'], '--kind', 'vgg19', *common), "invalid choice: 'vgg19'")
    one_line_error(run('encode', '--model', models['clip'], *common[:-1], tmp_path), 'is a folder')
    assert not (tmp_path / 'e.npz').exists()


def test_coco5k_names_karpathy_files(tmp_path):
    "The shipped COCO 5K split looks for val2014's Karpathy file names; with none there, the count and the first names."
    (tmp_path / 'val2014').mkdir(); (tmp_path / 'val2014' / 'COCO_val2014_000000391895.jpg').write_bytes(b'')
    r = run('encode', '--model', tmp_path / 'm', '--split', 'coco5k', '--images-dir', tmp_path, '--out', tmp_path / 'e.npz')
    one_line_error(r, "4,999 of the 5,000 images of split 'coco-5k'", 'val2014/COCO_val2014_000000060623.jpg')
