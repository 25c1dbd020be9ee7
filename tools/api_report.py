"""A report of the public API's size (issue 14): prints, never fails.

  (a) public names: the sum over fico_itr/*.py of their `__all__` (fico_itr/__init__.py re-exports names defined
      elsewhere and is not counted);
  (b) names public in two or more modules;
  (c) the longest `#| export` / `#| exports` cell of the notebooks (non-blank lines of code, directives not counted) and how many
      such cells are longer than 40 lines (the ten longest listed).

Usage: python tools/api_report.py
"""
import ast
import json
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONG = 40


def public_names() -> dict[str, list[str]]:
    "Module name -> its `__all__` (the list literals nbdev writes, `__all__ += [...]` included)."
    out = {}
    for py in sorted((ROOT / 'fico_itr').glob('*.py')):
        if py.name in ('__init__.py', '_modidx.py'): continue
        names = []
        for node in ast.walk(ast.parse(py.read_text(encoding='utf-8'))):
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, 'target', None)
            if isinstance(node, (ast.Assign, ast.AugAssign)) and isinstance(target, ast.Name) and target.id == '__all__':
                try: names += list(ast.literal_eval(node.value))
                except ValueError: pass
        out[py.stem] = names
    return out


def export_cells():
    "(lines of code, notebook, cell index) of every `#| export` / `#| exports` cell under nbs/."
    for nb in sorted((ROOT / 'nbs').rglob('*.ipynb')):
        if any(p.startswith(('_', '.')) for p in nb.relative_to(ROOT / 'nbs').parts): continue
        for i, c in enumerate(json.loads(nb.read_text(encoding='utf-8'))['cells']):
            if c['cell_type'] != 'code': continue
            lines = ''.join(c['source']).splitlines()
            heads = [l.split('|', 1)[1].split()[0].rstrip(':') for l in lines
                     if l.lstrip().startswith('#|') and l.split('|', 1)[1].split()]
            if {'export', 'exports'} & set(heads):
                code = [l for l in lines if l.strip() and not l.lstrip().startswith('#|')]
                yield len(code), str(nb.relative_to(ROOT)), i


def main():
    modules = public_names()
    homes = defaultdict(list)
    for mod, names in modules.items():
        for n in names: homes[n].append(mod)
    total = sum(map(len, modules.values()))
    print(f'(a) public names: {total} in {len(modules)} modules (sum of their __all__; fico_itr/__init__.py not counted)')
    print('    ' + ', '.join(f'{m} {len(n)}' for m, n in sorted(modules.items(), key=lambda kv: -len(kv[1]))))
    shared = {n: ms for n, ms in sorted(homes.items()) if len(ms) > 1}
    print(f'(b) names public in two or more modules: {len(shared)}'
          + ''.join(f'\n    {n}: {", ".join(ms)}' for n, ms in shared.items()))
    cells = sorted(export_cells(), reverse=True)
    if cells:
        n, nb, i = cells[0]
        print(f'(c) longest exported cell: {n} lines, {nb} cell {i}; exported cells over {LONG} lines: '
              f'{sum(c[0] > LONG for c in cells)} of {len(cells)}'
              + ''.join(f'\n    {n} lines: {nb} cell {i}' for n, nb, i in cells[:10] if n > LONG)
              + ('\n    ...' if sum(c[0] > LONG for c in cells) > 10 else ''))


if __name__ == '__main__':
    main()
