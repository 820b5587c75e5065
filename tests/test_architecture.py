# Copyright (c) mmakd contributors. All rights reserved.
"""The layering of docs/architecture.md: what may import what, and files
small enough to read in one sitting."""
import ast
import os
import os.path as osp
from typing import Iterator, List, Tuple

from helpers import REPO

# The longest a Python file in mmakd/ or tools/ may be (issue 28).
MAX_LINES = 450

# A layer's modules may not import these packages (docs/architecture.md).
FORBIDDEN = {
    'registry': ('mmakd.models', 'mmakd.engine', 'mmakd.datasets',
                 'mmakd.apis', 'mmakd.testing'),
    'models': ('mmakd.apis', 'mmakd.engine', 'mmakd.testing'),
    'engine': ('mmakd.apis', 'mmakd.models', 'mmakd.testing'),
    'datasets':
    ('mmakd.apis', 'mmakd.models', 'mmakd.engine', 'mmakd.testing'),
    'utils': ('mmakd.apis', 'mmakd.models', 'mmakd.testing'),
    'testing': ('mmakd.apis', ),
}


def _python_files(*roots: str) -> Iterator[str]:
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(osp.join(REPO, root)):
            dirnames[:] = [d for d in dirnames if not d.startswith('.')]
            for name in sorted(filenames):
                if name.endswith('.py'):
                    yield osp.relpath(osp.join(dirpath, name), REPO)


def _layer(path: str) -> str:
    parts = path[:-len('.py')].split(os.sep)
    return parts[1] if len(parts) > 1 else ''


def imported_modules(path: str) -> List[Tuple[int, str]]:
    """The absolute names of the ``mmakd`` modules ``path`` imports, with
    their line, relative imports resolved against the file's package."""
    with open(osp.join(REPO, path)) as f:
        tree = ast.parse(f.read(), path)
    # A module's package, and an __init__'s own package, are its folder.
    package = path[:-len('.py')].split(os.sep)[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                parent = package[:len(package) - node.level + 1]
                base = '.'.join(parent + ([base] if base else []))
            found += [(node.lineno, f'{base}.{alias.name}')
                      for alias in node.names]
    return [(line, name) for line, name in found
            if name == 'mmakd' or name.startswith('mmakd.')]


def test_imported_modules_resolves_relative_imports():
    # Independent of the rule: a known file's known imports.
    names = [
        name for _, name in imported_modules(
            osp.join('mmakd', 'models', 'avatars', 'teacher_dropout.py'))
    ]
    assert 'mmakd.registry.MODELS' in names
    assert 'mmakd.models.avatars.functional.check_probability' in names


def test_layers_import_only_what_they_may():
    bad = []
    for path in _python_files('mmakd'):
        forbidden = FORBIDDEN.get(_layer(path), ())
        bad += [
            f'{path}:{line} imports {name}'
            for line, name in imported_modules(path)
            if any(name == f or name.startswith(f + '.') for f in forbidden)
        ]
    assert not bad, ('imports across layers (docs/architecture.md, '
                     f'FORBIDDEN here): {bad}')


def test_nothing_in_the_package_imports_tools_or_tests():
    for path in _python_files('mmakd'):
        with open(osp.join(REPO, path)) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            names = ([a.name
                      for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ''] if isinstance(node, ast.ImportFrom)
                     and not node.level else [])
            for name in names:
                assert name.split('.')[0] not in ('tools', 'tests',
                                                  'helpers'), (path, name)


def test_files_are_small_enough_to_read():
    long = {}
    for path in _python_files('mmakd', 'tools'):
        with open(osp.join(REPO, path)) as f:
            count = sum(1 for _ in f)
        if count > MAX_LINES:
            long[path] = count
    assert not long, f'over {MAX_LINES} lines: {long}'
