# Copyright (c) mmakd contributors. All rights reserved.
"""MasKDMaskLearner (MasKD stage 1) and the zoo's MasKD recipe: only the
tokens and mask weights learn, the teacher stays frozen in eval mode, the
loss is the teacher's task loss on masked features plus the Dice term, the
checkpoints load into MasKDLoss by the documented prefix, the stages link
up, and the distillation configs keep every loss parameter fixed."""
import copy
import json
import os
import os.path as osp
import re
import socket

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmakd.models import MasKDLoss, MasKDMaskLearner
from mmakd.models.algorithms.maskd_mask_learner import masked_feature
from mmakd.registry import MODELS
from mmakd.testing import det_batch, shapes_det_overrides
from mmakd.utils import load_config
from helpers import REPO, cli_options, run_python

DATA = osp.join(REPO, 'tests', 'data')
SHAPES_TEACHER = osp.join(DATA, 'configs', 'retinanet_r18_fpn_shapes.py')
SHAPES_CONFIG = osp.join(DATA, 'configs',
                         'maskd-masks_retinanet-r18_shapes.py')
ZOO = osp.join(REPO, 'configs', 'akd', 'mmdet', 'maskd')
MASKS_R101 = osp.join(ZOO, 'maskd-masks_fpn_retinanet-r101_8xb2-2k_coco.py')
MASKS_X101 = osp.join(ZOO, 'maskd-masks_fpn_retinanet-x101_8xb2-2k_coco.py')
DISTILL_R101 = osp.join(
    ZOO, 'maskd_fpn-head_retinanet-r101_retinanet-r50_8xb2-2x_coco.py')
DISTILL_X101 = osp.join(
    ZOO, 'maskd_fpn-head_retinanet-x101_retinanet-r50_8xb2-2x_coco.py')
NUM_CLASSES = 6
WIDTH = 32
#: The shapes RetinaNet R18 with a 32-channel FPN and head: fast steps.
SMALL_TEACHER = dict(
    cfg_path=SHAPES_TEACHER,
    cfg_options={
        'model.neck.out_channels': WIDTH,
        'model.bbox_head.in_channels': WIDTH,
        'model.bbox_head.feat_channels': WIDTH
    })


def build(**kwargs) -> MasKDMaskLearner:
    cfg = dict(
        type='MasKDMaskLearner',
        teacher=copy.deepcopy(SMALL_TEACHER),
        channels=[WIDTH] * 5,
        num_tokens=4)
    cfg.update(kwargs)
    return MODELS.build(cfg)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def batch(n=2, seed=0):
    return det_batch(n, 64, 64, num_classes=NUM_CLASSES, seed=seed)


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a network connection."""

    def refuse(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args}')

    monkeypatch.setattr(socket, 'getaddrinfo', refuse)
    monkeypatch.setattr(socket.socket, 'connect', refuse)


def by_hand(model, inputs):
    """The masked FPN levels and Dice terms from the reference formulas,
    on the neck's outputs taken without the learner's hook."""
    teacher = model.teacher
    raw = teacher.neck.forward(teacher.backbone(inputs))  # no hooks
    masked, dice = [], []
    for x, module in zip(raw, model.mask_modules):
        masks = torch.einsum('tc,nchw->nthw', module.mask_token, x).sigmoid()
        weights = module.prob(x).flatten(1).softmax(1)
        masked.append((x[:, None] * masks[:, :, None] *
                       weights[:, :, None, None, None]).sum(1))
        flat = masks.flatten(2)
        sq = (flat * flat).sum(-1)
        pair = 2 * flat @ flat.transpose(1, 2) / (
            sq[:, :, None] + 1e-12 + sq[:, None, :] + 1e-12)
        off = 1 - torch.eye(masks.shape[1])
        dice.append((pair * off).sum() / (off.sum() * masks.shape[0]))
    return tuple(masked), dice


# ---------------------------------------------------------------------------
# the algorithm
# ---------------------------------------------------------------------------
def test_one_step_trains_only_the_masks():
    torch.manual_seed(0)
    model = build()
    optim = build_optim_wrapper(
        model, dict(optimizer=dict(type='Adam', lr=0.01, weight_decay=0.001)))
    teacher0, masks0 = snapshot(model.teacher), snapshot(model.mask_modules)
    optimized = {id(p) for g in optim.param_groups for p in g['params']}
    assert optimized >= {id(p) for p in model.mask_modules.parameters()}
    model.train()
    assert not model.teacher.training
    log = model.train_step(batch(), optim)
    assert {'loss', 'loss_cls', 'loss_bbox'} <= set(log)
    assert {f'loss_mask_div{i}' for i in range(5)} <= set(log)
    # Teacher weights and BN running statistics are untouched (eval mode).
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, teacher0[key]), key
    for key, value in model.mask_modules.state_dict().items():
        assert not torch.equal(value, masks0[key]), key
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())


def test_loss_is_the_task_loss_on_masked_features_plus_dice():
    torch.manual_seed(1)
    model = build(diversity_weight=0.5)
    model.train()
    data = model.data_preprocessor(batch(seed=3), training=True)
    losses = model(**data, mode='loss')
    masked, dice = by_hand(model, data['inputs'])
    expected = model.teacher.bbox_head.loss(masked, data['data_samples'])
    for key in ('loss_cls', 'loss_bbox'):
        torch.testing.assert_close(
            sum(losses[key]), sum(expected[key]), rtol=1e-4, atol=1e-5)
    for level, d in enumerate(dice):
        torch.testing.assert_close(losses[f'loss_mask_div{level}'], 0.5 * d)
        assert 0 < losses[f'mask_area{level}'] < 1
        assert 1 / 4 <= losses[f'mask_weight_max{level}'] <= 1
    # Gradients reach every token and mask-weight parameter, no teacher one.
    sum(
        sum(v) if isinstance(v, list) else v for k, v in losses.items()
        if k.startswith('loss')).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.mask_modules.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())


def test_masked_feature_matches_golden():
    """sum_t p_t m_t x (and the plain sum without mask weights) against the
    NumPy values of tests/data/golden/make_maskd_losses.py."""
    with open(osp.join(DATA, 'golden', 'maskd_losses.json')) as f:
        golden = json.load(f)
    x = torch.tensor(golden['inputs']['preds_T'], dtype=torch.float64)
    for name, weight_mask in (('weighted', True), ('unweighted', False)):
        module = MasKDLoss(**golden['shape'], weight_mask=weight_mask)
        state = {
            k: torch.tensor(v, dtype=torch.float64)
            for k, v in golden['params'].items()
            if weight_mask or not k.startswith('prob')
        }
        module.double().load_state_dict(state)
        out, masks, weights = masked_feature(module, x)
        torch.testing.assert_close(
            out,
            torch.tensor(golden['masked_feature'][name], dtype=torch.float64))
        assert (weights is not None) == weight_mask
        assert masks.shape == (2, golden['shape']['num_tokens'], 4, 5)


def test_predictions_are_the_teachers_on_masked_features():
    torch.manual_seed(2)
    model = build()
    model.eval()
    samples = batch(1, seed=5)
    preds = model.val_step(copy.deepcopy(samples))
    data = model.data_preprocessor(samples)
    with torch.no_grad():
        masked, _ = by_hand(model, data['inputs'])
        expected = model.teacher.bbox_head.predict(
            masked, data['data_samples'], rescale=True)
    torch.testing.assert_close(preds[0].pred_instances.bboxes,
                               expected[0].bboxes)
    torch.testing.assert_close(preds[0].pred_instances.scores,
                               expected[0].scores)


def test_checkpoint_loads_into_maskd_loss_by_level_prefix(tmp_path):
    torch.manual_seed(3)
    model = build(num_tokens=6)
    path = str(tmp_path / 'iter_2000.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    for level, module in enumerate(model.mask_modules):
        loss = MasKDLoss(
            channels=WIDTH,
            num_tokens=6,
            pretrained=path,
            pretrained_prefix=f'mask_modules.{level}.')
        for key, value in module.state_dict().items():
            assert torch.equal(loss.state_dict()[key], value), key
        assert not any(p.requires_grad for p in loss.parameters())


def test_teacher_checkpoint_loads_strictly_and_survives_init_weights(tmp_path):
    torch.manual_seed(4)
    source = build().teacher
    path = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=source.state_dict()), path)
    torch.manual_seed(5)
    model = build(teacher_ckpt=path)
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[key], value), key
    torch.save(
        dict(state_dict={'backbone.conv1.weight': torch.zeros(1)}), path)
    with pytest.raises(RuntimeError, match='model.teacher_ckpt'):
        build(teacher_ckpt=path)
    with pytest.raises(FileNotFoundError, match='model.teacher_ckpt'):
        build(teacher_ckpt=str(tmp_path / 'missing.pth'))


@pytest.mark.parametrize('kwargs, match', [
    (dict(channels=[WIDTH] * 4), r'model.channels lists 4 levels.*5 outputs'),
    (dict(channels=[256] * 5), r'model.channels=\[256.*outputs 32 channels'),
    (dict(channels=256), 'model.channels must list'),
    (dict(channels=[]), 'model.channels must list'),
    (dict(mask_source='neckk'), r"model.mask_source='neckk'.*\['neck'\]"),
    (dict(num_tokens=0), 'model.num_tokens'),
    (dict(diversity_weight=-1.0), 'model.diversity_weight'),
])
def test_bad_settings_name_the_key(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def test_any_module_with_per_level_outputs_can_be_masked():
    """The backbone declares no levels: its outputs are checked at the first
    forward, naming the level and the key."""
    model = build(mask_source='backbone', channels=[WIDTH] * 4)
    optim = build_optim_wrapper(model,
                                dict(optimizer=dict(type='SGD', lr=0.1)))
    model.train()
    with pytest.raises(ValueError, match=r'model.channels\[0\]=32.*\(2, 64,'):
        model.train_step(batch(), optim)
    model = build(
        mask_source='backbone',
        channels=[64, 128, 256, 512],
        weight_mask=False)
    log = model.train_step(
        batch(),
        build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.1))))
    assert 'loss_mask_div3' in log and 'loss_mask_div4' not in log


def _shapes_cfg(shapes_root, teacher_ckpt, iters, validate, small=True):
    cfg = load_config(SHAPES_CONFIG)
    options = shapes_det_overrides(
        cfg, shapes_root, size=64, batch_size=2, validate=validate)
    options.update({
        'model.teacher_ckpt': teacher_ckpt,
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': iters,
        'param_scheduler.0.T_max': iters,
        'param_scheduler.0.end': iters,
        'default_hooks.checkpoint.interval': iters,
        'default_hooks.logger.interval': 1,
        'env_cfg.mp_cfg.opencv_num_threads': 1,
    })
    if small:
        options.update({
            'model.teacher.cfg_options':
            SMALL_TEACHER['cfg_options'],
            'model.channels': [WIDTH] * 5,
        })
    return cfg, options


def _teacher_file(path, small=True):
    torch.manual_seed(0)
    from mmakd.models.utils import build_model_from_spec
    spec = copy.deepcopy(SMALL_TEACHER) if small else dict(
        cfg_path=SHAPES_TEACHER)
    teacher = build_model_from_spec(spec, 'teacher')
    torch.save(dict(state_dict=teacher.state_dict(), meta={}), path)
    return teacher.state_dict()


def _check_output(ckpt_path, teacher_state, masks0, channels):
    state = torch.load(ckpt_path, map_location='cpu')['state_dict']
    for key, value in teacher_state.items():
        assert torch.equal(state[f'architecture.{key}'], value), key
    for key, value in masks0.items():
        assert not torch.equal(state[f'mask_modules.{key}'], value), key
    for level in range(5):
        loss = MasKDLoss(
            channels=channels,
            pretrained=ckpt_path,
            pretrained_prefix=f'mask_modules.{level}.')
        torch.testing.assert_close(loss.mask_token,
                                   state[f'mask_modules.{level}.mask_token'])


def test_runner_trains_the_masks_on_shapes(tmp_path, shapes_root):
    """The shapes config (the zoo's mask-learning config with a small
    teacher) in MMEngine's runner: 2 iterations, tokens change, the
    teacher in the checkpoint is the teacher checkpoint, MasKDLoss loads
    the result level by level."""
    from mmengine.runner import Runner
    teacher_state = _teacher_file(str(tmp_path / 'teacher.pth'))
    cfg, options = _shapes_cfg(
        shapes_root, str(tmp_path / 'teacher.pth'), iters=2, validate=False)
    cfg.merge_from_dict(options)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.experiment_name = f'maskd-masks-{tmp_path.name}'
    runner = Runner.from_cfg(cfg)
    masks0 = snapshot(runner.model.mask_modules)
    runner.train()
    _check_output(
        str(tmp_path / 'work' / 'iter_2.pth'), teacher_state, masks0, WIDTH)


@pytest.mark.slow
def test_tools_train_learns_masks_and_validates_on_shapes(
        tmp_path, shapes_root):
    """tools/train.py on the shapes config as users run it (256-channel
    FPN, validation of the masked teacher with CocoMetric)."""
    teacher_state = _teacher_file(str(tmp_path / 'teacher.pth'), small=False)
    cfg, options = _shapes_cfg(
        shapes_root,
        str(tmp_path / 'teacher.pth'),
        iters=3,
        validate=True,
        small=False)
    options['default_hooks.checkpoint.interval'] = 1
    work_dir = str(tmp_path / 'work')
    result = run_python([
        'tools/train.py', SHAPES_CONFIG, '--work-dir', work_dir,
        '--cfg-options'
    ] + cli_options(options))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'loss_mask_div4' in log and 'coco/bbox_mAP' in log
    masks1 = {
        k[len('mask_modules.'):]: v
        for k, v in torch.load(osp.join(work_dir, 'iter_1.pth'))
        ['state_dict'].items() if k.startswith('mask_modules.')
    }
    _check_output(osp.join(work_dir, 'iter_3.pth'), teacher_state, masks1, 256)


# ---------------------------------------------------------------------------
# the zoo configs: stages link up, the recipe freezes the losses
# ---------------------------------------------------------------------------
def _maskd_losses(cfg):
    return {
        name: loss
        for name, loss in cfg.model.distiller.distill_losses.items()
        if loss.type == 'MasKDLoss'
    }


def test_mask_learner_configs_match_their_distillation_configs():
    """Each distillation config loads masks made for its teacher, with the
    settings they were made with, one prefix per FPN level."""
    for distill, masks in ((DISTILL_R101, MASKS_R101), (DISTILL_X101,
                                                        MASKS_X101)):
        d, m = Config.fromfile(distill), Config.fromfile(masks)
        assert d.model.teacher.cfg_path == m.model.teacher.cfg_path
        assert d.model.teacher_ckpt == m.model.teacher_ckpt
        assert m.model.type == 'MasKDMaskLearner'
        losses = _maskd_losses(d)
        assert len(losses) == len(m.model.channels)
        for level, (name, loss) in enumerate(sorted(losses.items())):
            assert loss.pretrained_prefix == f'mask_modules.{level}.'
            assert loss.channels == m.model.channels[level]
            assert loss.num_tokens == m.model.num_tokens
            assert loss.weight_mask == m.model.weight_mask
            assert loss.freeze_masks is True
        assert d.optim_wrapper.paramwise_cfg.custom_keys[
            'distiller.distill_losses'] == dict(
                lr_mult=0, decay_mult=0)
    # R101: the reference's published masks for that teacher.
    pretrained = {
        loss.pretrained
        for loss in _maskd_losses(Config.fromfile(DISTILL_R101)).values()
    }
    assert pretrained == {
        'https://github.com/Gumpest/MasKD/releases/download/v0.0.3/'
        'maskd_retinanet_r101_fpn_2x_coco_20200131-5560aee8.ckpt'
    }
    # X101: the last checkpoint of the X101 mask-learning config.
    x101 = Config.fromfile(MASKS_X101)
    pretrained = {
        loss.pretrained
        for loss in _maskd_losses(Config.fromfile(DISTILL_X101)).values()
    }
    assert pretrained == {
        f'work_dirs/{osp.basename(MASKS_X101)[:-3]}/'
        f'iter_{x101.train_cfg.max_iters}.pth'
    }
    assert x101.default_hooks.checkpoint.interval == x101.train_cfg.max_iters


def _fake_reference_masks(torch_home, url):
    """A mask checkpoint in the reference's layout (the whole detector's
    state_dict with ``mask_modules.<level>.*``), where the URL is cached."""
    torch.manual_seed(7)
    state = {'backbone.conv1.weight': torch.zeros(1)}
    for level in range(5):
        for key, value in MasKDLoss(channels=256).state_dict().items():
            state[f'mask_modules.{level}.{key}'] = value
    folder = osp.join(torch_home, 'hub', 'checkpoints')
    os.makedirs(folder, exist_ok=True)
    torch.save(dict(state_dict=state), osp.join(folder, url.rsplit('/', 1)[1]))
    return state


def _recipe(tmp_path, monkeypatch):
    """The zoo's R101 MasKD config, its masks served from the download
    cache, with RetinaNet R18 as teacher and student (same 256-channel FPN
    and head) so that a step runs in seconds."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    cfg = load_config(DISTILL_R101)
    url = _maskd_losses(cfg)['loss_maskd_fpn0'].pretrained
    state = _fake_reference_masks(str(tmp_path), url)
    r18 = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'
    cfg.merge_from_dict({
        'model.teacher_ckpt': None,
        'model.teacher.cfg_path': r18,
        'model.architecture.cfg_path': r18,
        'model.check_shapes': False,  # tests/test_configs.py does it
    })
    init_default_scope('mmrazor')
    return cfg, MODELS.build(cfg.model), state


def _step_keeps_losses(model, optim, seed):
    losses0 = snapshot(model.distiller.distill_losses)
    student0 = [(p.detach().clone(), p) for p in model.student.parameters()
                if p.requires_grad]
    model.train()
    log = model.train_step(
        det_batch(2, 64, 64, num_classes=80, seed=seed), optim)
    assert torch.isfinite(log['distill.loss_maskd_fpn0'])
    for key, value in model.distiller.distill_losses.state_dict().items():
        assert torch.equal(value, losses0[key]), key
    moved = sum(not torch.equal(a, p) for a, p in student0)
    assert moved > 0.5 * len(student0)


def test_recipe_loads_masks_and_keeps_every_loss_parameter(
        tmp_path, monkeypatch, no_network):
    """The masks load per level and are frozen: no gradient, not in the
    optimizer, unchanged by a step that trains the student. With gradients
    switched back on, paramwise_cfg alone (lr_mult=0, decay_mult=0 on
    distiller.distill_losses) still keeps them: the custom key matches the
    losses' parameter names."""
    cfg, model, state = _recipe(tmp_path, monkeypatch)
    losses = model.distiller.distill_losses
    for level in range(5):
        loss = losses[f'loss_maskd_fpn{level}']
        assert torch.equal(loss.mask_token,
                           state[f'mask_modules.{level}.mask_token'])
        assert loss.freeze_masks
    assert not any(p.requires_grad for p in losses.parameters())
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    optimized = {id(p) for g in optim.param_groups for p in g['params']}
    assert not optimized & {id(p) for p in losses.parameters()}
    _step_keeps_losses(model, optim, seed=0)

    losses.requires_grad_(True)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    ids = {id(p) for p in losses.parameters()}
    groups = [
        g for g in optim.param_groups if any(
            id(p) in ids for p in g['params'])
    ]
    assert len(groups) == len(ids)
    assert all(g['lr'] == 0 and g['weight_decay'] == 0 for g in groups)
    _step_keeps_losses(model, optim, seed=1)
    # The tokens did get gradients (SGD's momentum holds them).
    for level in range(5):
        token = losses[f'loss_maskd_fpn{level}'].mask_token
        assert optim.optimizer.state[token]['momentum_buffer'].abs().sum() > 0


def test_zoo_teacher_urls_match_the_mask_checkpoint_names():
    """The R101 masks were learned on the checkpoint whose hash their file
    name carries, which is this config's teacher."""
    cfg = Config.fromfile(DISTILL_R101)
    url = _maskd_losses(cfg)['loss_maskd_fpn0'].pretrained
    digest = re.search(r'_(\d{8}-[0-9a-f]{8})\.ckpt$', url).group(1)
    assert cfg.model.teacher_ckpt.endswith(f'_{digest}.pth')
