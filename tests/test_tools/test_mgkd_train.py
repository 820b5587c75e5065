# Copyright (c) mmakd contributors. All rights reserved.
"""Multi-granularity distillation end to end with tools/train.py, the
command sequence of docs/mgkd.md on a tiny generated CIFAR-like dataset
(synthetic data, random start): teacher, stage 1 (analyser), stage 2
(KD + MGKD), each loading the previous stage's checkpoint by the path its
config names."""
import os.path as osp

import pytest
import torch

from mmakd.datasets import generate_cifar_like
from helpers import REPO, run_python

SYNTHETIC = osp.join(REPO, 'configs', 'mgkd', 'mmpretrain', 'synthetic')
TEACHER = 'resnet20-cifar_1xb32-4e_cifar-like'
ANALYSER = 'mgkd-analyser_resnet20-cifar_1xb32-3e_cifar-like'
MGKD = 'mgkd_kd_resnet20-cifar_resnet8-cifar_1xb32-4e_cifar-like'


def train(config: str, cwd: str) -> str:
    result = run_python([
        osp.join(REPO, 'tools', 'train.py'),
        osp.join(SYNTHETIC, config + '.py')
    ],
                        cwd=cwd)
    assert result.returncode == 0, (
        result.stdout[-2000:] + result.stderr[-4000:])
    return result.stdout + result.stderr


def state(path: str) -> dict:
    return torch.load(
        path, map_location='cpu', weights_only=False)['state_dict']


@pytest.mark.slow
def test_teacher_analyser_then_distillation(tmp_path):
    cwd = str(tmp_path)
    # 20 classes as the configs expect; 2 training images per class: two
    # iterations per epoch at batch 32.
    generate_cifar_like(
        osp.join(cwd, 'data', 'cifar-like'),
        num_classes=20,
        train_per_class=2,
        test_per_class=1)

    # Stage 2 before stage 1: the error names the checkpoint key.
    result = run_python([
        osp.join(REPO, 'tools', 'train.py'),
        osp.join(SYNTHETIC, MGKD + '.py'), '--cfg-options',
        'model.teacher_ckpt=None'
    ],
                        cwd=cwd)
    assert result.returncode != 0
    assert 'MGKDAnalyser.checkpoint=' in result.stderr
    assert 'model.distiller.connectors' in result.stderr

    log = train(TEACHER, cwd)
    assert 'Epoch(train) [4][2/2]' in log
    teacher_ckpt = osp.join(cwd, 'work_dirs', TEACHER, 'epoch_4.pth')

    log = train(ANALYSER, cwd)
    assert 'loss_kl_narrow' in log and 'loss_ce_wide' in log
    assert 'accuracy/top1' in log  # the narrow tube's, on the test split
    analyser_ckpt = osp.join(cwd, 'work_dirs', ANALYSER, 'epoch_3.pth')
    stage1 = state(analyser_ckpt)
    teacher = state(teacher_ckpt)
    for key, value in teacher.items():  # the teacher stayed frozen
        assert torch.equal(stage1['architecture.' + key], value), key

    log = train(MGKD, cwd)
    for name in ('distill.loss_stable', 'distill.loss_narrow',
                 'distill.loss_wide', 'teacher.accuracy/top1'):
        assert name in log, name
    stage2 = state(osp.join(cwd, 'work_dirs', MGKD, 'epoch_4.pth'))
    tubes = {
        k[len('analyser.'):]: v
        for k, v in stage1.items() if k.startswith('analyser.')
    }
    for key, value in tubes.items():  # teacher tubes: stage 1's, frozen
        assert torch.equal(stage2['distiller.connectors.t_tubes.' + key],
                           value), key
    for key, value in teacher.items():
        assert torch.equal(stage2['teacher.' + key], value), key
    assert any(k.startswith('distiller.connectors.s_tubes.') for k in stage2)
