# Copyright (c) mmakd contributors. All rights reserved.
"""The lint gate (`make lint` in CI, .pre-commit-config.yaml for
contributors) runs one set of tools at one set of versions."""
import os.path as osp
import re
from importlib.metadata import version

import yaml

from helpers import REPO


def _pins() -> dict:
    pins = {}
    with open(osp.join(REPO, 'requirements', 'lint.txt')) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                name, pinned = line.split('==')
                pins[name] = pinned
    return pins


def test_lint_set_is_mmrazors():
    assert sorted(_pins()) == ['flake8', 'isort', 'yapf']


def test_pre_commit_hooks_pin_the_ci_versions():
    with open(osp.join(REPO, '.pre-commit-config.yaml')) as f:
        config = yaml.safe_load(f)
    hooks = {
        hook['id']: hook
        for repo in config['repos']
        for hook in repo['hooks']
    }
    assert sorted(hooks) == sorted([*_pins(), 'check-copyright'])
    for name, pinned in _pins().items():
        assert hooks[name]['additional_dependencies'] == [f'{name}=={pinned}']
    # Same paths as `make lint`; the .mim links are linted at their source.
    with open(osp.join(REPO, 'Makefile')) as f:
        paths = re.search(r'^LINT_PATHS \?= (.+)$', f.read(), re.M).group(1)
    assert re.match(config['files'], 'mmakd/x.py')
    for path in paths.split():
        assert re.match(config['files'], f'{path}/x.py'), path
    assert re.match(config['exclude'], 'mmakd/.mim/tools/train.py')


def test_installed_lint_tools_are_the_pinned_ones():
    for name, pinned in _pins().items():
        assert version(name) == pinned, name


def test_ci_fails_on_lint_before_the_tests():
    with open(osp.join(REPO, '.ci', 'run')) as f:
        script = f.read()
    assert 'set -euo pipefail' in script
    commands = re.findall(r'^make ([\w-]+)', script, re.M)
    assert commands == ['lint', 'test', 'test-slow']
