# Copyright (c) mmakd contributors. All rights reserved.
"""tools/train.py and tools/test.py as users run them, on the generated
shapes dataset (synthetic data) with random weights."""
import glob
import os.path as osp

import pytest

from mmakd.testing import random_weights_overrides, shapes_det_overrides
from mmakd.utils import load_config
from helpers import REPO, cli_options, demo_options, run_python

CWD_RETINA = 'mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py'  # noqa: E501
OVERLAY = osp.join(
    REPO, 'tests/data/configs/cwd_retinanet-r50_retinanet-r18_shapes.py')


def _options(config, shapes_root, validate, **extra):
    cfg = load_config(config)
    overrides = shapes_det_overrides(
        cfg, shapes_root, size=128, batch_size=2, validate=validate)
    overrides.update(random_weights_overrides(cfg))
    overrides.update({
        'train_dataloader.dataset.indices': 4,
        'default_hooks.logger.interval': 1,
        'train_cfg.max_epochs': 1,
        'env_cfg.mp_cfg.opencv_num_threads': 1,
    })
    overrides.update(extra)
    return cli_options(overrides)


def _check(result):
    assert result.returncode == 0, (
        result.stdout[-2000:] + result.stderr[-4000:])
    return result.stdout + result.stderr


@pytest.mark.slow
def test_train_and_resume_mmrazor_shipped_config(tmp_path, shapes_root,
                                                 torch_home):
    work_dir = str(tmp_path / 'work')
    env = dict(TORCH_HOME=torch_home)
    args = ['tools/train.py', CWD_RETINA, '--work-dir', work_dir]
    log = _check(
        run_python(
            args + ['--cfg-options'] +
            _options(CWD_RETINA, shapes_root, validate=False), env))
    assert 'Epoch(train) [1][2/2]' in log
    assert 'distill.loss_cwd_fpn0' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))

    # --resume without a path continues from the latest checkpoint; this
    # loads a runner checkpoint with torch.load's weights_only default.
    log = _check(
        run_python(
            args + ['--resume', '--cfg-options'] + _options(
                CWD_RETINA,
                shapes_root,
                validate=False,
                **{'train_cfg.max_epochs': 2}), env))
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'Epoch(train) [2][2/2]' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))

    # --resume CKPT restarts from an explicit checkpoint.
    log = _check(
        run_python(
            args +
            ['--resume',
             osp.join(work_dir, 'epoch_1.pth'), '--cfg-options'] + _options(
                 CWD_RETINA,
                 shapes_root,
                 validate=False,
                 **{'train_cfg.max_epochs': 2}), env))
    assert 'resumed epoch: 1, iter: 2' in log


def test_train_validate_then_test_local_config(tmp_path, shapes_root):
    """A local config whose student and teacher come from a local file and a
    package config; train with CocoMetric validation, then tools/test.py."""
    work_dir = str(tmp_path / 'work')
    log = _check(
        run_python([
            'tools/train.py', OVERLAY, '--work-dir', work_dir, '--cfg-options'
        ] + _options(OVERLAY, shapes_root, validate=True)))
    assert 'coco/bbox_mAP' in log
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    test_dir = str(tmp_path / 'test')
    log = _check(
        run_python([
            'tools/test.py', OVERLAY, ckpt, '--work-dir', test_dir,
            '--cfg-options'
        ] + _options(OVERLAY, shapes_root, validate=True)))
    assert 'Epoch(test) [4/4]' in log
    assert 'coco/bbox_mAP' in log
    assert glob.glob(osp.join(test_dir, '*', '*.log'))


@pytest.mark.slow
def test_convert_shipped_config_to_akd_from_the_command_line(
        tmp_path, shapes_root, torch_home):
    """MMRazor's CWD RetinaNet config becomes AKD with --cfg-options only;
    the Avatar weights and uncertainty appear in the training log."""
    work_dir = str(tmp_path / 'work')
    log = _check(
        run_python([
            'tools/train.py', CWD_RETINA, '--work-dir', work_dir,
            '--cfg-options'
        ] + _options(
            CWD_RETINA,
            shapes_root,
            validate=False,
            **{'train_dataloader.dataset.indices': 2}) + [
                'model.distiller.type=AvatarDistiller',
                'model.distiller.avatars.num_avatars=2'
            ], dict(TORCH_HOME=torch_home)))
    assert 'Epoch(train) [1][1/1]' in log
    for key in ('distill.akd.cwd_fpn0.w0', 'distill.akd.cwd_fpn0.w1',
                'distill.akd.cwd_fpn4.u', 'distill.loss_cwd_fpn0'):
        assert key + ':' in log
    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    assert scalars and 'distill.akd.cwd_fpn0.w1' in open(scalars[0]).read()


def test_train_an_mmakd_package_config_from_anywhere(tmp_path, shapes_root):
    """``tools/train.py mmakd::...`` from outside the clone: the config
    comes from mmakd/.mim/configs."""
    name = 'pspnet_r18-w8_1xb8-600it_shapes-128.py'
    work_dir = str(tmp_path / 'work')
    log = _check(
        run_python(
            [
                osp.join(REPO, 'tools', 'train.py'), f'mmakd::akd/demo/{name}',
                '--work-dir', work_dir, '--cfg-options'
            ] + cli_options(demo_options(shapes_root, iters=1)),
            cwd=str(tmp_path)))
    assert 'Iter(train) [1/1]' in log
    assert osp.isfile(osp.join(work_dir, name))  # the config MMEngine dumps
    assert osp.isfile(osp.join(work_dir, 'iter_1.pth'))


def test_train_rejects_missing_config(tmp_path):
    result = run_python(['tools/train.py', 'configs/no_such_config.py'])
    assert result.returncode != 0
    assert "config file 'configs/no_such_config.py' does not exist" in \
        result.stderr
