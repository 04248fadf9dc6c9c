"""The package's shape: layers, import cycles and file sizes.

Every import of a prompt_tuning module is read with `ast` (those inside
functions too), so the layering cannot be dodged by a late import.
"""
import ast
import collections
import dataclasses
import functools
import pathlib

import pytest

_REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
_PACKAGE = 'prompt_tuning'

# Folder of prompt_tuning/ -> layer; a module may import only its own layer or
# layers below. `tasks` (the root tasks/ folder, installed as
# prompt_tuning.tasks) sits below everything: importable by all, it imports
# nothing of prompt_tuning but itself.
LAYERS = {
    'tasks': -1,
    'utils': 0,
    'checkpoints': 1,
    'model': 2,
    'methods': 3,
    'training': 4,
    'serving': 5,
    'interop': 5,
    'cli': 6,
    'experiments': 7,
    'benchmarks': 7,
}
# Modules directly in prompt_tuning/: the `python -m prompt_tuning.X` commands.
COMMANDS_LAYER = 8
# prompt_tuning/__init__.py runs before any of its modules, so it must sit at
# the bottom and import nothing.
ROOT_PACKAGE_LAYER = 0
# Folders of prompt_tuning/ that hold data, not code.
DATA_FOLDERS = frozenset({'data'})
MAX_LINES = 700


@dataclasses.dataclass(frozen=True)
class Import:
  """One import statement's arrow from a module to a module."""
  source: str  # importing module, e.g. prompt_tuning.model.t5
  target: str  # imported module, e.g. prompt_tuning.model.layers
  where: str  # 'file:line', relative to the repository root
  text: str  # the statement as written


def _module_files(package_dir, package_name):
  """Maps module name -> .py file for a package folder (data folders skipped)."""
  modules = {}
  for path in sorted(package_dir.rglob('*.py')):
    parts = path.relative_to(package_dir).with_suffix('').parts
    if parts[0] in DATA_FOLDERS:
      continue
    if parts[-1] == '__init__':
      parts = parts[:-1]
    modules['.'.join((package_name,) + parts)] = path
  return modules


def _all_module_files(repo_root):
  modules = _module_files(repo_root / _PACKAGE, _PACKAGE)
  modules.update(_module_files(repo_root / 'tasks', f'{_PACKAGE}.tasks'))
  return modules


def _resolve_relative(module, path, node):
  """The absolute module an `ImportFrom` names (relative ones resolved)."""
  if not node.level:
    return node.module
  package = module.split('.')
  if path.name != '__init__.py':
    package = package[:-1]
  if node.level > 1:
    package = package[:-(node.level - 1)]
  return '.'.join(package + ([node.module] if node.module else []))


def _imports(modules, repo_root):
  """Every import of a prompt_tuning module, and the ones that name none.

  `from A import y` is an arrow to A.y when that is a module, else to A.
  `import A.B` is an arrow to A.B. Parent packages that Python runs on the way
  are not counted as arrows: only what the statement names.

  Returns:
    (imports, unknown): lists of `Import`; `unknown` holds the statements
    naming a prompt_tuning module that does not exist.
  """
  imports, unknown = [], []
  for module, path in sorted(modules.items()):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        base = _resolve_relative(module, path, node)
        # A module `base.y` if there is one, else a name defined in `base`.
        names = [f'{base}.{alias.name}'
                 if f'{base}.{alias.name}' in modules else base
                 for alias in node.names]
      else:
        continue
      where = f'{path.relative_to(repo_root)}:{node.lineno}'
      for target in names:
        if not (target == _PACKAGE or target.startswith(_PACKAGE + '.')):
          continue
        arrow = Import(module, target, where, ast.unparse(node))
        if target not in modules:
          unknown.append(arrow)
        elif target != module:
          imports.append(arrow)
  return imports, unknown


def _layer(module):
  """(layer number, layer name) of a module; layer None if not in the table."""
  parts = module.split('.')
  if len(parts) == 1:
    return ROOT_PACKAGE_LAYER, 'the package __init__'
  folder = parts[1]
  if folder in LAYERS:
    return LAYERS[folder], folder
  if len(parts) == 2 and not (_REPO_ROOT / _PACKAGE / folder).is_dir():
    return COMMANDS_LAYER, 'commands'
  return None, folder


def _layer_violations(imports):
  messages = []
  for arrow in imports:
    source_layer, source_name = _layer(arrow.source)
    target_layer, target_name = _layer(arrow.target)
    if source_layer is None or target_layer is None:
      continue  # reported by the layer-table test
    if target_layer > source_layer:
      messages.append(
          f'{arrow.where}: `{arrow.text}`: {arrow.source} '
          f'({source_name}, layer {source_layer}) imports {arrow.target} '
          f'({target_name}, layer {target_layer})')
  return messages


def _arrows(imports):
  return '\n'.join(f'      {i.where}: `{i.text}` ({i.source} -> {i.target})'
                   for i in imports)


def _cycles(imports):
  """One concrete cycle per strongly connected set of modules (Tarjan)."""
  graph = collections.defaultdict(dict)  # source -> target -> first Import
  for arrow in imports:
    graph[arrow.source].setdefault(arrow.target, arrow)
  index, low, on_stack, stack, components = {}, {}, set(), [], []

  def connect(node):
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for nxt in sorted(graph.get(node, {})):
      if nxt not in index:
        connect(nxt)
        low[node] = min(low[node], low[nxt])
      elif nxt in on_stack:
        low[node] = min(low[node], index[nxt])
    if low[node] == index[node]:
      component = []
      while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == node:
          break
      if len(component) > 1:
        components.append(sorted(component))

  for node in sorted(graph):
    if node not in index:
      connect(node)

  cycles = []
  for component in components:
    members = set(component)
    start = component[0]
    # Breadth-first from `start` inside the component until a module that
    # imports `start`: the shortest cycle through it.
    previous = {start: None}
    queue = collections.deque([start])
    while queue:
      last = queue.popleft()
      if start in graph[last]:
        break
      for nxt in sorted(graph[last]):
        if nxt in members and nxt not in previous:
          previous[nxt] = last
          queue.append(nxt)
    path = [last]
    while previous[path[-1]] is not None:
      path.append(previous[path[-1]])
    path.reverse()
    path.append(start)
    edges = [graph[a][b] for a, b in zip(path, path[1:])]
    inside = [graph[a][b] for a in component for b in sorted(graph[a])
              if b in members]
    cycles.append(
        f'cycle among {len(component)} modules ({", ".join(component)}), '
        'for example:\n' + _arrows(edges) +
        f'\n    all {len(inside)} arrows among them:\n' + _arrows(inside))
  return cycles


@functools.cache
def _package_imports():
  return _imports(_all_module_files(_REPO_ROOT), _REPO_ROOT)


def test_every_subpackage_is_in_the_layer_table():
  package_dir = _REPO_ROOT / _PACKAGE
  folders = sorted(
      p.name for p in package_dir.iterdir()
      if p.is_dir() and p.name not in DATA_FOLDERS and any(p.rglob('*.py')))
  missing = [f for f in folders if f not in LAYERS]
  if missing:
    pytest.fail(f'{_PACKAGE}/ folders without a layer: {missing}; place each '
                f'in LAYERS of {pathlib.Path(__file__).name}')
  stale = [f for f in LAYERS if f != 'tasks' and f not in folders]
  if stale:
    pytest.fail(f'LAYERS names folders that do not exist: {stale}')


def test_imports_name_existing_modules():
  _, unknown = _package_imports()
  if unknown:
    pytest.fail('imports of prompt_tuning modules that do not exist:\n  '
                + '\n  '.join(f'{u.where}: `{u.text}`' for u in unknown))


def test_imports_respect_the_layers():
  imports, _ = _package_imports()
  violations = _layer_violations(imports)
  if violations:
    pytest.fail(f'{len(violations)} imports point up the layer table (a '
                'module may import only its own layer or lower ones):\n  '
                + '\n  '.join(violations))


def test_no_import_cycles():
  imports, _ = _package_imports()
  cycles = _cycles(imports)
  if cycles:
    pytest.fail(f'{len(cycles)} import cycles among prompt_tuning modules:\n  '
                + '\n  '.join(cycles))


def test_no_file_over_the_line_limit():
  too_long = []
  for path in sorted((_REPO_ROOT / _PACKAGE).rglob('*.py')):
    lines = len(path.read_text().splitlines())
    if lines > MAX_LINES:
      too_long.append(f'{path.relative_to(_REPO_ROOT)}: {lines} lines')
  if too_long:
    pytest.fail(f'files over {MAX_LINES} lines (split them by concept):\n  '
                + '\n  '.join(too_long))


def test_import_reader_on_a_made_up_package(tmp_path):
  """The reader itself: module vs name imports, relative and late imports."""
  files = {
      f'{_PACKAGE}/__init__.py': '',
      f'{_PACKAGE}/model/__init__.py': 'from prompt_tuning.model import a\n',
      f'{_PACKAGE}/model/a.py': (
          'from prompt_tuning.model import b\n'
          'from prompt_tuning.model.b import some_name\n'),
      f'{_PACKAGE}/model/b.py': (
          'def f():\n'
          '  from . import a\n'
          '  import prompt_tuning.methods.c\n'),
      f'{_PACKAGE}/methods/__init__.py': 'CONFIG = 1\n',
      f'{_PACKAGE}/methods/c.py': (
          'from prompt_tuning.methods import CONFIG\n'
          'from prompt_tuning.nowhere import x\n'),
      f'{_PACKAGE}/train.py': 'from prompt_tuning import methods, tasks\n',
      'tasks/__init__.py': 'from prompt_tuning import train\n',
  }
  for name, text in files.items():
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text(text)
  imports, unknown = _imports(_all_module_files(tmp_path), tmp_path)
  arrows = {(i.source, i.target) for i in imports}
  p = _PACKAGE
  assert arrows == {
      (p + '.model', p + '.model.a'),
      (p + '.model.a', p + '.model.b'),
      (p + '.model.b', p + '.model.a'),
      (p + '.model.b', p + '.methods.c'),
      (p + '.methods.c', p + '.methods'),
      (p + '.train', p + '.methods'),
      (p + '.train', p + '.tasks'),
      (p + '.tasks', p + '.train'),
  }
  assert [u.text for u in unknown] == ['from prompt_tuning.nowhere import x']
  violations = _layer_violations(imports)
  assert len(violations) == 2, violations
  assert 'model/b.py:3' in violations[0] and 'layer 3' in violations[0]
  assert 'tasks/__init__.py:1' in violations[1]
  cycles = _cycles(imports)
  assert len(cycles) == 2, cycles
  assert 'model/a.py:1' in cycles[0] and 'model/b.py:2' in cycles[0]
  assert 'train.py:1' in cycles[1] and 'tasks/__init__.py:1' in cycles[1]


def test_architecture_doc_names_every_module_in_its_folder_row():
  """docs/architecture.md's layer table lists each folder's modules."""
  repo = _REPO_ROOT
  rows = [line for line in (repo / 'docs' / 'architecture.md').read_text()
          .splitlines() if line.startswith('| ') and '`prompt_tuning/' in line]
  missing = []
  for folder in LAYERS:
    if folder == 'tasks':  # the root tasks/ folder, not in prompt_tuning/
      continue
    row = next((r for r in rows if f'`prompt_tuning/{folder}/`' in r), None)
    if row is None:
      missing.append(f'{folder}/ (no row)')
      continue
    for module in sorted((repo / _PACKAGE / folder).glob('*.py')):
      if module.name != '__init__.py' and f'`{module.name}`' not in row:
        missing.append(f'{folder}/{module.name}')
  assert not missing, ('docs/architecture.md does not name: '
                       + ', '.join(missing))
