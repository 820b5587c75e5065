# Copyright (c) mmakd contributors. All rights reserved.
"""Every distillation config MMRazor ships for MMDetection and MMSegmentation
(``distill/mmdet/**``, ``distill/mmseg/**``, found by globbing the installed
package, so that a config a new MMRazor adds is covered without editing this
file), built through mmakd's tooling with random weights and trained for one
step on CPU at a tiny input size:

- as shipped, with its ``ConfigurableDistiller`` (the baseline), and
- converted to AKD by the one-change swap of :data:`AKD_OPTIONS`, which must
  build and train, or, only for a loss AKD cannot perturb, fail at build
  time with an error that names the loss and the reason
  (:data:`CANNOT_PERTURB`).
"""
import os.path as osp
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlparse

import pytest
import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmakd.registry import MODELS
from mmakd.testing import det_batch, random_weights_overrides, seg_batch
from mmakd.utils import load_config
from helpers import MMRAZOR_DISTILL_CONFIGS, MMRAZOR_UPSTREAM_FIXES

#: Relative paths such as ``distill/mmdet/pkd/pkd_fpn_....py``.
SHIPPED = MMRAZOR_DISTILL_CONFIGS

# Converting a shipped config to AKD: the distiller's type plus `avatars`,
# exactly as `tools/train.py CONFIG --cfg-options ...` would merge them.
AKD_OPTIONS = {
    'model.distiller.type': 'AvatarDistiller',
    'model.distiller.avatars.num_avatars': 2,
    'model.distiller.avatars.perturbation.p': 0.2,
}
NUM_AVATARS = 2

CWD_RETINA = 'distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py'
CWD_RETINA_VIS = ('distill/mmdet/cwd/'
                  'cwd_fpn_retina_r101_retina_r50_1x_coco_visualization.py')
PKD_SWIN = 'distill/mmdet/pkd/pkd_fpn_mask-rcnn_swin_retina_r50_2x_coco.py'
CWD_PSPNET = ('distill/mmseg/cwd/'
              'cwd_logits_pspnet_r101-d8_pspnet_r18-d8_4xb2-80k_cityscapes-'
              '512x1024.py')

UPSTREAM_FIXES = MMRAZOR_UPSTREAM_FIXES

#: Configs with a loss AKD cannot perturb (e.g. one with several teacher
#: inputs): building the AKD model must fail with an error matching the
#: pattern, which must name the loss and say why. Only what is inherent
#: belongs here; the test fails if such a config starts to build. None of
#: MMRazor 1.0.0's detection and segmentation configs is such a case: each
#: loss takes exactly one teacher input (FBKD's goes through a teacher
#: connector, which AKD applies to every Avatar).
CANNOT_PERTURB: Dict[str, str] = {}

#: Configs whose model is exactly that of another shipped config, with only
#: runtime settings added; they are trained too, but only in the slow run.
#: The `_visualization` config adds MMRazor's `RazorVisualizationHook`, which
#: draws the student's FPN maps for validation images from disk before
#: training and after every epoch (and sets the checkpoint interval to -1).
MODEL_TWINS = {CWD_RETINA_VIS: CWD_RETINA}

#: The training cases of the default run; every other one is `slow`
#: (deselected by default, run by `make test-all`), whatever config a new
#: MMRazor adds, so that the default cost stays bounded. Each case took
#: 8-27 s here (random weights on CPU, 2 cores shared with other jobs):
#: the segmentation pair (8-9 s each) and the AKD swap of the PKD config
#: that pairs FPN levels of different strides (Swin-S Mask R-CNN teacher
#: P2-P6, RetinaNet student P3-P7; 19 s), the case this file was written
#: for.
DEFAULT_RUN = {
    ('shipped', CWD_PSPNET),
    ('akd', CWD_PSPNET),
    ('akd', PKD_SWIN),
}


def _cases(test: str) -> list:
    return [
        pytest.param(
            path,
            id=path,
            marks=() if (test, path) in DEFAULT_RUN else pytest.mark.slow)
        for path in SHIPPED
    ]


# ---------------------------------------------------------------------------
# building and training offline
# ---------------------------------------------------------------------------
def _cache_file(checkpoint: str, torch_home: str) -> Optional[str]:
    """Where MMEngine looks for ``checkpoint`` before downloading it."""
    from mmengine.runner.checkpoint import (get_deprecated_model_names,
                                            get_external_models,
                                            get_torchvision_models)
    if checkpoint.startswith('torchvision://'):
        url = get_torchvision_models().get(checkpoint[len('torchvision://'):])
    elif checkpoint.startswith('open-mmlab://'):
        name = checkpoint[len('open-mmlab://'):]
        url = get_external_models().get(get_deprecated_model_names().get(
            name, name))
    elif checkpoint.startswith(('http://', 'https://')):
        url = checkpoint
    else:
        return checkpoint
    if not url:
        return None
    return osp.join(torch_home, 'hub', 'checkpoints',
                    osp.basename(urlparse(url).path))


def _drop_uncached_pretrained(model: torch.nn.Module,
                              torch_home: str) -> List[Tuple[str, str]]:
    """Remove the ``Pretrained`` ``init_cfg``s whose checkpoint is not in the
    test's random-weight cache (ResNeXt and Swin ImageNet weights, MGD's
    student neck and head taken from the teacher's COCO checkpoint): those
    modules keep their random initialisation instead of downloading.

    Returns:
        list[tuple[str, str]]: The modules and checkpoints left out.
    """
    dropped = []
    for name, module in model.named_modules():
        init_cfg = getattr(module, 'init_cfg', None)
        cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
        kept = []
        for cfg in cfgs:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
                file = _cache_file(str(cfg.get('checkpoint')), torch_home)
                if file is None or not osp.isfile(file):
                    dropped.append((name, cfg.get('checkpoint')))
                    continue
            kept.append(cfg)
        if len(kept) < len(cfgs):
            module.init_cfg = kept if isinstance(init_cfg, list) else None
    return dropped


def _options(path: str, akd: bool) -> dict:
    options = dict(UPSTREAM_FIXES[path][1]) if path in UPSTREAM_FIXES else {}
    if akd:
        options.update(AKD_OPTIONS)
    return options


def _load(path: str, options: Optional[dict] = None):
    cfg = load_config(f'mmrazor::{path}', options)
    cfg.merge_from_dict(random_weights_overrides(cfg))
    assert not cfg.model.get('teacher_ckpt')
    init_default_scope(cfg.get('default_scope', 'mmrazor'))
    return cfg


@pytest.fixture
def build_shipped(torch_home, monkeypatch, no_network):
    """Build a shipped config with random weights, initialised as the
    runner would (``init_weights``: head priors, ResNet backbones from the
    random-weight checkpoint cache; other pretrained weights left out), and
    its optimiser wrapper."""
    monkeypatch.setenv('TORCH_HOME', torch_home)

    def build(path: str, options: Optional[dict] = None):
        torch.manual_seed(0)
        cfg = _load(path, options)
        model = MODELS.build(cfg.model)
        _drop_uncached_pretrained(model, torch_home)
        model.init_weights()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        return cfg, model, optim

    return build


def _batch(path: str, model) -> dict:
    """A tiny batch: 2x3x128x128 for detection, 2x3x64x64 for segmentation
    (whose preprocessor would pad every batch to the 512x1024 crop)."""
    if path.startswith('distill/mmseg/'):
        if getattr(model.data_preprocessor, 'size', None):
            model.data_preprocessor.size = (64, 64)
        return seg_batch(
            2, 64, 64, num_classes=model.student.decode_head.num_classes)
    return det_batch(2, 128, 128, num_classes=80)


def one_step(model, optim, batch) -> dict:
    """One ``train_step``: every logged value is finite, the teacher does
    not move and most trainable student parameters do."""
    teacher0 = [p.detach().clone() for p in model.teacher.parameters()]
    student0 = [(p.detach().clone(), p.requires_grad)
                for p in model.student.parameters()]
    model.train()
    log = model.train_step(batch, optim)
    for name, value in log.items():
        assert torch.isfinite(value).all(), name
    assert all(
        torch.equal(a, b)
        for a, b in zip(teacher0, model.teacher.parameters()))
    trainable = [(a, b)
                 for (a, grad), b in zip(student0, model.student.parameters())
                 if grad]
    moved = sum(not torch.equal(a, b) for a, b in trainable)
    assert moved > 0.5 * len(trainable), f'{moved}/{len(trainable)} moved'
    return log


def _check_distill_losses(log: dict, loss_names) -> None:
    """Every distillation loss is logged and >= 0, and they do not all
    vanish (CWD on a 1x1 level, e.g. P7 of a 128x128 image, is 0)."""
    values = [log[f'distill.{name}'] for name in loss_names]
    assert all(v >= 0 for v in values), dict(zip(loss_names, values))
    assert sum(values) > 0


def _akd_log_names(loss_names: List[str]) -> Dict[str, str]:
    """``<name>`` of the ``akd.<name>.*`` log keys: the loss name without
    'loss' (MMEngine sums every logged value whose key holds 'loss')."""
    short = {
        n: n.replace('loss', '').strip('_.') or 'base'
        for n in loss_names
    }
    if len(set(short.values())) < len(short):
        short = {n: f'{s}{i}' for i, (n, s) in enumerate(short.items())}
    return short


def _check_visualization_recorders(cfg, model, batch) -> None:
    """A hook that records features (MMRazor's RazorVisualizationHook) finds
    its modules in the AKD model and records every map it would draw."""
    from mmrazor.models.task_modules import RecorderManager
    hooks = [
        hook for hook in (cfg.get('default_hooks') or {}).values()
        if isinstance(hook, dict) and 'recorders' in hook
    ] + [
        hook for hook in cfg.get('custom_hooks') or [] if 'recorders' in hook
    ]
    for hook in hooks:
        manager = RecorderManager(hook.recorders)
        manager.initialize(model)
        model.eval()
        with torch.no_grad(), manager:
            model.test_step(batch)
        for name, record in hook.mappings.items():
            feat = manager.get_recorder(record.recorder).get_record_data(
                record.get('record_idx', 0), record.get('data_idx'))
            assert isinstance(feat, torch.Tensor) and feat.dim() == 4, name


# ---------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------
def test_shipped_configs_are_found():
    assert {path.split('/')[1] for path in SHIPPED} == {'mmdet', 'mmseg'}
    assert CWD_RETINA in SHIPPED


@pytest.mark.parametrize(
    'table',
    ['UPSTREAM_FIXES', 'CANNOT_PERTURB', 'MODEL_TWINS', 'DEFAULT_RUN'])
def test_tables_name_shipped_configs(table):
    """The tables above cannot outlive the configs they name."""
    entries = set(globals()[table])
    if table == 'MODEL_TWINS':
        entries |= set(MODEL_TWINS.values())
    if table == 'DEFAULT_RUN':
        assert {test for test, _ in entries} <= {'shipped', 'akd'}
        entries = {path for _, path in entries}
    assert entries <= set(SHIPPED), sorted(entries - set(SHIPPED))


@pytest.mark.parametrize('path', sorted(UPSTREAM_FIXES))
def test_upstream_breakage_is_still_there(path, build_shipped):
    """As shipped, the config does not build even without AKD; once MMRazor
    fixes it, drop its entry from UPSTREAM_FIXES."""
    pattern = UPSTREAM_FIXES[path][0]
    with pytest.raises(Exception, match=pattern):
        build_shipped(path)
        pytest.fail(f'{path} builds as shipped now: remove it from '
                    'UPSTREAM_FIXES')


@pytest.mark.parametrize('path', sorted(MODEL_TWINS))
def test_model_twin_differs_only_in_runtime(path):
    """A twin trains exactly the model of its base config (swapped alike);
    what it adds is runtime only."""
    base_path = MODEL_TWINS[path]
    twin = load_config(f'mmrazor::{path}', _options(path, True)).to_dict()
    base = load_config(f'mmrazor::{base_path}', _options(base_path,
                                                         True)).to_dict()
    assert twin['model'] == base['model']
    assert twin['model']['distiller']['type'] == 'AvatarDistiller'
    differ = {k for k in set(twin) | set(base) if twin.get(k) != base.get(k)}
    assert differ == {'default_hooks'}


@pytest.mark.parametrize('path', _cases('shipped'))
def test_shipped_config_one_step(path, build_shipped):
    """The baseline: the config as MMRazor ships it (repaired where it does
    not build), with its ConfigurableDistiller."""
    cfg, model, optim = build_shipped(path, _options(path, akd=False))
    assert type(model.distiller).__name__ == 'ConfigurableDistiller'
    log = one_step(model, optim, _batch(path, model))
    _check_distill_losses(log, cfg.model.distiller.distill_losses)
    assert not any('.akd.' in key for key in log)


@pytest.mark.parametrize('path', _cases('akd'))
def test_akd_swap_one_step(path, build_shipped):
    """The one-change swap to AvatarDistiller builds and trains one step
    (or, for a loss AKD cannot perturb, refuses to build, saying why)."""
    if path in CANNOT_PERTURB:
        with pytest.raises(Exception, match=CANNOT_PERTURB[path]):
            build_shipped(path, _options(path, akd=True))
            pytest.fail(f'{path} builds with AvatarDistiller now: remove it '
                        'from CANNOT_PERTURB')
        return
    cfg, model, optim = build_shipped(path, _options(path, akd=True))
    assert type(model.distiller).__name__ == 'AvatarDistiller'
    assert model.distiller.num_avatars == NUM_AVATARS
    batch = _batch(path, model)
    log = one_step(model, optim, batch)

    distiller = cfg.model.distiller
    selected = distiller.avatars.get('losses') or list(
        distiller.distill_losses)
    _check_distill_losses(log, distiller.distill_losses)
    for loss_name, short in _akd_log_names(list(selected)).items():
        weights = [
            log[f'distill.akd.{short}.w{k}'] for k in range(NUM_AVATARS)
        ]
        assert f'distill.akd.{short}.w{NUM_AVATARS}' not in log
        assert all(0 <= w <= 1 for w in weights), (loss_name, weights)
        assert sum(weights).item() == pytest.approx(1.0, abs=1e-5)
        assert log[f'distill.akd.{short}.u'] >= 0

    _check_visualization_recorders(cfg, model, batch)
