# Copyright (c) mmakd contributors. All rights reserved.
"""The README's "A first AKD run in under three minutes", run as written:
its shell lines, in a folder laid out like the clone (``tools`` and
``configs``), on the shapes data they generate (synthetic)."""
import os
import os.path as osp
import re
import shlex
import time
from typing import List

import pytest

from helpers import REPO, run_python

MARKER = '<!-- first-run:'


def readme_lines() -> List[str]:
    """The shell lines of the README block after the first-run marker."""
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    assert MARKER in text, 'the README lost its first-run block'
    block = re.search(r'```shell\n(.*?)```', text[text.index(MARKER):],
                      re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_first_run_names_real_files():
    lines = readme_lines()
    assert len(lines) == 3
    assert all(line.startswith('python tools/') for line in lines)
    for line in lines:
        for word in shlex.split(line):
            if word.startswith(('tools/', 'configs/')):
                assert osp.isfile(osp.join(REPO, word)), word


@pytest.mark.slow
def test_readme_first_run_as_written(tmp_path):
    for name in ('tools', 'configs'):
        os.symlink(osp.join(REPO, name), tmp_path / name)
    logs = []
    start = time.perf_counter()
    for line in readme_lines():
        args = shlex.split(line)
        assert args[0] == 'python'
        result = run_python(args[1:], cwd=str(tmp_path))
        logs.append(result.stdout + result.stderr)
        assert result.returncode == 0, (line, logs[-1][-4000:])
    seconds = time.perf_counter() - start
    print(f'[first run] {seconds:.0f} s for the README lines')
    assert osp.isfile(tmp_path / 'data/shapes/annotations/instances_val.json')
    assert osp.isfile(tmp_path / 'work_dirs/first/teacher/iter_200.pth')
    teacher_log, akd_log = logs[1], logs[2]
    assert 'Iter(train) [200/200]' in teacher_log
    assert 'Iter(train) [100/100]' in akd_log
    for key in ('decode.loss_ce', 'distill.loss_cwd', 'distill.akd.cwd.w3',
                'mIoU', 'teacher.mIoU'):
        assert key in akd_log, key
    assert 'work_dirs/first/teacher/iter_200.pth' in akd_log
