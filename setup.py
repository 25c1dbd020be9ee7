"""setup.py for the nbdev 2 layout: metadata comes from settings.ini (no pkg_resources, see README)."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

here = Path(__file__).parent
cfg = ConfigParser(delimiters=['='])
cfg.read(here / 'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

extras = {
    'faiss': ['faiss-cpu>=1.7.4'],
    # model adapters (fico_itr.encoders) and CG features (fico_itr.hashing); open_clip brings torchvision, which needs
    # the torch build it was made for: install it beside a CUDA torch, not beside a CPU-only wheel of another version
    'models': ['transformers>=4.45', 'tokenizers>=0.15', 'pillow>=9', 'gensim>=4.3', 'open_clip_torch>=2.20'],
    'plots': ['matplotlib>=3.6', 'seaborn>=0.12'],
    'ray': ['ray>=2.9'],   # fico_itr.distributed: sharded search and evaluation on a Ray cluster
    'notebooks': ['jupyterlab>=4', 'matplotlib>=3.6', 'seaborn>=0.12'],
    # the dev tool set is pinned: nbdev 3 refuses settings.ini and plain nbdev<3 pulls an execnb that breaks
    'dev': ['nbdev==2.4.14', 'execnb==0.1.18', 'fastcore==1.12.4', 'pytest>=7', 'hypothesis>=6',
            'h5py>=3', 'matplotlib>=3.6', 'seaborn>=0.12', 'faiss-cpu>=1.7.4', 'nbconvert>=7', 'ray>=2.9',
            'jupyterlab>=4',   # tests/test_first_hour.py opens the tutorial in JupyterLab as the README says
            # the encoder and hashing tests: tiny models from configs, real photos bundled in scikit-image / scikit-learn
            'transformers>=4.45', 'tokenizers>=0.15', 'pillow>=9', 'gensim>=4.3', 'scikit-image>=0.21', 'scikit-learn>=1.2'],
    # peers the tests cross-check against (fico-itr 1.0.0 itself is installed into its own folder; eccv-caption is a
    # core requirement, see settings.ini)
    'peers': ['torchmetrics>=1.4', 'ranx>=0.3.19', 'pytrec-eval-terrier>=0.5.6'],
}

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=(here / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    license='Apache-2.0',
    keywords=cfg['keywords'].split(),
    url=cfg['git_url'],
    classifiers=[
        'Development Status :: 3 - Alpha',
        'Intended Audience :: Science/Research',
        'Natural Language :: English',
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    packages=setuptools.find_packages(include=['fico_itr', 'fico_itr.*']),
    include_package_data=True,
    package_data={'fico_itr': ['assets/*']},
    python_requires='>=' + cfg['min_python'],
    install_requires=cfg['requirements'].split(),
    extras_require=extras,
    entry_points={'console_scripts': cfg['console_scripts'].split(),
                  'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
    zip_safe=False,
)
