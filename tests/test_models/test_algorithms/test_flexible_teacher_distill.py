# Copyright (c) mmakd contributors. All rights reserved.
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper

from mmakd.models import FlexibleTeacherDistill
from mmakd.registry import MODELS
from mmakd.testing import det_batch
from helpers import REPO

OVERLAY = osp.join(
    REPO, 'tests/data/configs/cwd_retinanet-r50_retinanet-r18_shapes.py')
LOCAL_STUDENT = osp.join(REPO,
                         'tests/data/configs/retinanet_r18_fpn_shapes.py')


@pytest.fixture(scope='module')
def overlay_cfg() -> Config:
    return Config.fromfile(OVERLAY)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_local_student_package_teacher_one_step(overlay_cfg):
    """Student from a local config file, teacher from a package config with
    overrides; one SGD step with MMRazor's CWD distiller."""
    model = MODELS.build(copy.deepcopy(overlay_cfg.model))
    assert isinstance(model, FlexibleTeacherDistill)
    assert model.student.bbox_head.num_classes == 6
    assert model.teacher.bbox_head.num_classes == 6
    assert model.teacher.backbone.depth == 50
    optim = build_optim_wrapper(
        model, dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)))
    teacher0, student0 = _snapshot(model.teacher), _snapshot(model.student)
    model.train()
    log = model.train_step(
        det_batch(2, 96, 96, num_classes=6, seed=1), optim)
    assert {f'distill.loss_cwd_fpn{i}' for i in range(5)} <= set(log)
    assert all(torch.isfinite(v) for v in log.values())
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher0[k]), k
    changed = [
        k for k, v in model.student.state_dict().items()
        if not torch.equal(v, student0[k])
    ]
    assert any(k.startswith('backbone.') for k in changed)
    assert any(k.startswith('bbox_head.') for k in changed)


def test_teacher_as_local_file_student_inline(overlay_cfg):
    cfg = copy.deepcopy(overlay_cfg.model)
    student = Config.fromfile(LOCAL_STUDENT).model
    cfg.architecture = student.to_dict()
    cfg.teacher = dict(cfg_path=LOCAL_STUDENT)
    model = MODELS.build(cfg)
    assert model.teacher.backbone.depth == 18
    assert model.student is not model.teacher


def test_preprocessor_mismatch_fails_at_build(overlay_cfg):
    cfg = copy.deepcopy(overlay_cfg.model)
    cfg.teacher.cfg_options.update({
        'model.data_preprocessor.mean': [103.53, 116.28, 123.675],
        'model.data_preprocessor.std': [1.0, 1.0, 1.0],
        'model.data_preprocessor.bgr_to_rgb': False
    })
    with pytest.raises(ValueError) as info:
        MODELS.build(copy.deepcopy(cfg))
    message = str(info.value)
    assert 'model.teacher.data_preprocessor' in message
    assert 'model.architecture.data_preprocessor' in message
    assert 'channel order' in message
    cfg.check_preprocessors = False
    MODELS.build(cfg)  # explicitly allowed


def test_explicit_algorithm_preprocessor_checked_against_both(overlay_cfg):
    cfg = copy.deepcopy(overlay_cfg.model)
    cfg.data_preprocessor = dict(
        type='mmdet.DetDataPreprocessor',
        mean=[0.0, 0.0, 0.0],
        std=[255.0, 255.0, 255.0],
        bgr_to_rgb=True)
    with pytest.raises(ValueError, match=r'model.data_preprocessor'):
        MODELS.build(cfg)


def test_missing_teacher_checkpoint_is_reported_before_building(
        overlay_cfg, monkeypatch):
    from mmakd.models.algorithms import flexible_teacher_distill as module

    def no_build(*args, **kwargs):
        raise AssertionError('models must not be built for a missing ckpt')

    monkeypatch.setattr(module, 'build_model_from_spec', no_build)
    cfg = copy.deepcopy(overlay_cfg.model)
    cfg.teacher_ckpt = 'work_dirs/missing_teacher.pth'
    with pytest.raises(FileNotFoundError,
                       match=r"model.teacher_ckpt='work_dirs/missing"):
        MODELS.build(cfg)


def test_teacher_checkpoint_loaded_strictly(overlay_cfg, tmp_path):
    cfg = copy.deepcopy(overlay_cfg.model)
    source = MODELS.build(copy.deepcopy(cfg))
    path = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=source.teacher.state_dict()), path)
    cfg.teacher_ckpt = path
    model = MODELS.build(copy.deepcopy(cfg))
    for k, v in source.teacher.state_dict().items():
        assert torch.equal(v, model.teacher.state_dict()[k]), k
    assert model.teacher._is_init

    partial = {
        k: v
        for k, v in source.teacher.state_dict().items()
        if not k.startswith('bbox_head.')
    }
    partial['extra.weight'] = torch.zeros(1)
    torch.save(dict(state_dict=partial), path)
    with pytest.raises(RuntimeError) as info:
        MODELS.build(copy.deepcopy(cfg))
    assert 'bbox_head.retina_cls.weight' in str(info.value)  # missing
    assert 'extra.weight' in str(info.value)  # unexpected
    cfg.teacher_ckpt_strict = False
    MODELS.build(cfg)
