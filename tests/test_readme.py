"""The README works as written: every ```python block runs verbatim, in order, in one namespace (as a reader pasting
them into one session would), from a directory with nothing in it; the set-up it describes exists."""
import os, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / 'README.md').read_text(encoding='utf-8')
BLOCKS = re.findall(r'^```python\n(.*?)^```', README, flags=re.S | re.M)


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 2, 'the README lost its runnable examples'


def test_readme_python_blocks_run_verbatim(tmp_path, capsys):
    ns, cwd = {'__name__': '__readme__'}, os.getcwd()
    os.chdir(tmp_path)                      # no data files beside it: the examples use what ships with the package
    try:
        for i, block in enumerate(BLOCKS):
            try: exec(compile(block, f'README.md python block {i + 1}', 'exec'), ns)
            except Exception as e: pytest.fail(f'README.md python block {i + 1} raised {type(e).__name__}: {e}\n{block}')
    finally: os.chdir(cwd)
    out = capsys.readouterr().out
    res, table = ns['res'], ns['table']
    assert res.get('R@1', 'i2t', 'instance', dataset='coco-5k') < 1                 # random vectors: chance level
    assert {'coco-5k', 'coco-5k (5-fold mean, 1000 images each)'} <= set(res.table.dataset)
    assert 'my model' in out and 'BEiT-3 (paper)' in table.index and table.loc['my model', ('i2t', 'R@1', 'paper')] == 79.0


def test_readme_commands_exist():
    for cmd in re.findall(r'^bash (tools/\S+)', README, flags=re.M):
        assert (ROOT / cmd).exists(), cmd
    assert "pip install -e '.[notebooks]'" in README and 'jupyter lab nbs/' in README
    assert 'notebooks' in (ROOT / 'setup.py').read_text()
