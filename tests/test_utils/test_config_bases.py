# Copyright (c) mmakd contributors. All rights reserved.
"""Every shipped config as the ``_base_ = 'mmakd::...'`` of a user's own
config (README, "As a package"): it resolves, builds and trains as the file
does from the clone. MMEngine stamps a ``package::`` base's dicts with
``_scope_=package``; mmakd has no registries of its own, so without
``import mmakd``'s repair they fell back to MMEngine's root registries
(``EncoderDecoder is not in the mmengine::model registry``)."""
import glob
import os.path as osp
from typing import Dict, Tuple

import pytest
from mmengine.config import Config
from mmengine.registry import DATASETS, MODELS, init_default_scope
from mmengine.runner import Runner

from mmakd.testing import random_weights_overrides
from mmakd.utils import mmakd_base_scope
from helpers import (AKD_RETINA, REPO, cli_options, demo_options, run_python,
                     slow_unless)

CONFIGS = osp.join(REPO, 'configs')
SHIPPED = sorted(
    osp.relpath(path, CONFIGS)
    for path in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
    if '_base_' not in osp.relpath(path, CONFIGS).split(osp.sep))
DEMO = sorted(name for name in SHIPPED if name.startswith('akd/demo/'))


def user_config(folder, base: str, extra: str = '') -> str:
    """A user's ``my_config.py`` in ``folder`` on ``mmakd::base``."""
    path = osp.join(str(folder), 'my_config.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = 'mmakd::{base}'\n{extra}")
    return path


def build_scopes(cfg: Config) -> Dict[str, Tuple[str, str]]:
    """``{key path: (type, scope it builds in)}`` for every outermost dict
    with a ``type``; the scope is its ``_scope_`` or the config's
    ``default_scope``."""
    found = {}

    def walk(value, path):
        if isinstance(value, dict):
            if 'type' in value:
                found[path] = (str(value['type']), value.get('_scope_')
                               or cfg.default_scope)
                return
            for key, item in value.items():
                walk(item, f'{path}.{key}' if path else key)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(item, f'{path}[{index}]')

    walk(cfg._cfg_dict.to_dict(), '')
    return found


def test_shipped_configs_found():
    assert len(SHIPPED) >= 50 and len(DEMO) == 14
    assert set(DEMO_DEFAULT) <= set(DEMO)
    assert 'akd/demo/pspnet_r18-w8_1xb8-600it_shapes-128.py' in DEMO


# In `make test`: the demo and synthetic configs and one AKD detector,
# segmentor and multi-granularity segmentor; the other large models `slow`.
@pytest.mark.parametrize(
    'name',
    slow_unless(SHIPPED, [
        '/demo/', 'mmpretrain/synthetic/',
        'akd_cwd_fpn_retinanet-r101_retinanet-r50',
        'akd_cwd_logits_pspnet-r101-d8', 'mgkd_akd_cwd_logits'
    ]))
def test_shipped_config_as_mmakd_base_builds_in_its_own_scopes(tmp_path, name):
    """Each dict a user config inherits builds in the scope it builds in
    when the shipped file is used directly (before the repair: 'mmakd')."""
    local = Config.fromfile(osp.join(CONFIGS, name))
    inherited = Config.fromfile(user_config(tmp_path, name))
    scopes = build_scopes(inherited)
    assert scopes == build_scopes(local)
    assert scopes and 'mmakd' not in {scope for _, scope in scopes.values()}


def test_mmakd_base_scope_is_the_files_default_scope(tmp_path):
    assert mmakd_base_scope(osp.join(CONFIGS, DEMO[0])) == 'mmdet'
    assert mmakd_base_scope(osp.join(CONFIGS, AKD_RETINA)) == 'mmdet'
    bare = tmp_path / 'bare.py'
    bare.write_text('model = dict(type="ResNet", depth=18)\n')
    assert mmakd_base_scope(str(bare)) is None


#: Demo bases trained in the default run (one detection and one
#: segmentation AKD config); the others are ``slow`` (5-18 s each).
DEMO_DEFAULT = (
    'akd/demo/akd_cwd_fpn_retinanet-r18-w32_retinanet-r18-w8_1xb8-400it_'
    'shapes-128.py',
    'akd/demo/akd_cwd_logits_pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_'
    'shapes-128.py')


@pytest.mark.parametrize('name', [
    name if name in DEMO_DEFAULT else pytest.param(
        name, marks=pytest.mark.slow) for name in DEMO
])
def test_user_config_on_a_demo_base_trains_one_iteration(
        tmp_path, shapes_root, name):
    """A user config on each demo config, with one override of its own,
    builds its model, datasets and runner and trains one iteration on the
    shapes data (synthetic), random teacher weights (validation is left to
    the tools/train.py test below, to keep the default run short)."""
    cfg = Config.fromfile(
        user_config(tmp_path, name, 'randomness = dict(seed=7)\n'))
    options = demo_options(shapes_root, iters=1)
    if cfg.default_scope == 'mmdet':  # CocoMetric reads it when built
        options['val_evaluator.ann_file'] = (
            shapes_root + 'annotations/instances_val.json')
    cfg.merge_from_dict(options)
    cfg.merge_from_dict(random_weights_overrides(cfg))
    cfg.train_cfg.val_interval = 2
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    assert runner.seed == 7
    assert osp.isfile(osp.join(cfg.work_dir, 'iter_1.pth'))


def test_readme_coco_example_builds_model_datasets_and_runner(tmp_path):
    """The README's user config on the COCO AKD RetinaNet config (no COCO
    files needed: the datasets are built lazily, the model with random
    weights)."""
    cfg = Config.fromfile(
        user_config(tmp_path, AKD_RETINA,
                    'train_dataloader = dict(batch_size=4)\n'))
    cfg.merge_from_dict(random_weights_overrides(cfg))
    cfg.work_dir = str(tmp_path / 'work')
    init_default_scope(cfg.default_scope)
    for split in ('train', 'val', 'test'):
        dataset = DATASETS.build(
            dict(cfg[f'{split}_dataloader'].dataset, lazy_init=True))
        assert type(dataset).__name__ == 'CocoDataset'
        assert len(dataset.pipeline.transforms) >= 3
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'FlexibleTeacherDistill'
    assert type(model.distiller).__name__ == 'AvatarDistiller'
    assert type(model.student).__name__ == 'RetinaNet'
    runner = Runner.from_cfg(cfg)
    assert runner._train_dataloader['batch_size'] == 4  # built lazily
    assert type(runner.model).__name__ == 'FlexibleTeacherDistill'


@pytest.mark.slow  # builds are fast above; this trains from the CLI
def test_tools_train_runs_a_user_config_on_an_mmakd_base(
        tmp_path, shapes_root):
    """As a user runs it: ``tools/train.py my_config.py`` outside the clone,
    the user config on the AKD detection demo config, one iteration with
    the config's logger interval."""
    name = 'akd/demo/akd_cwd_fpn_retinanet-r18-w32_retinanet-r18-w8_' \
        '1xb8-400it_shapes-128.py'
    path = user_config(tmp_path, name, 'model = dict(teacher_ckpt=None)\n')
    options = demo_options(shapes_root, iters=1)
    options['val_evaluator.ann_file'] = (
        shapes_root + 'annotations/instances_val.json')
    # the config's logger interval (20) is longer than the run: one loss
    # line all the same (before: none)
    del options['default_hooks.logger.interval']
    result = run_python(
        [osp.join(REPO, 'tools', 'train.py'), path, '--cfg-options'] +
        cli_options(options),
        cwd=str(tmp_path))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'default_hooks.logger.interval=20 is longer than the run' in log
    assert 'Iter(train) [1/1]' in log and 'distill.akd.cwd_fpn0.w3' in log
    # validated the student and the teacher (a 1-iteration student may
    # detect nothing, and CocoMetric then logs no bbox mAP)
    assert log.count('Evaluating bbox...') == 2
    assert osp.isfile(
        osp.join(str(tmp_path), 'work_dirs', 'my_config', 'iter_1.pth'))
