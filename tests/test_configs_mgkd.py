# Copyright (c) mmakd contributors. All rights reserved.
"""Every config under configs/mgkd/: it parses, its stages link up (each
checkpoint path is the one the stage before writes), it builds with random
weights and no download, and one optimisation step on CPU at tiny size
trains what it should and nothing else."""
import copy
import functools
import glob
import os.path as osp
import re
from typing import Dict

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmakd.registry import MODELS
from mmakd.testing import seg_batch
from helpers import REPO

ROOT = osp.join(REPO, 'configs', 'mgkd')
CONFIGS = sorted(
    osp.relpath(p, ROOT)
    for p in glob.glob(osp.join(ROOT, '**', '*.py'), recursive=True)
    if '_base_' not in p.split(osp.sep))
#: Segmentation models see 64x64 inputs (their preprocessors pad to the
#: 512x1024 crop otherwise).
SMALL_SEG_INPUT = {'model.data_preprocessor.size': (64, 64)}
#: A PSPNet R101-d8 teacher shrunk to an R18-d8 backbone for the CPU step;
#: its decode head (512 channels, what the teacher tubes read) is unchanged.
SMALL_SEG_TEACHER = {
    'model.backbone.depth': 18,
    'model.decode_head.in_channels': 512,
    'model.auxiliary_head.in_channels': 256,
    **SMALL_SEG_INPUT
}


@functools.lru_cache(maxsize=None)
def _load(name: str) -> Config:
    return Config.fromfile(osp.join(ROOT, name))


def load(name: str) -> Config:
    """A fresh copy of the parsed config (parsing is cached)."""
    return copy.deepcopy(_load(name))


def kind(cfg: Config) -> str:
    return {
        'MGKDAnalyserTrainer': 'analyser',
        'FlexibleTeacherDistill': 'distill'
    }.get(cfg.model.type, 'model')


def work_dir_config(path: str) -> str:
    """The config whose default work_dir holds ``path``."""
    match = re.match(r'work_dirs/([^/]+)/(epoch|iter)_(\d+)\.pth$', path)
    assert match, f'{path!r} is not a work_dirs/<config>/<ckpt> path'
    found = [c for c in CONFIGS if osp.basename(c) == match[1] + '.py']
    assert len(found) == 1, f'no config named {match[1]}.py for {path!r}'
    cfg = load(found[0])
    last = cfg.train_cfg.get('max_epochs', cfg.train_cfg.get('max_iters'))
    assert match[2] == ('epoch' if cfg.train_cfg.get(
        'by_epoch', 'max_epochs' in cfg.train_cfg) else 'iter') and int(
            match[3]) == last, (f'{path!r}: {found[0]} writes its last '
                                f'checkpoint at {last}')
    return found[0]


def tube_connectors(cfg: Config) -> Dict[str, Dict]:
    connectors = cfg.model.get('distiller', {}).get('connectors') or {}
    return {
        name: c
        for name, c in connectors.items() if c.get('type') == 'MGKDAnalyser'
    }


def test_configs_found():
    names = [osp.basename(c) for c in CONFIGS]
    assert len(names) >= 15
    assert 'mgkd_kd_wrn-40-2_wrn-16-2_1xb64-240e_cifar100.py' in names
    assert any(n.startswith('mgkd_akd_') for n in names)


@pytest.mark.parametrize('name', CONFIGS)
def test_stages_link_up(name):
    """teacher_ckpt and the teacher tubes' checkpoint are the last
    checkpoints of the configs that train them, and stage 1 analysed the
    same teacher that stage 2 distils from."""
    cfg = load(name)
    if kind(cfg) == 'model':
        return
    teacher = cfg.model.teacher
    if '::' not in teacher.cfg_path:  # a teacher this folder trains
        trainer = work_dir_config(cfg.model.teacher_ckpt)
        assert osp.join(ROOT, trainer) == teacher.cfg_path
    for conn_name, conn in tube_connectors(cfg).items():
        if conn.get('num_classes') is None:
            assert not conn.get('checkpoint'), conn_name
            continue
        stage1 = load(work_dir_config(conn.checkpoint))
        assert stage1.model.type == 'MGKDAnalyserTrainer'
        assert stage1.model.teacher.cfg_path == teacher.cfg_path
        assert stage1.model.teacher_ckpt == cfg.model.teacher_ckpt
        for key in ('in_channels', 'num_classes', 'bottlenecks'):
            assert stage1.model.analyser[key] == conn[key], key


_STAGE1: Dict[str, str] = {}


def build_model(cfg: Config,
                tmp_path_factory,
                check_shapes: bool = True) -> torch.nn.Module:
    """cfg.model with random weights, no download, tiny seg teachers, and
    the teacher tubes loaded from a checkpoint of its stage-1 config.
    ``check_shapes=False`` skips FlexibleTeacherDistill's build-time dummy
    forward (seconds per build on 2 CPU cores)."""
    model_cfg = copy.deepcopy(cfg.model)
    if 'teacher_ckpt' in model_cfg:
        model_cfg.teacher_ckpt = None
    if model_cfg.type == 'FlexibleTeacherDistill' and not check_shapes:
        model_cfg.check_shapes = False
    teacher = model_cfg.get('teacher')
    if teacher is not None and 'mmseg::' in teacher.get('cfg_path', ''):
        teacher.cfg_options = dict(SMALL_SEG_TEACHER)
    student = model_cfg.get('architecture')
    if student is not None and 'mmseg::' in student.get('cfg_path', ''):
        student.cfg_options = dict(SMALL_SEG_INPUT)
    for conn in tube_connectors(cfg).values():
        if conn.get('checkpoint'):
            name = work_dir_config(conn.checkpoint)
            conn_cfg = model_cfg.distiller.connectors
            path = _STAGE1.get(name)
            if path is None:
                stage1 = build_model(load(name), tmp_path_factory)
                path = str(tmp_path_factory.mktemp('stage1') / 'last.pth')
                torch.save(dict(state_dict=stage1.state_dict()), path)
                _STAGE1[name] = path
            for value in conn_cfg.values():
                if value.get('checkpoint') == conn.checkpoint:
                    value.checkpoint = path
    return MODELS.build(model_cfg)


def batch(cfg: Config, name: str):
    if name.startswith('mmseg'):
        return seg_batch(2, 64, 64, num_classes=19, seed=0)
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(0)
    return dict(
        inputs=[
            torch.randint(0, 256, (3, 32, 32), generator=gen).to(torch.uint8)
            for _ in range(2)
        ],
        data_samples=[DataSample().set_gt_label(i) for i in range(2)])


def snapshot(module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(module, before) -> bool:
    return any(not torch.equal(v, before[k])
               for k, v in module.state_dict().items())


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_and_trains_one_step(name, tmp_path_factory):
    cfg = load(name)
    init_default_scope(cfg.get('default_scope', 'mmrazor'))
    torch.manual_seed(0)
    # The build-time shape check runs for the paper-setting MGKD configs
    # (each kind of MGKD wiring once); the twins and teachers are plain
    # MMRazor/MMPretrain setups and the synthetic configs repeat the wiring.
    model = build_model(
        cfg,
        tmp_path_factory,
        check_shapes=osp.basename(name).startswith('mgkd_')
        and 'synthetic' not in name)
    optim = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    model.train()
    before = snapshot(model)
    log = model.train_step(batch(cfg, name), optim)
    assert all(torch.isfinite(v).all() for v in log.values()), log
    assert changed(model, before)
    if kind(cfg) == 'analyser':
        assert not changed(
            model.teacher, {
                k[len('architecture.'):]: v
                for k, v in before.items() if k.startswith('architecture.')
            })
        assert {'loss_kl_narrow', 'loss_kl_wide'} <= set(log)
    elif kind(cfg) == 'distill':
        prefix = 'teacher.'
        teacher_before = {
            k[len(prefix):]: v
            for k, v in before.items() if k.startswith(prefix)
        }
        assert not changed(model.teacher, teacher_before)
        student_before = {
            k[len('architecture.'):]: v
            for k, v in before.items() if k.startswith('architecture.')
        }
        assert changed(model.student, student_before)
        for conn_name, conn in tube_connectors(cfg).items():
            module = model.distiller.connectors[conn_name]
            conn_before = {
                k.split(f'connectors.{conn_name}.', 1)[1]: v
                for k, v in before.items() if f'.connectors.{conn_name}.' in k
            }
            # Teacher tubes stay fixed; student tubes learn.
            assert changed(module, conn_before) == (not module.frozen), \
                conn_name
            assert module.frozen == bool(conn.get('checkpoint'))
        assert any(k.startswith('distill.') for k in log)


def test_stage2_before_stage1_names_the_checkpoint_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no work_dirs here
    cfg = load('mmpretrain/mgkd_kd_wrn-40-2_wrn-16-2_1xb64-240e_cifar100.py')
    with pytest.raises(FileNotFoundError, match='model.teacher_ckpt'):
        MODELS.build(copy.deepcopy(cfg.model))
    cfg.model.teacher_ckpt = None
    with pytest.raises(
            FileNotFoundError, match=r'MGKDAnalyser.checkpoint=.*connectors'):
        MODELS.build(cfg.model)
