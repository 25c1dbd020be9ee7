"""The data shipped in fico_itr/assets is the real data it says it is: each shipped split equals what the loader of
its published layout reads from the original files in ../shared/data (tests may read it; the package may not), and
the assets README names every file."""
from pathlib import Path
import numpy as np
import pytest
from fico_itr.data import (coco5k_split, f30k1k_split, mirflickr25k, coco5k_test_captions, load_vse_precomp,
                           load_mirflickr25k)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / 'shared' / 'data'
ASSETS = ROOT / 'fico_itr' / 'assets'
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason='../shared/data is not beside this checkout')


@needs_data
@pytest.mark.parametrize('shipped, folder, split', [(coco5k_split, 'coco_karpathy_test', 'testall'),
                                                    (f30k1k_split, 'f30k_karpathy_test', 'test')])
def test_shipped_splits_equal_the_originals(shipped, folder, split):
    ours, ref = shipped(), load_vse_precomp(DATA / folder, split)
    for attr in ('cap2img', 'n_images', 'image_ids', 'captions', 'image_files'):
        got, want = getattr(ours, attr), getattr(ref, attr)
        assert (got is None and want is None) or np.array_equal(np.asarray(got, dtype=object), np.asarray(want, dtype=object)), attr


@needs_data
def test_shipped_mirflickr_equals_the_mat_files():
    ours, ref = mirflickr25k(), load_mirflickr25k(DATA / 'mirflickr25k')
    assert ours.labels.dtype == ref.labels.dtype and np.array_equal(ours.labels, ref.labels)
    assert ours.texts.dtype == ref.texts.dtype and np.array_equal(ours.texts, ref.texts)


def test_shipped_counts_and_readme():
    caps, ids = coco5k_test_captions()
    assert (len(caps), len(set(ids.tolist()))) == (25000, 5000)
    f30k, mir = f30k1k_split(), mirflickr25k()
    assert (f30k.n_images, f30k.n_captions, mir.labels.shape, mir.texts.shape) == (1000, 5000, (20015, 24), (20015, 1386))
    readme = (ASSETS / 'README.md').read_text()
    for f in ASSETS.iterdir():
        if f.name != 'README.md': assert f'`{f.name}`' in readme, f'{f.name} is not described in fico_itr/assets/README.md'
    assert sum(f.stat().st_size for f in ASSETS.iterdir()) < 1_000_000, 'the shipped data should stay small'
