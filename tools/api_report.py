"""A report of the public API's size (issue 14): prints, never fails.

  (a) public names: the sum over fico_itr/*.py of their `__all__` (fico_itr/__init__.py re-exports names defined
      elsewhere and is not counted);
  (b) names public in two or more modules;
  (c) the longest `#| export` / `#| exports` cell of the notebooks (non-blank lines of code, directives not counted) and how many
      such cells are longer than 40 lines (the ten longest listed);
  (d) layering: imports of a module from a notebook later in the reading order (`from .x import`, `from fico_itr.x
      import`, `import fico_itr.x`, inside functions too), listed one by one; fico_itr/__init__.py, the top floor,
      is not counted;
  (e) docments: the public functions and classes (their `__init__`) whose parameters lack an inline comment, as
      fastcore's `docments` reads them (`self`, `cls`, `*args` and `**kwargs` not counted).

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


def module_floors() -> dict[str, int]:
    "Module name -> the number of the notebook that exports it (the reading order: 00_core ... 23_init)."
    floors = {}
    for py in (ROOT / 'fico_itr').glob('*.py'):
        head = py.read_text(encoding='utf-8').split('\n', 3)[:3]
        src = next((l.split('../nbs/', 1)[1] for l in head if 'File to edit: ../nbs/' in l), None)
        if src and src[:2].isdigit(): floors[py.stem] = int(src[:2])
    return floors


def upward_imports():
    "(importer, imported) pairs where the imported module's notebook comes later in the reading order."
    floors = module_floors()
    for mod, floor in sorted(floors.items(), key=lambda kv: kv[1]):
        if mod == '__init__': continue
        for node in ast.walk(ast.parse((ROOT / 'fico_itr' / f'{mod}.py').read_text(encoding='utf-8'))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ''] if node.level == 0 else [f'fico_itr.{node.module}' if node.module else '']
                if node.level and not node.module: names = [f'fico_itr.{a.name}' for a in node.names]
            elif isinstance(node, ast.Import): names = [a.name for a in node.names]
            else: continue
            for n in names:
                dep = n.split('.')[1] if n.startswith('fico_itr.') else None
                if dep in floors and floors[dep] > floor: yield mod, dep


def undocumented() -> tuple[int, dict[str, list[str]]]:
    "(public callables, {module.name: parameters without a docment})."
    import dataclasses, importlib, inspect, sys
    from fastcore.docments import docments
    sys.path.insert(0, str(ROOT))
    n, out = 0, {}
    for mod, names in public_names().items():
        m = importlib.import_module(f'fico_itr.{mod}')
        for name in names:
            obj = getattr(m, name)
            dc = inspect.isclass(obj) and dataclasses.is_dataclass(obj)   # docments reads a dataclass's fields
            f = obj if dc or not inspect.isclass(obj) else obj.__init__
            if not callable(f) or f is object.__init__: continue
            n += 1
            params = [p.name for p in inspect.signature(f).parameters.values()
                      if p.name not in ('self', 'cls') and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            try: docs = docments(f, full=True)
            except (OSError, TypeError): docs = {}          # no source to read (a C function, a generated method)
            bare = [p for p in params if not (docs.get(p) or {}).get('docment')]
            if bare: out[f'{mod}.{name}'] = bare
    return n, out


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
    up = sorted(set(upward_imports()))
    print(f'(d) imports of a module later in the reading order: {len(up)}'
          + ''.join(f'\n    {a} -> {b}' for a, b in up))
    n, bare = undocumented()
    print(f'(e) public functions and classes with parameters lacking a docment: {len(bare)} of {n}'
          + ''.join(f'\n    {k}: {", ".join(v)}' for k, v in bare.items()))


if __name__ == '__main__':
    main()
