# Copyright (c) mmakd contributors. All rights reserved.
"""A whole distillation checkpoint holds the teachers' weights: testing it
with tools/test.py, or resuming from it, needs no teacher file any more,
and the log says which checkpoint provides them."""
import glob
import os
import os.path as osp

import pytest
import torch

from helpers import (DEMO_AKD, DEMO_CWD, DEMO_TEACHER, REPO, cli_options,
                     demo_options, random_teacher_checkpoint, run_python)


def _ok(result):
    assert result.returncode == 0, result.stdout[-2000:] + \
        result.stderr[-4000:]
    return result.stdout + result.stderr


def _log_file(work_dir):
    logs = glob.glob(osp.join(work_dir, '*', '*.log'))
    assert len(logs) == 1, logs
    return open(logs[0]).read()


@pytest.mark.slow
def test_test_and_resume_an_akd_checkpoint_without_the_teacher_file(
        tmp_path, shapes_root):
    teacher = random_teacher_checkpoint(str(tmp_path / 'teacher.pth'))
    work = str(tmp_path / 'akd')
    options = demo_options(
        shapes_root, iters=1, **{'model.teacher_ckpt': teacher})
    _ok(
        run_python(
            ['tools/train.py', DEMO_AKD, '--work-dir', work, '--cfg-options'] +
            cli_options(options)))
    ckpt = osp.join(work, 'iter_1.pth')
    os.rename(teacher, str(tmp_path / 'moved.pth'))  # the file is gone

    test_dir = str(tmp_path / 'test')
    log = _ok(
        run_python([
            'tools/test.py', DEMO_AKD, ckpt, '--work-dir', test_dir,
            '--cfg-options'
        ] + cli_options(options)))
    note = (f'model.teacher_ckpt={teacher!r} not read: the checkpoint {ckpt} '
            "provides the teacher's weights (its `teacher.` entries).")
    assert note in log
    assert 'Iter(test) [1/1]' in log and 'mIoU: ' in log
    assert note in _log_file(test_dir)

    # --resume CKPT rebuilds the model too: the teacher comes from CKPT
    resumed = demo_options(
        shapes_root, iters=2, **{'model.teacher_ckpt': teacher})
    log = _ok(
        run_python([
            'tools/train.py', DEMO_AKD, '--work-dir', work, '--resume', ckpt,
            '--cfg-options'
        ] + cli_options(resumed)))
    assert note in log
    assert 'resumed epoch: 0, iter: 1' in log
    assert 'Iter(train) [2/2]' in log
    assert osp.isfile(osp.join(work, 'iter_2.pth'))


# 25 s; the prefixes of every teacher are unit-tested in
# tests/test_utils/test_checkpoint.py
@pytest.mark.slow
def test_test_a_multi_teacher_checkpoint_without_the_teacher_files(
        tmp_path, shapes_root):
    """MultiTeacherDistill keeps teacher ``i > 0`` under
    ``other_teachers.{i - 1}.``; both files may be gone."""
    teachers = [
        random_teacher_checkpoint(str(tmp_path / f'teacher{i}.pth'))
        for i in range(2)
    ]
    config = tmp_path / 'two_teachers.py'
    config.write_text(
        f"_base_ = ['{osp.join(REPO, DEMO_CWD)}']\n"
        'model = dict(type=\'MultiTeacherDistill\', teacher=None, '
        'teacher_ckpt=None,\n'
        f"    teachers=[dict(cfg_path='{osp.join(REPO, DEMO_TEACHER)}')] * 2,"
        f'\n    teacher_ckpts={teachers!r})\n')
    work = str(tmp_path / 'multi')
    options = cli_options(demo_options(shapes_root, iters=1))
    _ok(
        run_python([
            'tools/train.py',
            str(config), '--work-dir', work, '--cfg-options'
        ] + options))
    ckpt = osp.join(work, 'iter_1.pth')
    keys = torch.load(ckpt, map_location='cpu')['state_dict']
    assert any(k.startswith('other_teachers.0.') for k in keys)
    for path in teachers:
        os.remove(path)

    log = _ok(
        run_python([
            'tools/test.py',
            str(config), ckpt, '--work-dir',
            str(tmp_path / 'test'), '--cfg-options'
        ] + options))
    assert (f'model.teacher_ckpts={teachers!r} not read: the checkpoint '
            f"{ckpt} provides the teachers' weights (its `teacher.`, "
            '`other_teachers.0.` entries).') in log
    assert 'mIoU: ' in log


def test_a_checkpoint_without_teacher_weights_still_needs_the_file(
        tmp_path, shapes_root):
    """A student's checkpoint does not provide the teacher: the teacher
    file is still required, with today's error."""
    student = str(tmp_path / 'student.pth')
    torch.save(
        dict(state_dict={'backbone.w': torch.ones(1)}, meta={}), student)
    missing = str(tmp_path / 'missing_teacher.pth')
    result = run_python([
        'tools/test.py', DEMO_AKD, student, '--work-dir',
        str(tmp_path / 'test'), '--cfg-options'
    ] + cli_options(
        demo_options(shapes_root, iters=1, **{'model.teacher_ckpt': missing})))
    assert result.returncode != 0
    assert f'FileNotFoundError: model.teacher_ckpt={missing!r} does not ' \
        'exist' in result.stderr
    assert 'not read' not in result.stdout + result.stderr
