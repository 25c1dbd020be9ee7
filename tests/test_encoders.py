"""fico_itr.encoders: image input by every route, the transformers adapters cross-checked against the models' own forward
passes, loading from a saved folder, the ITM pair scorers, the rerank (hand case, order beyond the depth, pairs scored,
full depth = scoring everything, n/a metrics) and VGG-19 fc7. Models are tiny and randomly initialised (no download)."""
import numpy as np
import pytest
import torch
from PIL import Image

skimage_data = pytest.importorskip('skimage.data')
from sklearn.datasets import load_sample_images
from transformers import (BlipImageProcessor, BlipProcessor, CLIPImageProcessor, CLIPProcessor, SiglipImageProcessor)
from fico_itr.core import EvaluationSplit, Conventions
from fico_itr.similarity import HashCodes, similarity
from fico_itr.evaluate import evaluate
from fico_itr.encoders import (Embeddings, _to_pil, _check_images, _image_loader, ClipDualEncoder, SiglipDualEncoder,
                               BlipDualEncoder, Blip2DualEncoder, OpenClipDualEncoder, _max_over_tokens_similarity,
                               PairScorer, CallableScorer, rerank, _wordlevel_tokenizer, _tiny_config, _VGG19, _fc7,
                               _ImageNetTransform, Vgg19Fc7Encoder)
from _helpers import DATA, raises

CAPTIONS = DATA / 'coco_karpathy_test' / 'testall_caps.txt'
TEXTS = ['a woman in a space suit', 'a cup of coffee on a saucer', 'a cat lying down', 'a rocket on the launch pad',
         'a plate of food on a table', 'a man riding a horse', 'a cat sleeping on a sofa', 'a rocket in the blue sky']


@pytest.fixture(scope='module')
def captions():
    if not CAPTIONS.is_file(): pytest.skip(f'{CAPTIONS} is not here')
    return CAPTIONS.read_text(encoding='utf-8').splitlines()


@pytest.fixture(scope='module')
def tokenizer(captions):
    return _wordlevel_tokenizer(captions[:5000], 2000)


@pytest.fixture(scope='module')
def images():
    "Real photographs: four from scikit-image, two from scikit-learn (all H x W x 3 uint8)."
    ims = [skimage_data.astronaut(), skimage_data.coffee(), skimage_data.chelsea(), skimage_data.rocket()]
    return ims + list(load_sample_images().images)


def _clip(tokenizer, **kw):
    proc = CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32})
    return ClipDualEncoder.from_config(_tiny_config('CLIPModel', len(tokenizer)), proc, tokenizer, **kw)


@pytest.fixture(scope='module')
def clip(tokenizer): return _clip(tokenizer)


@pytest.fixture(scope='module')
def blip(tokenizer):
    return BlipDualEncoder.from_config(_tiny_config('BlipForImageTextRetrieval', len(tokenizer)),
                                       BlipImageProcessor(size={'height': 32, 'width': 32}), tokenizer)


@pytest.fixture(scope='module')
def blip2(tokenizer):
    return Blip2DualEncoder.from_config(_tiny_config('Blip2ForImageTextRetrieval', len(tokenizer), layers=2),
                                        BlipImageProcessor(size={'height': 32, 'width': 32}), tokenizer)


def _pixels(encoder, images):
    return torch.stack([encoder.image_transform(_to_pil(i)) for i in images])


# ---------------------------------------------------------------- Embeddings and image input

def test_embeddings_accounting():
    e = Embeddings(np.zeros((10, 512), np.float32), 'continuous', 'm', seconds=0.25, modality='text')
    assert (e.n_items, e.bytes_per_item, e.nbytes, e.items_per_second, e.dtype) == (10, 2048, 20480, 40.0, 'float32')
    assert repr(e) == "Embeddings(text continuous, 10 x 512 float32, 2,048 B/item, 20,480 B; model 'm')"   # no wall time
    assert e.timing == "0.250 s = 40.0 items/s"
    b = Embeddings(HashCodes.from_bits(np.ones((5, 130), np.uint8)), 'binary', 'h', 1.0)
    assert (b.bytes_per_item, b.nbytes, b.shape, b.dtype) == (17, 85, (5, 130), '130-bit code')
    hamming = evaluate(EvaluationSplit.uniform(5, 1), images=b, captions=b, measure='hamming', metrics=['R@1'])
    assert hamming.get('R@1', 'i2t') == pytest.approx(20.0)   # all codes equal: the true item is first in 1 of 5 orders
    t = Embeddings(np.zeros((3, 32, 256), np.float16), 'continuous', 'blip2')
    assert (t.bytes_per_item, t.shape) == (32 * 256 * 2, (3, 32, 256))
    raises(lambda: Embeddings(np.ones((2, 8), np.int64), 'continuous', 'm'), 'must be floats', exc=TypeError)
    raises(lambda: Embeddings(np.ones((2, 8)), 'binary', 'm'), 'HashCodes.from_array', exc=TypeError)


def test_to_pil_routes(images):
    a = images[0]
    for route in (a, torch.from_numpy(a.copy()).permute(2, 0, 1), Image.fromarray(a), a.astype(np.float64) / 255,
                  torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255):
        assert np.array_equal(np.asarray(_to_pil(route)), a)
    g = skimage_data.camera()
    assert np.array_equal(np.asarray(_to_pil(g)), np.repeat(g[:, :, None], 3, 2))
    raises(lambda: _to_pil(a.transpose(2, 0, 1), 'images[0]'), '`images[0]`', 'H x W x C')
    raises(lambda: _to_pil(torch.zeros(1, 3, 8, 8)), 'C x H x W')
    raises(lambda: _to_pil(a.astype(np.int32)), 'dtype int32', exc=TypeError)
    raises(lambda: _to_pil(3), 'is a int', exc=TypeError)


def test_bad_image_lists(images, tmp_path):
    raises(lambda: _check_images([images[0], Image.fromarray(images[1])]), '`images` mixes', 'Image', 'ndarray', exc=TypeError)
    raises(lambda: _check_images([str(tmp_path / 'missing.png')], 'gallery'), '`gallery`', 'missing.png', exc=FileNotFoundError)
    raises(lambda: _check_images([]), '`images` is empty')
    raises(lambda: _check_images(images[0]), 'a single image', exc=TypeError)
    raises(lambda: _check_images([images[0], 'x.png']), 'mixes', exc=TypeError)
    raises(lambda: _image_loader(images, lambda x: x, batch_size=0), '`batch_size`')
    raises(lambda: _image_loader(images, lambda x: x, num_workers=-1), '`num_workers`')


def test_same_image_same_embedding_by_every_route(clip, images, tmp_path):
    "Files (PNG), PIL images, H x W x C arrays, a stacked array and C x H x W tensors give identical embeddings."
    paths = []
    for i, a in enumerate(images):
        paths.append(tmp_path / f'{i}.png'); Image.fromarray(a).save(paths[-1])
    ref = clip.encode_images(images, batch_size=4).values
    routes = {'paths': paths, 'str paths': [str(p) for p in paths], 'pil': [Image.fromarray(a) for a in images],
              'tensors': [torch.from_numpy(a.copy()).permute(2, 0, 1) for a in images],
              'stacked': np.stack(images[4:]), 'workers': None}
    for name, route in routes.items():
        got = (clip.encode_images(images, batch_size=3, num_workers=2) if name == 'workers'
               else clip.encode_images(route, batch_size=2))
        want = ref[4:] if name == 'stacked' else ref
        np.testing.assert_allclose(got.values, want, atol=1e-6, err_msg=name)
    assert ref.shape == (6, 16) and not np.allclose(ref[0], ref[1])


def test_encode_timing_and_dtypes(tokenizer, images):
    e32 = _clip(tokenizer).encode_images(images)
    assert e32.seconds > 0 and e32.modality == 'image' and e32.model == 'random-init CLIPModel from config'
    np.testing.assert_allclose(np.linalg.norm(e32.values, axis=1), 1, atol=1e-5)
    e16 = _clip(tokenizer, dtype='float16').encode_images(images)
    ebf = _clip(tokenizer, dtype='bfloat16').encode_images(images)
    assert (e16.dtype, e16.bytes_per_item, ebf.dtype) == ('float16', 32, 'float32')
    np.testing.assert_allclose(e16.values, e32.values, atol=1e-2)
    np.testing.assert_allclose(ebf.values, e32.values, atol=5e-2)
    raw = _clip(tokenizer, normalise=False).encode_images(images).values
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), e32.values, atol=1e-5)
    raises(lambda: _clip(tokenizer, dtype='int8'), "'int8' is not one of")
    raises(lambda: _clip(tokenizer).encode_texts('a cat'), 'one string', exc=TypeError)


# ---------------------------------------------------------------- adapters against the models' own forward passes

def test_clip_matches_its_forward(clip, images):
    img, txt = clip.encode_images(images[:4]), clip.encode_texts(TEXTS)
    with torch.inference_mode():
        tok = clip.tokenize(TEXTS)
        out = clip.model(pixel_values=_pixels(clip, images[:4]), **tok)
        cosine = out.logits_per_image / clip.model.logit_scale.exp()
    np.testing.assert_allclose(img.values @ txt.values.T, cosine.numpy(), atol=1e-5)


def test_siglip_matches_its_forward(captions, images):
    tok = _wordlevel_tokenizer(captions[:2000], 1000, input_names=('input_ids',))
    sig = SiglipDualEncoder.from_config(_tiny_config('SiglipModel', len(tok)), SiglipImageProcessor(size={'height': 32, 'width': 32}), tok)
    assert sig.tokenize(TEXTS[:2])['input_ids'].shape == (2, 32)     # SigLIP: padded to max_length, no attention mask
    img, txt = sig.encode_images(images[:3]), sig.encode_texts(TEXTS)
    with torch.inference_mode():
        out = sig.model(pixel_values=_pixels(sig, images[:3]), **sig.tokenize(TEXTS))
        cosine = (out.logits_per_image - sig.model.logit_bias) / sig.model.logit_scale.exp()
    np.testing.assert_allclose(img.values @ txt.values.T, cosine.numpy(), atol=1e-5)


def test_blip_itc_matches_its_forward(blip, images):
    img, txt = blip.encode_images(images[:2]), blip.encode_texts(TEXTS[:2])
    with torch.inference_mode():
        tok = blip.tokenize(TEXTS[:2])
        out = blip.model(pixel_values=_pixels(blip, images[:2]), use_itm_head=False, **tok).itm_score
    np.testing.assert_allclose(img.values @ txt.values.T, out.numpy(), atol=1e-5)


def test_blip2_query_tokens_and_max_similarity(blip2, images):
    tokens, txt = blip2.encode_images(images), blip2.encode_texts(TEXTS)
    assert tokens.values.shape == (6, 4, 16) and tokens.bytes_per_item == 4 * 16 * 4
    np.testing.assert_allclose(np.linalg.norm(tokens.values, axis=2), 1, atol=1e-5)
    S = _max_over_tokens_similarity(tokens, txt)
    with torch.inference_mode():
        tok = blip2.tokenize(TEXTS)
        ref = blip2.model(pixel_values=_pixels(blip2, images), **tok).logits_per_image
    np.testing.assert_allclose(S, ref.numpy(), atol=1e-5)
    np.testing.assert_array_equal(_max_over_tokens_similarity(tokens.values, txt.values, budget=1), S)   # one image per block
    raises(lambda: _max_over_tokens_similarity(tokens.values, txt.values[:, :8]), 'dimension 16', '8')
    raises(lambda: _max_over_tokens_similarity(txt.values, txt.values), '`image_tokens` must be 3-D')


def test_from_pretrained_folder_and_missing_weights(clip, tokenizer, images, tmp_path):
    CLIPProcessor(image_processor=clip.image_transform.image_processor, tokenizer=tokenizer).save_pretrained(tmp_path)
    clip.model.save_pretrained(tmp_path)
    again = ClipDualEncoder.from_pretrained(tmp_path)
    assert again.name == str(tmp_path) and again.max_length == 32
    np.testing.assert_allclose(again.encode_images(images[:2]).values, clip.encode_images(images[:2]).values, atol=1e-6)
    np.testing.assert_allclose(again.encode_texts(TEXTS).values, clip.encode_texts(TEXTS).values, atol=1e-6)
    raises(lambda: BlipDualEncoder.from_pretrained('Salesforce/blip-itm-base-coco'), "'Salesforce/blip-itm-base-coco'",
           'hf download', exc=OSError)
    raises(lambda: ClipDualEncoder.from_pretrained(tmp_path / 'nothing'), 'nothing', 'cannot download', exc=OSError)


def test_open_clip_import_error():
    try:
        import open_clip  # noqa: F401
    except Exception: pass
    else: pytest.skip('open_clip imports here: the error path does not apply')
    msg = raises(lambda: OpenClipDualEncoder('ViT-B-32', pretrained='laion2b_s34b_b79k'), 'open_clip', 'pip install open_clip_torch',
                 'torchvision', exc=ImportError)
    assert torch.__version__ in msg


def test_embeddings_flow_into_evaluate(clip, captions, images):
    "Six real photographs with two real COCO captions each, scored by the random-init CLIP and evaluated."
    split = EvaluationSplit.uniform(6, 2, name='photos-6')
    txt = clip.encode_texts(captions[:12])
    img = clip.encode_images(images)
    res = evaluate(split, images=img.values, captions=txt.values, measure='cosine', model=img.model,
                   metrics=['R@1', 'R@5'], conventions='lavis')
    S = img.values @ txt.values.T
    hit1 = np.mean([split.cap2img[np.argmax(S[i])] == i for i in range(6)]) * 100
    assert res.get('R@1', 'i2t') == pytest.approx(hit1)
    t2i_hit1 = np.mean(np.argmax(S, 0) == split.cap2img) * 100
    assert res.get('R@1', 't2i') == pytest.approx(t2i_hit1)
    assert set(res.table.model) == {'random-init CLIPModel from config'}
    again = evaluate(split, images=img, captions=txt, measure='cosine', metrics=['R@1', 'R@5'], conventions='lavis')  # Embeddings as arrays
    np.testing.assert_array_equal(again.table.value.to_numpy(), res.table.value.to_numpy())


# ---------------------------------------------------------------- pair scorers and the rerank

def _first_stage(n_images=5, cpi=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_images, n_images * cpi)).astype(np.float32)


class Recorder:
    "A pair function that records every (image, caption) pair it is asked to score and returns a fixed table's value."
    def __init__(self, table): self.table, self.pairs, self.calls = table, [], 0
    def __call__(self, imgs, caps):
        self.calls += 1; self.pairs += list(zip(imgs.tolist(), caps.tolist()))
        return self.table[imgs, caps]


def test_rerank_hand_case():
    F = np.array([[.9, .8, .1, .2], [.1, .3, .7, .6]], np.float32)
    rescore = np.array([[0., 5., 9., 9.], [9., 9., 1., 0.]], np.float32)
    r = rerank(F, CallableScorer(Recorder(rescore)), depth=2, combine='add')
    np.testing.assert_array_equal(r.candidates['i2t'], [[0, 1], [2, 3]])
    np.testing.assert_allclose(r.scores['i2t'], [[.9, 5.8], [1.7, .6]])
    np.testing.assert_array_equal(np.argsort(-r.i2t, 1, kind='stable'), [[1, 0, 3, 2], [2, 3, 1, 0]])
    # t2i: each caption's top 2 of 2 images, rescored and added
    np.testing.assert_allclose(r.scores['t2i'], [[.9, 9.1], [5.8, 9.3], [1.7, 9.1], [.6, 9.2]])
    np.testing.assert_array_equal(r.candidates['t2i'], [[0, 1], [0, 1], [1, 0], [1, 0]])
    np.testing.assert_array_equal(np.argmax(r.t2i, 1), [1, 1, 0, 0])
    rep = rerank(F, CallableScorer(Recorder(rescore)), depth=2, combine='replace')
    np.testing.assert_allclose(rep.scores['i2t'], [[0, 5], [1, 0]])
    mx = rerank(F, CallableScorer(Recorder(rescore)), depth=2, combine=np.maximum)
    np.testing.assert_allclose(mx.scores['i2t'], [[.9, 5], [1, .6]])
    assert (mx.combine, rep.combine) == ('maximum', 'replace')


def test_beyond_depth_keeps_first_stage_order():
    F = _first_stage(20, 5, seed=1)
    rng = np.random.default_rng(2)
    table = rng.standard_normal(F.shape).astype(np.float32) * 10
    r = rerank(F, CallableScorer(Recorder(table)), depth=7, query_block=6)
    for d, A in (('i2t', F), ('t2i', F.T)):
        M, k = (r.i2t, 7) if d == 'i2t' else (r.t2i, 7)
        order = np.argsort(-M, 1, kind='stable')
        first = np.argsort(-A, 1, kind='stable')
        for q in range(len(A)):
            top = set(first[q, :k])
            assert set(order[q, :k]) == top
            want_top = r.candidates[d][q][np.argsort(-r.scores[d][q], kind='stable')]
            np.testing.assert_array_equal(order[q, :k], want_top)
            np.testing.assert_array_equal(order[q, k:], [j for j in first[q] if j not in top])
        assert (M[np.arange(len(A))[:, None], order[:, k:]] == np.take_along_axis(A, order[:, k:], 1)).all()  # values kept


def test_rerank_keeps_ties_of_the_combined_scores():
    F = np.array([[.5, .4, .3, .2, .1]], np.float32)
    r = rerank(F, lambda q, c, d: np.where(c < 2, 1., 0.).astype(np.float32), depth=4, combine='replace', directions=('i2t',))
    row = r.i2t[0]
    assert row[0] == row[1] > row[2] == row[3] > row[4] == np.float32(.1)
    assert r.t2i is None and set(r.seconds) == {'i2t'}


def test_scorer_sees_exactly_the_depth_candidates():
    F = _first_stage(9, 3, seed=3)
    rec = Recorder(np.zeros(F.shape, np.float32))
    r = rerank(F, CallableScorer(rec, batch_size=7), depth=4, query_block=5)
    i2t_pairs = {(i, int(c)) for i in range(9) for c in np.argsort(-F[i])[:4]}
    t2i_pairs = {(int(i), c) for c in range(27) for i in np.argsort(-F[:, c])[:4]}
    assert len(rec.pairs) == 9 * 4 + 27 * 4 == r.n_pairs['i2t'] + r.n_pairs['t2i']
    assert set(rec.pairs[:36]) == i2t_pairs and set(rec.pairs[36:]) == t2i_pairs
    assert len(set(rec.pairs[:36])) == 36 and len(set(rec.pairs[36:])) == 108
    # query blocks of 5 -> 2 i2t blocks (20 + 16 pairs) and 6 t2i blocks, each split into calls of at most 7 pairs
    assert rec.calls == (3 + 3) + (5 * 3 + 1 * 2)
    assert r.seconds['i2t'] > 0 and r.depth == 4


def test_full_depth_replace_equals_scoring_everything():
    split = EvaluationSplit.uniform(6, 3)
    F = _first_stage(6, 3, seed=4)
    full = np.round(np.random.default_rng(5).standard_normal(F.shape), 1).astype(np.float32)   # rounded: ties occur
    r = rerank(F, CallableScorer(Recorder(full)), depth=18, combine='replace')
    for d, M, ref in (('i2t', r.i2t, full), ('t2i', r.t2i, full.T)):
        np.testing.assert_array_equal(np.argsort(-M, 1, kind='stable'), np.argsort(-ref, 1, kind='stable'))
    metrics = ['R@1', 'R@5', 'MedR', 'mAP@N']
    for ties in ('stable', 'reverse', 'optimistic', 'pessimistic'):
        conv = Conventions(ties=ties)
        got = evaluate(split, i2t_similarity=r.i2t, t2i_similarity=r.t2i, metrics=metrics, conventions=conv)
        want = evaluate(split, similarity=full, metrics=metrics, conventions=conv)
        np.testing.assert_allclose(got.table.value.to_numpy(), want.table.value.to_numpy())


def test_depth_marks_metrics_na():
    split = EvaluationSplit.uniform(10, 2)
    F = _first_stage(10, 2, seed=6)
    r = rerank(F, lambda q, c, d: np.zeros(c.shape, np.float32), depth=5, combine='add')
    res = evaluate(split, i2t_similarity=r.i2t, t2i_similarity=r.t2i, conventions=r.conventions('lavis'),
                   metrics=['R@1', 'R@5', 'R@10', 'mAP@N'])
    for d in ('i2t', 't2i'):
        assert not np.isnan(res.get('R@1', d)) and not np.isnan(res.get('R@5', d))
        assert np.isnan(res.get('R@10', d)) and np.isnan(res.get('mAP@N', d))
    # combine='add' with zero rescoring leaves the first stage's ranking: same R@1 as the first stage itself
    base = evaluate(split, similarity=F, metrics=['R@1', 'R@5'], conventions='lavis')
    assert res.get('R@1', 'i2t') == base.get('R@1', 'i2t') and res.get('R@5', 't2i') == base.get('R@5', 't2i')
    assert r.conventions('lavis').rerank_depth == 5


def test_rerank_bad_input():
    F = _first_stage(3, 2)
    ok = lambda q, c, d: np.zeros(c.shape, np.float32)
    raises(lambda: rerank(F, ok, depth=0), '`depth` must be a positive int')
    raises(lambda: rerank(F, ok, depth=2, combine='mean'), '`combine`', 'add, replace or a callable')
    raises(lambda: rerank(F, ok, depth=2, directions=('x',)), "unknown direction 'x'")
    raises(lambda: rerank(F, lambda q, c, d: np.zeros(3), depth=2), 'returned shape (3,)')
    raises(lambda: rerank(F, lambda q, c, d: np.full(c.shape, np.nan), depth=2), 'NaN or Inf')
    raises(lambda: rerank(F[0], ok, depth=2), '`first_stage_i2t` must be 2-D')
    raises(lambda: CallableScorer(lambda i, c: np.zeros(2))(np.arange(2), np.zeros((2, 3), int)), 'returned shape (2,) for 6 pairs')
    raises(lambda: CallableScorer(3), '`fn` must be callable', exc=TypeError)
    raises(lambda: PairScorer()(np.arange(2), np.zeros((3, 2), int)), '2 queries', '3 rows')



def test_rerank_checks_query_block_and_batch_size():
    "Review 1: query_block=-1 / batch_size=-1 returned uninitialised memory, 0 a bare range() error."
    F, ok = _first_stage(3, 2), lambda q, c, d: np.zeros(c.shape, np.float32)
    for bad in (0, -1, 2.5, True):
        raises(lambda: rerank(F, ok, depth=2, query_block=bad), '`query_block` must be a positive int', repr(bad))
        raises(lambda: CallableScorer(lambda i, c: i * 0., batch_size=bad), '`batch_size` must be a positive int', repr(bad))
    assert rerank(F, ok, depth=2, query_block=np.int64(1)).candidates['i2t'].shape == (3, 2)


def test_rerank_candidates_tied_at_the_depth_take_the_lower_index():
    "Review 4: torch.topk picked [0, 6, 1] and [8, 6, 7]; the engine's stable rule takes the lower gallery index first."
    zero = lambda q, c, d: np.zeros(c.shape, np.float32)
    F = np.array([[1, .5, .5, .5, .5, .5, .5, .5, .5, 0], [.5] * 10], np.float32)
    r = rerank(F, zero, depth=3, directions=('i2t',))
    np.testing.assert_array_equal(r.candidates['i2t'], [[0, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(np.argsort(-r.i2t, 1, kind='stable'), [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], list(range(10))])
    # many ties (one decimal, and integer Hamming-like scores): candidates = the first `depth` of the stable order, both directions
    rng = np.random.default_rng(9)
    for A in (np.round(rng.random((7, 40)), 1).astype(np.float32), rng.integers(-3, 4, (7, 40)).astype(np.int32)):
        for depth in (1, 5, 13):
            r = rerank(A, zero, depth=depth, query_block=3)
            for d, X in (('i2t', A), ('t2i', A.T)):
                stable = np.argsort(-X.astype(np.float64), 1, kind='stable')
                np.testing.assert_array_equal(r.candidates[d], stable[:, :min(depth, X.shape[1])], err_msg=f'{d} {depth}')


def test_rerank_float64_first_stage_keeps_its_order_beyond_the_depth():
    "Review 3: a float64 first stage went through float32, which made 1, 1 + 1e-9 and 1 + 2e-9 one tie."
    F = np.array([[3., 2., 1., 1 + 1e-9, 1 + 2e-9]])
    r = rerank(F, lambda q, c, d: np.zeros(c.shape, np.float32), depth=2, directions=('i2t',))
    assert r.i2t.dtype == np.float64
    np.testing.assert_array_equal(r.i2t[0, 2:], F[0, 2:])                        # the first-stage values, untouched
    np.testing.assert_array_equal(r.i2t[0, :2], [1 + 2e-9 + 1 + 1, 1 + 2e-9 + 1])   # max of the rest + 1 + dense rank
    np.testing.assert_array_equal(np.argsort(-r.i2t, 1, kind='stable'), [[0, 1, 4, 3, 2]])
    # float64 that float32 holds exactly stays float32 (half the memory), with the same values
    r32 = rerank(np.array([[.5, .25, .125]]), lambda q, c, d: np.zeros(c.shape, np.float32), depth=1, directions=('i2t',))
    assert r32.i2t.dtype == np.float32 and r32.i2t.tolist() == [[1.25, .25, .125]]


def test_rerank_large_first_stage_scores_stay_distinct():
    "Review 2: near 2**24 float32 placements max + 1 and max + 2 rounded to the same value (a tie the scorer did not give)."
    B = np.float32(2**24 - 2)
    F = np.array([[B + 8, B + 6, B + 4, B + 2, B]], np.float32)
    r = rerank(F, lambda q, c, d: np.array([[1., 0.]], np.float32), depth=2, combine='replace', directions=('i2t',))
    assert r.i2t.dtype == np.float64
    np.testing.assert_array_equal(r.i2t, [[2**24 + 4, 2**24 + 3, 2**24 + 2, 2**24, 2**24 - 2]])
    raises(lambda: rerank(np.array([[2.**60, 2.**60, 0.]]), lambda q, c, d: np.zeros(c.shape), depth=1),
           '`first_stage_i2t`', '2**51', 'rescale')


def test_rerank_combine_nan_or_inf_is_an_error():
    "Review 5: combine returning NaN gave an all-tied rerank while r.scores held NaN."
    F = _first_stage(3, 2)
    ok = lambda q, c, d: np.zeros(c.shape, np.float32)
    def halve_or_nan(first, rescored): return np.where(first > 0, first / 2, np.nan)
    raises(lambda: rerank(F, ok, depth=2, combine=lambda a, b: a * np.nan), '`combine` (<lambda>) gave NaN or Inf', 'i2t queries 0..2')
    raises(lambda: rerank(-np.abs(F), ok, depth=2, combine=halve_or_nan), '`combine` (halve_or_nan)')
    raises(lambda: rerank(F, ok, depth=2, combine=lambda a, b: np.full_like(a, np.inf)), 'NaN or Inf')


def test_embeddings_check_modality_and_seconds():
    "Review 11d: modality='audio' and seconds=-1 were accepted."
    v = np.zeros((2, 3), np.float32)
    raises(lambda: Embeddings(v, 'continuous', 'x', modality='audio'), "`modality` must be 'image', 'text'", "'audio'")
    for bad in (-1.0, float('inf'), '1 s', True):
        raises(lambda: Embeddings(v, 'continuous', 'x', seconds=bad), '`seconds` must be a wall time >= 0', repr(bad))
    assert np.isnan(Embeddings(v, 'continuous', 'x').seconds) and Embeddings(v, 'continuous', 'x', 2, 'image').seconds == 2.0


def test_grayscale_stacks(clip, images):
    "Review 11e: an N x H x W stack is refused with the layout that works (N x H x W x 1), which equals the list of H x W images."
    grays = [a[:, :, 1] for a in images[4:]]                    # the two scikit-learn photos, same size
    stack = np.stack(grays)
    raises(lambda: _check_images(stack), 'a single image', 'N x H x W x 1', exc=TypeError)
    want = clip.encode_images(grays).values
    np.testing.assert_array_equal(clip.encode_images(stack[..., None]).values, want)
    np.testing.assert_allclose(clip.encode_images([np.repeat(g[:, :, None], 3, 2) for g in grays]).values, want, atol=1e-6)


def test_scorers_refuse_float_and_negative_indices(blip, images):
    "Review 11f: float indices were truncated and negative ones wrapped."
    itm = blip.itm_scorer(images[:2], TEXTS[:3])
    raises(lambda: itm.score_pairs(np.array([-1]), np.array([0])), '`image_indices`', 'negative index -1')
    raises(lambda: itm.score_pairs(np.array([0]), np.array([3])), '`caption_indices` holds index 3 but there are 3 items')
    raises(lambda: itm.score_pairs(np.array([0.9]), np.array([0])), '`image_indices` must hold integer indices', 'float64', exc=TypeError)
    raises(lambda: itm(np.array([0]), np.array([[0.9, 1.2]]), 'i2t'), '`candidates` must hold integer indices', exc=TypeError)
    raises(lambda: itm(np.array([0, 1]), np.array([[0], [-2]]), 't2i'), '`candidates`', 'negative index -2')
    raises(lambda: blip.itm_scorer(images[:1], TEXTS[:1], batch_size=0), '`batch_size` must be a positive int')
    raises(lambda: CallableScorer(lambda i, c: i * 0.)(np.array([-1]), np.array([[0]])), '`query_indices`', 'negative')
    np.testing.assert_allclose(itm(np.array([1]), np.array([[2, 0]]), 'i2t'),
                               itm.score_pairs(np.array([1, 1]), np.array([2, 0]))[None], atol=1e-6)

def test_blip_itm_scorer_matches_forward(blip, images):
    itm = blip.itm_scorer(images[:3], TEXTS[:6], batch_size=4)
    assert itm.image_states.shape == (3, 17, 32) and itm.image_state_bytes == 17 * 32 * 4 and itm.prepare_seconds > 0
    pairs_i, pairs_c = np.array([0, 1, 2, 2]), np.array([5, 0, 3, 1])
    with torch.inference_mode():
        tok = blip.tokenize([TEXTS[c] for c in pairs_c])
        ref = blip.model(pixel_values=_pixels(blip, [images[i] for i in pairs_i]), use_itm_head=True, **tok).itm_score
    np.testing.assert_allclose(itm.score_pairs(pairs_i, pairs_c), ref[:, 1].numpy(), atol=1e-5)
    prob = blip.itm_scorer(images[:3], TEXTS[:6], output='probability')
    np.testing.assert_allclose(prob.score_pairs(pairs_i, pairs_c), ref.softmax(-1)[:, 1].numpy(), atol=1e-5)
    # through the PairScorer call: t2i rows are captions, candidates images
    got = itm(np.array([5, 0]), np.array([[0, 2], [1, 1]]), 't2i')
    np.testing.assert_allclose(got, itm.score_pairs(np.array([0, 2, 1, 1]), np.array([5, 5, 0, 0])).reshape(2, 2), atol=1e-6)
    raises(lambda: blip.itm_scorer(images[:1], TEXTS[:1], output='softmax'), '`output`', 'logit')


def test_blip2_itm_scorer_matches_forward(blip2, images):
    itm = blip2.itm_scorer(images[:2], TEXTS[:4])
    pairs_i, pairs_c = np.array([0, 1, 1]), np.array([3, 0, 2])
    with torch.inference_mode():
        tok = blip2.tokenize([TEXTS[c] for c in pairs_c])
        ref = blip2.model(pixel_values=_pixels(blip2, [images[i] for i in pairs_i]), use_image_text_matching_head=True,
                          **tok).logits_per_image
    np.testing.assert_allclose(itm.score_pairs(pairs_i, pairs_c), ref[:, 1].numpy(), atol=1e-5)
    S = _max_over_tokens_similarity(blip2.encode_images(images[:2]), blip2.encode_texts(TEXTS[:4]))
    r = rerank(S, itm, depth=2)          # BLIP-2 as LAVIS evaluates it: ITC first stage + ITM on its top 2
    assert r.n_pairs == {'i2t': 4, 't2i': 8}


# ---------------------------------------------------------------- VGG-19 fc7

VGG19_KEYS = [  # torchvision.models.vgg19().state_dict(): names and shapes
    ('features.0.weight', (64, 3, 3, 3)), ('features.0.bias', (64,)), ('features.2.weight', (64, 64, 3, 3)), ('features.2.bias', (64,)),
    ('features.5.weight', (128, 64, 3, 3)), ('features.5.bias', (128,)), ('features.7.weight', (128, 128, 3, 3)), ('features.7.bias', (128,)),
    ('features.10.weight', (256, 128, 3, 3)), ('features.10.bias', (256,)), ('features.12.weight', (256, 256, 3, 3)),
    ('features.12.bias', (256,)), ('features.14.weight', (256, 256, 3, 3)), ('features.14.bias', (256,)),
    ('features.16.weight', (256, 256, 3, 3)), ('features.16.bias', (256,)), ('features.19.weight', (512, 256, 3, 3)),
    ('features.19.bias', (512,)), ('features.21.weight', (512, 512, 3, 3)), ('features.21.bias', (512,)),
    ('features.23.weight', (512, 512, 3, 3)), ('features.23.bias', (512,)), ('features.25.weight', (512, 512, 3, 3)),
    ('features.25.bias', (512,)), ('features.28.weight', (512, 512, 3, 3)), ('features.28.bias', (512,)),
    ('features.30.weight', (512, 512, 3, 3)), ('features.30.bias', (512,)), ('features.32.weight', (512, 512, 3, 3)),
    ('features.32.bias', (512,)), ('features.34.weight', (512, 512, 3, 3)), ('features.34.bias', (512,)),
    ('classifier.0.weight', (4096, 25088)), ('classifier.0.bias', (4096,)), ('classifier.3.weight', (4096, 4096)),
    ('classifier.3.bias', (4096,)), ('classifier.6.weight', (1000, 4096)), ('classifier.6.bias', (1000,))]


def test_vgg19_layout_preprocessing_and_weights(images, tmp_path):
    enc = Vgg19Fc7Encoder(seed=0)
    assert [(k, tuple(v.shape)) for k, v in enc.model.state_dict().items()] == VGG19_KEYS
    assert enc.name == 'random-init VGG-19 fc7'
    x = _ImageNetTransform()(_to_pil(images[1]))        # coffee, 400 x 600 -> 256 x 384 -> centre 224 x 224
    assert x.shape == (3, 224, 224)
    a = np.asarray(_to_pil(images[1]).resize((384, 256), Image.BILINEAR), np.float32)[16:240, 80:304] / 255
    np.testing.assert_allclose(x.numpy(), ((a - (.485, .456, .406)) / (.229, .224, .225)).transpose(2, 0, 1), atol=1e-5)
    feats = enc.encode_images(images[1:2])
    assert feats.values.shape == (1, 4096) and (feats.values >= 0).all() and feats.bytes_per_item == 4096 * 4
    with torch.inference_mode():   # fc7 = classifier.3 after its ReLU, by hand
        px = x[None]
        h = torch.flatten(enc.model.avgpool(enc.model.features(px)), 1)
        h = torch.relu(enc.model.classifier[3](torch.relu(enc.model.classifier[0](h))))
    np.testing.assert_allclose(feats.values, h.numpy(), rtol=1e-4, atol=1e-6)
    torch.save(enc.model.state_dict(), tmp_path / 'vgg19.pth')
    loaded = Vgg19Fc7Encoder(tmp_path / 'vgg19.pth', seed=1)
    assert loaded.name == 'VGG-19 fc7 (vgg19.pth)'
    np.testing.assert_array_equal(loaded.encode_images(images[1:2]).values, feats.values)
    raises(lambda: Vgg19Fc7Encoder(tmp_path / 'none.pth'), 'none.pth', 'torchvision vgg19 state_dict', exc=FileNotFoundError)
    raises(lambda: loaded.encode_texts(['a cat']), 'images only', exc=TypeError)


def test_agrees_with_zoo_rerank_matrices_within_the_depth():
    "fico_itr.zoo.rerank_matrices (LAVIS's layout: -100 beyond the depth) ranks the reranked items as `rerank` does."
    from fico_itr.zoo import _lavis_rerank
    F = _first_stage(8, 3, seed=7)
    table = np.random.default_rng(8).standard_normal(F.shape).astype(np.float32)
    ours = rerank(F, CallableScorer(lambda i, c: table[i, c]), depth=5, combine='add')
    lavis_i2t, lavis_t2i = _lavis_rerank(F, table, 5)
    for M, L in ((ours.i2t, lavis_i2t), (ours.t2i, lavis_t2i)):
        np.testing.assert_array_equal(np.argsort(-M, 1, kind='stable')[:, :5], np.argsort(-L, 1, kind='stable')[:, :5])
        assert (np.sort(L, 1)[:, :-5] == -100).all()                     # theirs: every other item tied at -100
        assert len(np.unique(np.sort(M, 1)[:, :-5])) > 1                 # ours: the first-stage scores, in order


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_matches_cpu(tokenizer, blip, blip2, images):
    "The same random-init models on CUDA give the CPU's embeddings, ITM scores and max-over-tokens similarities."
    cpu, gpu = _clip(tokenizer), _clip(tokenizer, device='cuda')
    np.testing.assert_allclose(gpu.encode_images(images).values, cpu.encode_images(images).values, atol=1e-4)
    np.testing.assert_allclose(gpu.encode_texts(TEXTS).values, cpu.encode_texts(TEXTS).values, atol=1e-4)
    half = _clip(tokenizer, device='cuda', dtype='float16').encode_images(images)
    np.testing.assert_allclose(half.values, cpu.encode_images(images).values, atol=1e-2)
    tokens, txt = blip2.encode_images(images), blip2.encode_texts(TEXTS)
    np.testing.assert_allclose(_max_over_tokens_similarity(tokens, txt, device='cuda'), _max_over_tokens_similarity(tokens, txt), atol=1e-5)
    blip_gpu = BlipDualEncoder.from_config(_tiny_config('BlipForImageTextRetrieval', len(tokenizer)),
                                           BlipImageProcessor(size={'height': 32, 'width': 32}), tokenizer, device='cuda')
    pi, pc = np.array([0, 1, 2]), np.array([4, 0, 7])     # same seed, same weights as the CPU fixture
    np.testing.assert_allclose(blip_gpu.itm_scorer(images[:3], TEXTS).score_pairs(pi, pc),
                               blip.itm_scorer(images[:3], TEXTS).score_pairs(pi, pc), atol=1e-4)


# ---------------------------------------------------------------- a split from an image folder

def _saved_clip(clip, tokenizer, folder):
    CLIPProcessor(image_processor=clip.image_transform.image_processor, tokenizer=tokenizer).save_pretrained(folder)
    clip.model.save_pretrained(folder)
    return folder


def _photo_split(images, tmp_path):
    from fico_itr.data import load_lavis_annotations
    (tmp_path / 'images').mkdir()
    for i, a in enumerate(images[:4]): Image.fromarray(a).save(tmp_path / 'images' / f'p{i}.jpg', quality=90)
    (tmp_path / 'split.json').write_text(__import__('json').dumps([{'image': f'train/p{i}.jpg', 'caption': TEXTS[2 * i:2 * i + 2]}
                                                                   for i in range(4)]))
    return load_lavis_annotations(tmp_path / 'split.json')


def test_encode_split_round_trip_and_ids(clip, tokenizer, images, tmp_path):
    from fico_itr.encoders import load_encoder, _describe_model, encode_split, _EncodedSplit, _weights_sha256
    folder = _saved_clip(clip, tokenizer, tmp_path / 'random-init-clip')
    split = _photo_split(images, tmp_path)
    enc = load_encoder(folder)
    e = encode_split(enc, split, tmp_path / 'images', _describe_model(enc, folder, 'clip', name='random-init CLIP'))
    np.testing.assert_array_equal(e.images.values, enc.encode_images([tmp_path / 'images' / f'p{i}.jpg' for i in range(4)]).values)
    assert list(e.image_ids) == [f'train/p{i}.jpg' for i in range(4)]      # found by base name in the folder
    back = _EncodedSplit.load(e.save(tmp_path / 'emb.npz'))
    np.testing.assert_array_equal(back.captions.values, e.captions.values)
    assert (back.model, back.split, back.seconds) == (e.model, e.split, e.seconds)
    h = _weights_sha256(folder)
    assert e.model['weights_sha256'] == h and len(h) == 64
    w = folder / 'model.safetensors'; w.write_bytes(w.read_bytes()[:-1] + bytes([w.read_bytes()[-1] ^ 1]))
    assert _weights_sha256(folder) != h                                       # one flipped bit: another hash
    (tmp_path / 'cut.npz').write_bytes((tmp_path / 'emb.npz').read_bytes()[:300])
    raises(lambda: _EncodedSplit.load(tmp_path / 'cut.npz'), 'is not a readable .npz')
    np.savez(tmp_path / 'other.npz', images=np.zeros(3))
    raises(lambda: _EncodedSplit.load(tmp_path / 'other.npz'), 'lacks caption_ids, captions, image_ids, meta')


def test_split_images_and_model_folder_errors(clip, tokenizer, images, tmp_path):
    from fico_itr.encoders import load_encoder, _split_image_paths, _model_kind
    split = _photo_split(images, tmp_path)
    (tmp_path / 'images' / 'p1.jpg').unlink(); (tmp_path / 'images' / 'p3.jpg').unlink()
    raises(lambda: _split_image_paths(split, tmp_path / 'images'), '2 of the 4 images', 'train/p1.jpg, train/p3.jpg', exc=FileNotFoundError)
    raises(lambda: _split_image_paths(split, tmp_path / 'images', show=1), '(first: train/p1.jpg)', exc=FileNotFoundError)
    (tmp_path / 'empty').mkdir()
    raises(lambda: _split_image_paths(split, tmp_path / 'empty'), 'is empty', 'train/p0.jpg', exc=FileNotFoundError)
    raises(lambda: _split_image_paths(EvaluationSplit.uniform(2, 1), tmp_path / 'images'), 'names no image files')
    (tmp_path / 'images' / 'p1.jpg').write_bytes(b'\xff\xd8\xff' + b'\0' * 50)
    raises(lambda: _to_pil(tmp_path / 'images' / 'p1.jpg'), 'p1.jpg', 'is not a readable image')
    folder = _saved_clip(clip, tokenizer, tmp_path / 'random-init-clip')
    assert _model_kind(folder) == 'clip'
    raises(lambda: load_encoder(folder, 'siglip'), '--kind siglip but model folder', 'pass --kind clip')
    raises(lambda: load_encoder(folder, 'vgg19'), "unknown kind 'vgg19'", 'clip, siglip, blip, blip2, open_clip')
    raises(lambda: load_encoder(folder, precision='fp8'), "`precision` 'fp8'", 'fp32, fp16, bf16')
    raises(lambda: load_encoder(tmp_path / 'none'), 'does not exist', 'save_pretrained', exc=FileNotFoundError)
    raises(lambda: load_encoder(folder / 'config.json'), 'is a file', exc=FileNotFoundError)
    (tmp_path / 'bert').mkdir(); (tmp_path / 'bert' / 'config.json').write_text('{"model_type": "bert"}')
    raises(lambda: load_encoder(tmp_path / 'bert'), "holds a 'bert' model", 'clip, siglip, blip, blip-2')
