# Copyright (c) mmakd contributors. All rights reserved.
"""Helpers shared by the tests (on sys.path through setup.cfg)."""
import os
import os.path as osp
import subprocess
import sys
from typing import List, Sequence

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_python(args: Sequence[str],
               env: dict = None,
               timeout: float = 600,
               cwd: str = REPO) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` in a fresh interpreter; return the result."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env['PYTHONPATH'] = REPO + os.pathsep + full_env.get(
        'PYTHONPATH', '')
    return subprocess.run([sys.executable, *args],
                          cwd=cwd,
                          env=full_env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)


def cli_options(overrides: dict) -> List[str]:
    """Render a dict of dotted overrides as ``--cfg-options`` arguments."""

    def fmt(value) -> str:
        if isinstance(value, (tuple, list)):
            inner = ','.join(fmt(v) for v in value)
            return f'({inner})' if isinstance(value, tuple) else f'[{inner}]'
        return str(value)

    args = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            args += [f'{key}.{k}={fmt(v)}' for k, v in value.items()]
        else:
            args.append(f'{key}={fmt(value)}')
    return args
