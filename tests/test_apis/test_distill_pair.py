# Copyright (c) mmakd contributors. All rights reserved.
"""One-command distillation (``tools/train.py STUDENT --teacher T
--teacher-ckpt C``): the generated wiring against the hand-written zoo
config, stock MMDetection / MMSegmentation / MMPretrain pairs that build
from the generated file and take one step (random weights, generated
batches, no network), and the errors."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmakd.apis.distill_pair import (PairingError, PairPlan, format_table,
                                     make_pair_config, plan_pair)
from mmakd.models.utils import build_model_from_spec
from mmakd.registry import MODELS
from mmakd.testing import batch_for_model, random_weights_overrides
from mmakd.utils import load_config
from helpers import DEMO, REPO

DET_S = f'{DEMO}/retinanet_r18-w8_fpn-64_1xb8-400it_shapes-128.py'
DET_T = f'{DEMO}/retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128.py'
SEG_S = f'{DEMO}/pspnet_r18-w8_1xb8-600it_shapes-128.py'
SEG_T = f'{DEMO}/pspnet_r18-w32_1xb8-1600it_shapes-128.py'
URL = 'https://download.openmmlab.com/not-read.pth'  # never downloaded
ZOO_CWD_RETINA = ('configs/akd/mmdet/cwd/'
                  'cwd_fpn_retinanet-r101_retinanet-r50_8xb2-2x_coco.py')
WIRING = ('student_recorders', 'teacher_recorders', 'distill_losses',
          'loss_forward_mappings', 'connectors')


def _make(tmp_path, student, teacher, **kwargs):
    return make_pair_config(
        student,
        teacher,
        kwargs.pop('ckpt', URL),
        work_dir=str(tmp_path),
        **kwargs)


def _unscoped(value):
    if isinstance(value, dict):
        return {k: _unscoped(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [_unscoped(v) for v in value]
    return value


def test_retinanet_wiring_equals_the_zoo_config(tmp_path, no_network):
    """RetinaNet R101 -> R50: the generated file, read back as a user's
    config, wires exactly what the hand-written zoo config does."""
    zoo = Config.fromfile(osp.join(REPO, ZOO_CWD_RETINA))
    made = _make(
        tmp_path,
        'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py',
        'mmdet::retinanet/retinanet_r101_fpn_2x_coco.py',
        ckpt=zoo.model.teacher_ckpt)
    cfg = Config.fromfile(made.path)
    assert osp.dirname(made.path) == str(tmp_path)
    assert osp.basename(made.path) == (
        'cwd_fpn_retinanet_r101_fpn_2x_coco_retinanet_r50_fpn_2x_coco.py')
    for key in WIRING:
        assert cfg.model.distiller.get(key) == zoo.model.distiller.get(key), \
            key
    for key in ('type', 'architecture', 'teacher', 'teacher_ckpt'):
        assert cfg.model[key] == zoo.model[key], key
    assert cfg.model.distiller.type == 'ConfigurableDistiller'
    assert cfg.val_cfg == zoo.val_cfg
    assert cfg.find_unused_parameters is True
    # the student's own data, schedule and optimizer
    student = load_config(made.plan.student)
    for key in ('train_dataloader', 'optim_wrapper', 'param_scheduler',
                'train_cfg', 'default_hooks'):
        # (a package base stamps its dicts with _scope_='mmdet')
        assert _unscoped(cfg[key]) == _unscoped(student[key]), key
    assert cfg.custom_hooks[-1] == dict(type='mmrazor.StudentCheckpointHook')
    assert cfg.get('data_preprocessor') is None


#: Stock pairs: (student, teacher, options, what the table must show).
STOCK = {
    'retinanet': ('mmdet::retinanet/retinanet_r50_fpn_2x_coco.py',
                  'mmdet::retinanet/retinanet_r101_fpn_2x_coco.py', {}),
    'fcos': ('mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py',
             'mmdet::fcos/fcos_r101-caffe_fpn_gn-head-1x_coco.py', {}),
    'faster-rcnn-pkd': ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py',
                        'mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py',
                        dict(distill='pkd')),
    'gfl-mgd': ('mmdet::gfl/gfl_r50_fpn_1x_coco.py',
                'mmdet::gfl/gfl_r101_fpn_ms-2x_coco.py', dict(distill='mgd')),
    # neck channels 128 (student) and 256 (teacher): 1x1 connectors
    'yolox-channels-akd':
    ('mmdet::yolox/yolox_s_8xb8-300e_coco.py',
     'mmdet::yolox/yolox_l_8xb8-300e_coco.py', dict(num_avatars=2)),
    'pspnet-aux':
    ('mmseg::pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py',
     'mmseg::pspnet/pspnet_r101-d8_4xb2-80k_cityscapes-512x1024.py',
     dict(aux_head=True)),
    'deeplabv3-akd':
    ('mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py',
     'mmseg::deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py',
     dict(num_avatars=4)),
    'resnet-kd-akd': ('mmpretrain::resnet/resnet18_8xb32_in1k.py',
                      'mmpretrain::resnet/resnet34_8xb32_in1k.py',
                      dict(num_avatars=2)),
}
#: Kept in the default run (the others: `make test-all`, and CI's
#: `make test-pair`).
FAST_STOCK = ('yolox-channels-akd', 'pspnet-aux', 'resnet-kd-akd')
#: Expected: (number of losses, loss weight, connector type or None).
EXPECTED = {
    'retinanet': (5, 10, None),
    'fcos': (5, 10, None),
    'faster-rcnn-pkd': (4, 6, None),  # PKD: first four levels, two-stage 6
    'gfl-mgd': (5, None, 'MGDConnector'),
    'yolox-channels-akd': (3, 10, 'ConvModuleConnector'),
    'pspnet-aux': (2, 5, None),
    'deeplabv3-akd': (1, 5, None),
    'resnet-kd-akd': (1, 3, None),
}


def _stock_cases():
    return [
        pytest.param(
            name, marks=() if name in FAST_STOCK else pytest.mark.slow)
        for name in STOCK
    ]


@pytest.mark.parametrize('name', _stock_cases())
def test_stock_pair_builds_from_the_generated_file_and_steps(
        name, tmp_path, no_network):
    student, teacher, options = STOCK[name]
    made = _make(tmp_path, student, teacher, **options)
    count, weight, connector = EXPECTED[name]
    cfg = Config.fromfile(made.path)
    distiller = cfg.model.distiller
    assert len(distiller.distill_losses) == count
    weights = [
        loss.get('loss_weight') for loss in distiller.distill_losses.values()
    ]
    if name == 'pspnet-aux':  # the student's own aux/decode ratio, 0.4
        assert weights == [weight, weight * 0.4]
    else:
        assert weights == [weight] * count
    connectors = distiller.get('connectors') or {}
    assert [c.type for c in connectors.values()] == [connector] * (
        count if connector else 0)
    if options.get('num_avatars'):
        assert distiller.type == 'AvatarDistiller'
        assert distiller.avatars.num_avatars == options['num_avatars']
    for pair in made.plan.pairs:  # the table shows every loss
        assert pair.loss in made.table

    cfg.merge_from_dict(random_weights_overrides(cfg))
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    # five levels (P3-P7): P7 is 2x2 at 256x256 (CWD on a 1x1 map is 0)
    det_size = (256, 256) if count == 5 else (128, 128)
    size = {'seg': (64, 64), 'cls': (32, 32)}.get(made.plan.kind, det_size)
    if made.plan.kind == 'seg':
        model.data_preprocessor.size = size
    batch = batch_for_model(model.student, 2, *size)
    teacher0 = [p.detach().clone() for p in model.teacher.parameters()]
    connectors0 = [
        p.detach().clone() for p in model.distiller.connectors.parameters()
    ]
    model.train()
    MessageHub.get_current_instance().update_info('iter', 0)  # YOLOX's
    log = model.train_step(batch, optim)

    for loss in distiller.distill_losses:
        value = log[f'distill.{loss}']
        assert torch.isfinite(value) and value > 0, (loss, value)
    assert all(
        torch.equal(a, b)
        for a, b in zip(teacher0, model.teacher.parameters()))
    # the connectors learn (the optimizer moved every one of their tensors)
    assert bool(connectors0) == bool(connector)
    assert not any(
        torch.equal(a, b)
        for a, b in zip(connectors0, model.distiller.connectors.parameters()))


def _write_config(folder, name, text):
    path = osp.join(str(folder), name)
    with open(path, 'w') as f:
        f.write(text)
    return path


@pytest.mark.parametrize(
    'student, teacher, kwargs, expected',
    [
        # neck levels counted differently
        (DET_S, DET_T, dict(cfg_options={'model.neck.num_outs': 4}),
         ['4 levels', 'teacher\'s 3', 'model.neck.num_outs', DET_S, DET_T]),
        # same counts, other strides: Faster R-CNN P2-P6 against RetinaNet
        # P3-P7
        ('mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py',
         'mmdet::retinanet/retinanet_r101_fpn_2x_coco.py', {},
         ['loss_cwd_fpn0', 'stride 4', 'stride 8', 'same resolution']),
        (SEG_S, SEG_T, dict(cfg_options={'model.decode_head.num_classes': 5}),
         ['5 classes', 'model.decode_head.num_classes', SEG_S, SEG_T]),
        (SEG_S, DET_T, {}, ['a segmentor', 'a detector', DET_T]),
        (DET_S, DET_T, dict(cfg_options={'model.neck': None}), [
            'no neck (model.neck)', 'no decode head (model.decode_head)',
            'full MMRazor config'
        ]),
        (SEG_S, SEG_T, dict(distill='pkd'),
         ['--distill pkd', 'segmentors', 'they have: cwd']),
        (DET_S, DET_T, dict(distill='kd'),
         ['--distill kd', 'detectors', 'cwd, mgd, pkd']),
        (SEG_S, SEG_T, dict(aux_head=True),
         ['--aux-head', 'model.auxiliary_head']),
        (f'{DEMO}/cwd_fpn_retinanet-r18-w32_retinanet-r18-w8_1xb8-400it_'
         'shapes-128.py', DET_T, {},
         ['already a distillation config', 'FlexibleTeacherDistill']),
        (DET_S, 'configs/missing.py', {},
         ['--teacher configs/missing.py', 'does not load']),
    ],
    ids=[
        'levels', 'strides', 'classes', 'kinds', 'no-neck', 'no-recipe-seg',
        'no-recipe-det', 'no-aux-head', 'distill-config', 'missing-teacher'
    ])
def test_what_cannot_be_paired_is_named(student, teacher, kwargs, expected,
                                        tmp_path, no_network):
    with pytest.raises(PairingError) as info:
        _make(tmp_path / 'work', student, teacher, **kwargs)
    for text in expected:
        assert text in str(info.value), (text, str(info.value))
    assert not osp.exists(tmp_path / 'work')  # nothing written


def test_a_teacher_that_does_not_build_is_named(tmp_path, no_network):
    teacher = _write_config(
        tmp_path, 'bad_teacher.py', f"_base_ = ['{osp.join(REPO, DET_T)}']\n"
        'model = dict(backbone=dict(depth=17))\n')
    with pytest.raises(PairingError) as info:
        _make(tmp_path / 'work', DET_S, teacher)
    message = str(info.value)
    assert f'--teacher {teacher}' in message
    assert "model.type='RetinaNet'" in message and 'does not build' in message
    assert 'invalid depth 17' in message


def test_a_missing_local_teacher_checkpoint_is_named(tmp_path):
    missing = str(tmp_path / 'teacher.pth')
    with pytest.raises(
            FileNotFoundError, match='--teacher-ckpt=.*teacher.pth'):
        _make(tmp_path / 'work', DET_S, DET_T, ckpt=missing)


def test_mismatched_preprocessing_fails_before_writing(tmp_path, no_network):
    """The check the algorithm runs at build time runs on the generated
    config before it is written."""
    teacher = _write_config(
        tmp_path, 'teacher_rgb.py', f"_base_ = ['{osp.join(REPO, DET_T)}']\n"
        'model = dict(data_preprocessor=dict(bgr_to_rgb=False))\n')
    with pytest.raises(ValueError, match='model.teacher.data_preprocessor'):
        _make(tmp_path / 'work', DET_S, teacher)
    assert not osp.exists(tmp_path / 'work')


def test_options_go_to_the_student_the_algorithm_and_the_config(
        tmp_path, no_network):
    """``--cfg-options``: model keys of the student go to its
    ``cfg_options``, the algorithm's to it, the rest is written whole; the
    file reproduces the merged config."""
    options = {
        'model.bbox_head.num_classes': 3,
        'model.teacher_eval': True,
        'model.distiller.distill_losses.loss_cwd_fpn1.tau': 2,
        'train_dataloader.batch_size': 3,
        'train_dataloader.dataset.pipeline.2.scale': (96, 96),
        'train_cfg.max_iters': 7,
    }
    made = _make(tmp_path, DET_S, DET_T, cfg_options=options)
    cfg = Config.fromfile(made.path)
    assert cfg.model.architecture.cfg_options == {
        'model.bbox_head.num_classes': 3
    }
    assert cfg.model.teacher_eval is True
    assert cfg.model.distiller.distill_losses.loss_cwd_fpn1.tau == 2
    assert cfg.model.distiller.distill_losses.loss_cwd_fpn0.tau == 1
    student = load_config(DET_S, {
        k: v
        for k, v in options.items() if not k.startswith('model.')
    })
    for key in ('train_dataloader', 'train_cfg', 'val_dataloader'):
        assert cfg[key] == student[key], key
    assert cfg.train_dataloader.dataset.pipeline[2].scale == (96, 96)
    # the generated file writes only what it changes
    text = open(made.path).read()
    assert 'val_dataloader' not in text and 'train_dataloader' in text


def test_a_different_config_of_the_same_name_is_moved_aside(
        tmp_path, no_network):
    first = _make(tmp_path, DET_S, DET_T)
    text = open(first.path).read()
    again = _make(tmp_path, DET_S, DET_T)  # the same: left as it is
    assert again.replaced is None and open(again.path).read() == text
    changed = _make(
        tmp_path, DET_S, DET_T, cfg_options={'train_cfg.max_iters': 9})
    assert changed.path == first.path and changed.replaced
    assert open(changed.replaced).read() == text
    assert 'max_iters=9' in open(changed.path).read()


def test_the_students_load_from_loads_into_the_student(tmp_path, no_network):
    """A student config that fine-tunes from ``load_from``: in the
    distillation run the runner would load it into the algorithm (no key
    matches); the generated config gives it to the student instead."""
    init = build_model_from_spec(dict(cfg_path=DET_S), 'student')
    for p in init.parameters():
        torch.nn.init.normal_(p, 0.5, generator=torch.Generator())
    ckpt = str(tmp_path / 'student_init.pth')
    torch.save(dict(state_dict=init.state_dict()), ckpt)
    student = _write_config(
        tmp_path, 'finetune.py', f"_base_ = ['{osp.join(REPO, DET_S)}']\n"
        f"load_from = '{ckpt}'\n")
    made = _make(tmp_path / 'work', student, DET_T)
    cfg = Config.fromfile(made.path)
    assert cfg.load_from is None
    assert "load_from is its model.init_cfg" in open(made.path).read()

    cfg.merge_from_dict(random_weights_overrides(cfg))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.init_weights()
    loaded = model.student.state_dict()
    for key, value in init.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_the_user_guide_shows_the_table_the_command_prints():
    """docs/user_guide.md section 10 shows the demo pair's table with
    ``--avatars 4``: the same lines as :func:`format_table` prints."""
    plan, _, _ = plan_pair(
        DET_S,
        DET_T,
        'work_dirs/akd_demo/det/teacher/iter_2000.pth',
        num_avatars=4)
    with open(osp.join(REPO, 'docs', 'user_guide.md')) as f:
        guide = f.read()
    section = guide.split('## 10. Distil any two models')[1]
    shown = section.split('```text\n', 1)[1].split('```', 1)[0]
    assert shown == format_table(plan) + '\n'


class _TensorNeckDetector(torch.nn.Module):
    """A detector-shaped module whose neck returns one tensor, not a tuple
    of levels."""

    def __init__(self):
        super().__init__()
        self.neck = torch.nn.Conv2d(3, 4, 3, stride=8, padding=1)

    def extract_feat(self, inputs):
        return self.neck(inputs)


def test_a_neck_that_returns_one_tensor_is_recorded_whole():
    from mmakd.apis.distill_pair.plan import _det_pairs
    from mmakd.apis.distill_pair.probe import probe_records
    from mmakd.apis.distill_pair.recipes import RECIPES
    shapes = probe_records(_TensorNeckDetector(), 'det', ['neck'], (64, 32))
    assert shapes == {'neck': [(1, 4, 8, 4)], '__tensor__': ['neck']}
    plan = PairPlan('s.py', 't.py', 'c.pth', 'det', 'cwd',
                    RECIPES[('det', 'cwd')], None, (64, 32))
    _det_pairs(plan, shapes['neck'], [(1, 4, 8, 4)], (False, True), False,
               ('s', 't'))
    mapping = plan.distiller['loss_forward_mappings']['loss_cwd_fpn0']
    assert mapping == dict(
        preds_S=dict(from_student=True, recorder='fpn'),
        preds_T=dict(from_student=False, recorder='fpn', data_idx=0))
    assert (plan.pairs[0].student, plan.pairs[0].teacher) == ('neck',
                                                              'neck[0]')
