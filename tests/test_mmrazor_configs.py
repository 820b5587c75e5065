# Copyright (c) mmakd contributors. All rights reserved.
"""MMRazor's own shipped distillation configs, built through mmakd's
tooling and trained for one step on CPU with random weights."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmakd.registry import MODELS
from mmakd.testing import det_batch, random_weights_overrides, seg_batch
from mmakd.utils import load_config

CWD_RETINA = 'mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py'  # noqa: E501
CWD_PSPNET = 'mmrazor::distill/mmseg/cwd/cwd_logits_pspnet_r101-d8_pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py'  # noqa: E501


@pytest.fixture
def build_shipped(torch_home, monkeypatch):
    """Build a shipped config with random weights, initialised as the
    runner would (init_weights: head priors, backbone from the random-weight
    checkpoint cache)."""
    monkeypatch.setenv('TORCH_HOME', torch_home)

    def build(path: str, cfg_options=None):
        cfg = load_config(path, cfg_options)
        cfg.merge_from_dict(random_weights_overrides(cfg))
        init_default_scope(cfg.default_scope)
        model = MODELS.build(cfg.model)
        model.init_weights()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        return cfg, model, optim

    return build


def one_step(model, optim, batch):
    teacher0 = [p.detach().clone() for p in model.teacher.parameters()]
    student0 = [p.detach().clone() for p in model.student.parameters()]
    model.train()
    log = model.train_step(batch, optim)
    for name, value in log.items():
        assert torch.isfinite(value).all(), name
    assert all(
        torch.equal(a, b) for a, b in zip(teacher0, model.teacher.parameters()))
    moved = sum(not torch.equal(a, b)
                for a, b in zip(student0, model.student.parameters()))
    assert moved > 0.5 * len(student0)
    return log


def test_cwd_retinanet_r101_r50_one_step(build_shipped):
    cfg, model, optim = build_shipped(CWD_RETINA)
    assert type(model).__name__ == 'FpnTeacherDistill'
    assert model.teacher.backbone.depth == 101
    assert model.student.backbone.depth == 50
    log = one_step(model, optim, det_batch(2, 128, 128, seed=0))
    assert {f'distill.loss_cwd_fpn{i}' for i in range(5)} <= set(log)
    assert log['distill.loss_cwd_fpn0'] > 0


def test_cwd_pspnet_r101_r18_one_step(build_shipped):
    cfg, model, optim = build_shipped(CWD_PSPNET)
    assert type(model).__name__ == 'SingleTeacherDistill'
    # The config pads every batch to its 512x1024 crop; keep the tiny size.
    assert model.data_preprocessor.size == (512, 1024)
    model.data_preprocessor.size = (64, 64)
    log = one_step(model, optim, seg_batch(2, 64, 64, seed=0))
    assert log['distill.loss_cwd'] > 0
    assert 'student.decode.loss_ce' in log


# Converting a shipped config to AKD: the distiller's type plus `avatars`,
# exactly as `tools/train.py CONFIG --cfg-options ...` would merge them.
AKD_OPTIONS = {
    'model.distiller.type': 'AvatarDistiller',
    'model.distiller.avatars.num_avatars': 2,
    'model.distiller.avatars.perturbation.p': 0.2,
}


def test_akd_cwd_retinanet_r101_r50_one_step(build_shipped):
    cfg, model, optim = build_shipped(CWD_RETINA, AKD_OPTIONS)
    assert type(model.distiller).__name__ == 'AvatarDistiller'
    assert model.distiller.num_avatars == 2
    assert model.distiller.perturbation.p == 0.2
    log = one_step(model, optim, det_batch(2, 128, 128, seed=0))
    for level in range(5):
        weights = [log[f'distill.akd.cwd_fpn{level}.w{k}'] for k in range(2)]
        assert sum(weights).item() == pytest.approx(1.0)
        assert log[f'distill.akd.cwd_fpn{level}.u'] >= 0
    assert log['distill.loss_cwd_fpn0'] > 0


def test_akd_cwd_pspnet_r101_r18_one_step(build_shipped):
    cfg, model, optim = build_shipped(CWD_PSPNET, AKD_OPTIONS)
    model.data_preprocessor.size = (64, 64)
    log = one_step(model, optim, seg_batch(2, 64, 64, seed=0))
    assert log['distill.loss_cwd'] > 0
    assert {'distill.akd.cwd.w0', 'distill.akd.cwd.w1', 'distill.akd.cwd.u'
            } <= set(log)
