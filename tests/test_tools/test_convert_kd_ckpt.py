# Copyright (c) mmakd contributors. All rights reserved.
"""A distillation checkpoint becomes a plain student checkpoint that the
student's own config loads through tools/test.py, predicting the same."""
import os.path as osp

import mmengine
import pytest
import torch

from mmakd.utils.checkpoint import student_state_dict
from helpers import (DEMO_CWD, DEMO_STUDENT, cli_options, demo_options,
                     random_teacher_checkpoint, run_python)


def _ok(result):
    assert result.returncode == 0, result.stdout[-2000:] + \
        result.stderr[-4000:]
    return result.stdout + result.stderr


def test_student_state_dict_strips_the_prefix_and_drops_the_rest():
    state = {
        'architecture.backbone.w': torch.ones(1),
        'architecture.data_preprocessor.mean': torch.zeros(3),
        'teacher.backbone.w': torch.zeros(1),
        'distiller.connectors.c.w': torch.zeros(1),
        'data_preprocessor.mean': torch.zeros(3)
    }
    student = student_state_dict(state)
    assert list(student) == ['backbone.w', 'data_preprocessor.mean']
    with pytest.raises(KeyError, match='not a distillation checkpoint'):
        student_state_dict({'backbone.w': torch.ones(1)})


@pytest.mark.slow
def test_convert_then_test_with_the_students_own_config(tmp_path, shapes_root):
    teacher_ckpt = random_teacher_checkpoint(str(tmp_path / 'teacher.pth'))
    work = str(tmp_path / 'distill')
    options = cli_options(
        demo_options(
            shapes_root, iters=2, **{'model.teacher_ckpt': teacher_ckpt}))
    _ok(
        run_python(
            ['tools/train.py', DEMO_CWD, '--work-dir', work, '--cfg-options'] +
            options))
    ckpt = osp.join(work, 'iter_2.pth')
    distill_out = str(tmp_path / 'distill.pkl')
    _ok(
        run_python([
            'tools/test.py', DEMO_CWD, ckpt, '--work-dir',
            str(tmp_path / 'test_a'), '--out', distill_out, '--cfg-options'
        ] + options))

    student_ckpt = str(tmp_path / 'student.pth')
    log = _ok(
        run_python([
            'tools/model_converters/'
            'convert_kd_ckpt_to_student.py', ckpt, '--out', student_ckpt
        ]))
    assert 'left out teacher' in log  # CWD has no parameters
    converted = torch.load(student_ckpt)
    assert set(converted) == {'meta', 'state_dict'}
    assert not any(
        k.startswith(('teacher.', 'architecture.'))
        for k in converted['state_dict'])

    student_out = str(tmp_path / 'student.pkl')
    student_options = cli_options(demo_options(shapes_root, iters=2))
    log = _ok(
        run_python([
            'tools/test.py', DEMO_STUDENT, student_ckpt, '--work-dir',
            str(tmp_path / 'test_b'), '--out', student_out, '--cfg-options'
        ] + student_options))
    assert 'mIoU' in log
    a, b = mmengine.load(distill_out), mmengine.load(student_out)
    assert len(a) == len(b) == 4
    for x, y in zip(a, b):
        assert x['img_path'] == y['img_path']
        assert torch.equal(x['pred_sem_seg']['data'],
                           y['pred_sem_seg']['data'])
        torch.testing.assert_close(x['seg_logits']['data'],
                                   y['seg_logits']['data'])
