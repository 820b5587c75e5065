# Copyright (c) mmakd contributors. All rights reserved.
"""A damaged checkpoint given to tools/test.py, tools/train.py --resume or
the student converter is named, with what to do, before anything is
built (not PyTorch's bare zip or unpickling error)."""
import os
import random

import pytest
import torch

from helpers import DEMO_STUDENT, run_python

HINT = ('is not a readable PyTorch checkpoint (truncated or corrupted? '
        're-download it, or pick an earlier iter_*.pth / epoch_*.pth)')


@pytest.fixture
def damaged(tmp_path):
    """A checkpoint cut in half (as a killed save or copy leaves it) and a
    file of random bytes."""
    good = str(tmp_path / 'good.pth')
    torch.save(dict(state_dict={'w': torch.ones(4096)}, meta={}), good)
    data = open(good, 'rb').read()
    truncated = tmp_path / 'iter_2.pth'
    truncated.write_bytes(data[:len(data) // 2])
    noise = tmp_path / 'noise.pth'
    noise.write_bytes(random.Random(0).randbytes(8192))  # seeded: one error
    return dict(truncated=str(truncated), noise=str(noise))


def _fails_with(result, message):
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-3000:]


def test_test_names_a_truncated_checkpoint(damaged, tmp_path):
    path = damaged['truncated']
    result = run_python([
        'tools/test.py', DEMO_STUDENT, path, '--work-dir',
        str(tmp_path / 'test')
    ])
    _fails_with(result,
                f'UnreadableCheckpointError: checkpoint={path!r} {HINT}')


def test_resume_names_the_checkpoint(damaged, tmp_path):
    path = damaged['noise']
    result = run_python([
        'tools/train.py', DEMO_STUDENT, '--work-dir',
        str(tmp_path / 'work'), '--resume', path
    ])
    _fails_with(result, f'--resume={path!r} {HINT}: UnpicklingError')
    assert 'weights_only` set to `False`' not in result.stderr


def test_auto_resume_names_the_latest_checkpoint(damaged, tmp_path):
    """``--resume`` alone skips a latest checkpoint that does not load (a
    copy cut short, say); with no other it stops, naming the file, why, and
    what to do (tests/test_utils/test_resume.py: the fallback)."""
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'last_checkpoint').write_text(damaged['truncated'])
    result = run_python(
        ['tools/train.py', DEMO_STUDENT, '--work-dir',
         str(work), '--resume'])
    _fails_with(
        result, f'UnreadableCheckpointError: --resume: no checkpoint in '
        f'{work} loads: {damaged["truncated"]} (named by last_checkpoint) '
        'does not load (')  # PyTorch's reason, e.g. OSError: [Errno 22]
    _fails_with(
        result, '). To continue from a copy that loads, pass --resume PATH; '
        'to start from the beginning, move these files and last_checkpoint '
        f'out of {work} or train into another --work-dir.')


def test_converter_names_the_checkpoint(damaged, tmp_path):
    path = damaged['noise']
    out = str(tmp_path / 'student.pth')
    result = run_python([
        'tools/model_converters/convert_kd_ckpt_to_student.py', path, '--out',
        out
    ])
    assert result.returncode != 0
    assert f'checkpoint={path!r} {HINT}' in result.stderr
    assert not os.path.exists(out)
