# Copyright (c) mmakd contributors. All rights reserved.
"""tools/dist_train.sh and tools/slurm_train.sh pass --resume by
themselves, so that a requeued job continues from its work directory: the
command each script runs, seen through a stand-in ``python`` / ``srun``
that prints its arguments."""
import os
import stat
import subprocess

import pytest

from helpers import REPO

ECHO = '#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n'


@pytest.fixture
def stand_ins(tmp_path):
    for name in ('python', 'srun'):
        path = tmp_path / name
        path.write_text(ECHO)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def _argv(stand_ins, script, args, **env) -> list:
    full = dict(
        os.environ,
        PATH=f'{stand_ins}{os.pathsep}{os.environ["PATH"]}',
        PYTHON=str(stand_ins / 'python'),
        **env)
    result = subprocess.run(
        ['bash', f'tools/{script}'] + args,
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


DIST = ['cfg.py', '2', '--cfg-options', 'a=1']
SLURM = ['part', 'job', 'cfg.py', 'work_dirs/x', '--cfg-options', 'a=1']


@pytest.mark.parametrize('script,args', [('dist_train.sh', DIST),
                                         ('slurm_train.sh', SLURM)])
def test_resume_is_passed_after_the_users_arguments(stand_ins, script, args):
    argv = _argv(stand_ins, script, args)
    assert argv[-3:] == ['--cfg-options', 'a=1', '--resume']
    assert argv.count('--resume') == 1


@pytest.mark.parametrize('script,args', [('dist_train.sh', DIST),
                                         ('slurm_train.sh', SLURM)])
def test_the_users_resume_or_auto_resume_0_wins(stand_ins, script, args):
    for extra in (['--resume',
                   'w/iter_4.pth'], ['--resume=w/iter_4.pth'], ['--resume']):
        argv = _argv(stand_ins, script, args + extra)
        assert argv[-len(extra):] == extra
        assert sum(a.startswith('--resume') for a in argv) == 1
    argv = _argv(stand_ins, script, args, AUTO_RESUME='0')
    assert not any(a.startswith('--resume') for a in argv)
