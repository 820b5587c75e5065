# Copyright (c) mmakd contributors. All rights reserved.
"""The distillation doctor (:mod:`mmakd.apis.distill_doctor`): its numbers
against an independent computation, each warning kind triggered by a
crafted config and absent from a healthy one, on mmakd's demo configs and
MMRazor's shipped CWD RetinaNet config, with generated batches."""
import math
import os.path as osp

import pytest
import torch

from mmakd.apis.distill_doctor import (SHARE_MAX, SHARE_MIN, WARNING_KINDS,
                                       analyze_distill, cosine_similarity,
                                       default_fake_size, diagnose,
                                       offline_model_config, tensor_stats)
from mmakd.utils import load_config
from helpers import (DEMO_AKD, DEMO_CWD, DEMO_TEACHER, MMRAZOR_DISTILL_CONFIGS,
                     MMRAZOR_UPSTREAM_FIXES, REPO, random_teacher_checkpoint,
                     slow_unless)

CWD_RETINA = 'mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py'  # noqa: E501
#: The demo student without its head's dropout: the losses are then a
#: deterministic function of weights and batch (teacher_eval=True).
NO_STUDENT_DROPOUT = {
    'model.architecture.cfg_options': {
        'model.decode_head.dropout_ratio': 0.0
    }
}


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    """A (random) demo teacher checkpoint."""
    path = tmp_path_factory.mktemp('doctor') / 'teacher.pth'
    return random_teacher_checkpoint(str(path))


def healthy(teacher_ckpt, **extra):
    """The demo CWD setup with nothing wrong: a teacher checkpoint and the
    teacher in evaluation mode (no dropout in its logits)."""
    options = {'model.teacher_ckpt': teacher_ckpt, 'model.teacher_eval': True}
    options.update(extra)
    return options


def run(config, options=None, **kwargs):
    cfg = load_config(
        osp.join(REPO, config) if '::' not in config else config, options)
    kwargs.setdefault('fake_data', True)
    kwargs.setdefault('size', (64, 64))
    kwargs.setdefault('iters', 2)
    return analyze_distill(cfg, **kwargs)


def kinds(report):
    return [w['kind'] for w in report['warnings']]


def write_config(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(f"_base_ = ['{osp.join(REPO, DEMO_CWD)}']\n" + text)
    return str(path)


# ---------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------
def test_tensor_stats_and_cosine_golden():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    stats = tensor_stats(x)
    assert stats['shape'] == [2, 2]
    assert stats['mean'] == pytest.approx(2.5)
    assert stats['std'] == pytest.approx(math.sqrt(1.25))  # population std
    # a tuple of levels is pooled over all elements
    pooled = tensor_stats((torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])))
    assert pooled['shape'] == [[2], [2]]
    assert pooled['mean'] == pytest.approx(2.5)
    assert pooled['std'] == pytest.approx(math.sqrt(1.25))
    assert not tensor_stats(torch.tensor([1.0, float('nan')]))['finite']
    assert tensor_stats('not a tensor') is None
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])
    assert cosine_similarity(a, b) == pytest.approx(1 / math.sqrt(2))
    assert cosine_similarity(a, -a) == pytest.approx(-1.0)
    assert cosine_similarity(a, torch.zeros(3)) is None  # shapes differ


def test_numbers_match_an_independent_computation(teacher_ckpt, tmp_path):
    """Value, gradient norm, gradient share and input statistics of one
    step, against the same step computed here by hand, with the weights
    given as a checkpoint of the whole algorithm (--checkpoint): the
    teacher counts as loaded although model.teacher_ckpt is not set."""
    from mmakd.registry import MODELS
    from mmakd.testing import batch_for_model
    cfg = load_config(
        osp.join(REPO, DEMO_CWD), {
            'model.teacher_ckpt': None,
            'model.teacher_eval': True,
            **NO_STUDENT_DROPOUT
        })
    torch.manual_seed(3)
    model = MODELS.build(cfg.model)
    model.init_weights()
    state = torch.load(teacher_ckpt)['state_dict']
    model.teacher.load_state_dict(state)
    ckpt = str(tmp_path / 'algorithm.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)

    report = run(
        DEMO_CWD, {
            'model.teacher_ckpt': None,
            'model.teacher_eval': True,
            **NO_STUDENT_DROPOUT
        },
        checkpoint=ckpt,
        iters=1)
    assert report['teacher']['checkpoint_loaded']
    assert kinds(report) == []

    model.data_preprocessor.size = (64, 64)
    model.train()
    batch = batch_for_model(model.student, 2, 64, 64, seed=0)
    losses = model._run_forward(
        model.data_preprocessor(batch, True), mode='loss')
    params = [p for p in model.student.parameters() if p.requires_grad]

    def norm(loss):
        grads = torch.autograd.grad(
            loss, params, retain_graph=True, allow_unused=True)
        return math.sqrt(
            sum(
                float(g.double().pow(2).sum()) for g in grads
                if g is not None))

    cwd = losses['distill.loss_cwd']
    ce = losses['student.decode.loss_ce']
    norms = dict(cwd=norm(cwd), ce=norm(ce))
    got = report['losses']['loss_cwd']
    assert got['value'] == pytest.approx(cwd.item(), rel=1e-5)
    assert got['grad_norm'] == pytest.approx(norms['cwd'], rel=1e-4)
    assert got['grad_share'] == pytest.approx(
        norms['cwd'] / (norms['cwd'] + norms['ce']), rel=1e-4)
    task = report['task_losses']['decode.loss_ce']
    assert task['value'] == pytest.approx(ce.item(), rel=1e-5)
    assert got['grad_share'] + task['grad_share'] == pytest.approx(1.0)
    # the tensors CWD compares: the two models' logits
    records = model.distiller
    s = records.get_record(recorder='logits', from_student=True)
    t = records.get_record(recorder='logits', from_student=False)
    assert got['student']['shape'] == [2, 7, 8, 8]
    assert got['student']['mean'] == pytest.approx(float(s.mean()), rel=1e-4)
    assert got['teacher']['std'] == pytest.approx(
        float(t.std(unbiased=False)), rel=1e-4)
    assert got['cosine'] == pytest.approx(
        float(
            torch.nn.functional.cosine_similarity(
                s.flatten(), t.flatten(), dim=0)),
        abs=1e-5)
    assert got['type'] == 'ChannelWiseDivergence'
    assert got['loss_weight'] == 5


def test_teacher_watch_counts_dropout_before_a_record_only():
    """Active dropout that runs before a recorded module perturbs the
    record; dropout after it (e.g. in a head the loss-mode forward runs
    after the recorded neck), or in evaluation mode, does not."""
    from types import SimpleNamespace

    from mmakd.apis.distill_doctor.probes import _TeacherWatch
    teacher = torch.nn.Sequential(
        torch.nn.Dropout(0.1), torch.nn.Linear(4, 4), torch.nn.Dropout(0.5),
        torch.nn.BatchNorm1d(4))
    recorders = dict(r=SimpleNamespace(source='1'))
    model = SimpleNamespace(
        teacher=teacher,
        distiller=SimpleNamespace(
            teacher_recorders=SimpleNamespace(recorders=recorders)))
    watch = _TeacherWatch(model)
    teacher.train()
    for _ in range(2):  # the second step must not count step one's '2'
        watch.new_step()
        teacher(torch.randn(3, 4))
    assert watch.perturbing_dropout() == ['0']
    assert watch.changed_bn() == ['3']
    watch.close()
    watch = _TeacherWatch(model)
    teacher.eval()
    teacher(torch.randn(3, 4))
    assert watch.perturbing_dropout() == [] and watch.changed_bn() == []
    watch.close()
    # a recorder that is not a module hook: every active dropout counts
    recorders['r'] = SimpleNamespace(source='1.weight')
    watch = _TeacherWatch(model)
    teacher.train()
    teacher(torch.randn(3, 4))
    assert watch.perturbing_dropout() == ['0', '2']
    watch.close()


def test_default_fake_size_is_the_training_size():
    from types import SimpleNamespace
    demo = load_config(osp.join(REPO, DEMO_CWD))
    # the segmentor pads every batch to its 128x128 crop
    student = SimpleNamespace(
        data_preprocessor=SimpleNamespace(size=(128, 128)))
    assert default_fake_size(demo, student) == (128, 128)
    # MMDetection's Resize scale=(1333, 800) is (w, h)
    assert default_fake_size(load_config(CWD_RETINA)) == (800, 1333)
    cifar = load_config(
        osp.join(
            REPO, 'configs/mgkd/mmpretrain/'
            'kd_resnet56-cifar_resnet20-cifar_1xb64-240e_cifar100.py'))
    assert default_fake_size(cifar) == (32, 32)  # RandomCrop(crop_size=32)


def test_diagnose_thresholds_golden():
    """Share and scale limits, on a report written by hand."""

    def report(share, s_std=1.0, t_std=1.0, values=(0.5, 0.6)):
        side = dict(shape=[2, 4, 8, 8], mean=0.0, finite=True)
        return dict(
            losses=dict(
                loss_kd=dict(
                    values=list(values),
                    grad_norms=[1.0, 1.0],
                    grad_norm=1.0,
                    grad_share=share,
                    loss_weight=2.0,
                    weight_key='loss_weight',
                    student=dict(side, std=s_std),
                    teacher=dict(side, std=t_std))),
            task_losses=dict(
                loss_ce=dict(
                    values=[1.0, 1.1], grad_norm=1.0, grad_share=1 - share)),
            teacher=dict(
                checkpoint_loaded=True,
                bn_changed=[],
                active_dropout=[],
                trainable=False),
            algorithm='FlexibleTeacherDistill')

    assert kinds(dict(warnings=diagnose(report(0.5)))) == []
    assert kinds(dict(warnings=diagnose(report(SHARE_MAX +
                                               0.005)))) == ['dominant_loss']
    assert kinds(dict(warnings=diagnose(report(SHARE_MAX - 0.005)))) == []
    low = diagnose(report(SHARE_MIN - 0.0005))
    assert [w['kind'] for w in low] == ['negligible_loss']
    assert 'model.distiller.distill_losses.loss_kd.loss_weight (now 2)' in \
        low[0]['message']
    assert kinds(dict(warnings=diagnose(report(SHARE_MIN + 0.0005)))) == []
    assert kinds(
        dict(warnings=diagnose(report(0.5, 1.0, 10.5)))) == ['scale_mismatch']
    assert kinds(dict(warnings=diagnose(report(0.5, 1.0, 9.5)))) == []
    assert kinds(dict(warnings=diagnose(report(0.5, values=(0.5, 0.5))))) \
        == ['constant_loss']


# ---------------------------------------------------------------------------
# healthy configs: no warning
# ---------------------------------------------------------------------------
def test_healthy_demo_cwd_and_akd(teacher_ckpt):
    report = run(DEMO_CWD, healthy(teacher_ckpt))
    assert kinds(report) == []
    assert report['algorithm'] == 'FlexibleTeacherDistill'
    assert report['teacher']['forward'] == 'tensor'
    r = report['losses']['loss_cwd']
    assert len(r['values']) == 2 and r['values'][0] != r['values'][1]
    assert SHARE_MIN < r['grad_share'] < SHARE_MAX
    assert report['data'] == 'generated 64x64' and report['batch_size'] == 2

    report = run(DEMO_AKD, healthy(teacher_ckpt))
    assert kinds(report) == []
    assert report['distiller'] == 'AvatarDistiller'
    akd = report['losses']['loss_cwd']['akd']
    # the demo's four strengths, one weight each
    assert len(akd['weights']) == 4
    assert sum(akd['weights']) == pytest.approx(1.0, abs=1e-5)
    assert akd['wmax_over_wmin'] >= 1.0 and akd['uncertainty'] > 0
    assert akd['normalize'] == 'none'


# ---------------------------------------------------------------------------
# each warning kind from a crafted config
# ---------------------------------------------------------------------------
FROZEN_STUDENT_BACKBONE = """
model = dict(
    teacher_eval=True,
    architecture=dict(cfg_options={
        'model.backbone.frozen_stages': 4,
        'model.decode_head.dropout_ratio': 0.0}),
    distiller=dict(
        _delete_=True,
        type='ConfigurableDistiller',
        student_recorders=dict(
            c5=dict(type='ModuleOutputs', source='backbone.layer4')),
        teacher_recorders=dict(
            c5=dict(type='ModuleOutputs', source='backbone.layer4')),
        connectors=dict(
            s_c5=dict(type='ConvModuleConnector', in_channel=64,
                      out_channel=256, norm_cfg=None, act_cfg=None)),
        distill_losses=dict(
            loss_c5=dict(type='ChannelWiseDivergence', tau=1,
                         loss_weight=5)),
        loss_forward_mappings=dict(
            loss_c5=dict(
                preds_S=dict(from_student=True, recorder='c5',
                             connector='s_c5'),
                preds_T=dict(from_student=False, recorder='c5')))))
"""

UNSUMMED_NAME = """
model = dict(
    teacher_eval=True,
    distiller=dict(
        distill_losses=dict(
            _delete_=True,
            cwd=dict(type='ChannelWiseDivergence', tau=1, loss_weight=5)),
        loss_forward_mappings=dict(
            _delete_=True,
            cwd=dict(
                preds_S=dict(from_student=True, recorder='logits'),
                preds_T=dict(from_student=False, recorder='logits')))))
"""

PARAMETER_LOSS = """
model = dict(
    teacher_eval=True,
    distiller=dict(
        student_recorders=dict(
            bias=dict(type='Parameter', source='decode_head.conv_seg.bias')),
        teacher_recorders=dict(
            bias=dict(type='Parameter', source='decode_head.conv_seg.bias')),
        distill_losses=dict(loss_bias=dict(type='L1Loss', loss_weight=1.0)),
        loss_forward_mappings=dict(
            loss_bias=dict(
                s_feature=dict(from_student=True, recorder='bias'),
                t_feature=dict(from_student=False, recorder='bias')))))
"""


def _scaled_teacher(teacher_ckpt, tmp_path):
    """The demo teacher with its classifier scaled 1000x: logits 1000x the
    student's."""
    ckpt = torch.load(teacher_ckpt)
    for key in ('decode_head.conv_seg.weight', 'decode_head.conv_seg.bias'):
        ckpt['state_dict'][key] = ckpt['state_dict'][key] * 1000
    path = str(tmp_path / 'scaled_teacher.pth')
    torch.save(ckpt, path)
    return path


def _partial_teacher(teacher_ckpt, tmp_path):
    ckpt = torch.load(teacher_ckpt)
    ckpt['state_dict'] = {
        k: v
        for k, v in ckpt['state_dict'].items() if k.startswith('backbone.')
    }
    path = str(tmp_path / 'backbone_only.pth')
    torch.save(ckpt, path)
    return path


CRAFTED = {
    # kind: (what is wrong, the loss it names, a key its message names)
    'not_summed': ('a distillation loss named "cwd": MMEngine sums only '
                   '"loss" keys into the total', 'cwd',
                   'model.distiller.distill_losses.cwd'),
    'constant_loss':
    ('an L1 loss between the two heads\' bias parameters (Parameter '
     'recorders), which no batch changes', 'loss_bias',
     'model.distiller.loss_forward_mappings.loss_bias'),
    'no_gradient':
    ('CWD on the output of a frozen student backbone', 'loss_c5',
     'model.distiller.loss_forward_mappings.loss_c5'),
    'dominant_loss': ('loss_weight=1e4', 'loss_cwd',
                      'model.distiller.distill_losses.loss_cwd.loss_weight'),
    'negligible_loss': ('loss_weight=1e-3', 'loss_cwd',
                        'model.distiller.distill_losses.loss_cwd.loss_weight'),
    'nonfinite': ('tau=0', 'loss_cwd', 'model.distiller.distill_losses.'
                  'loss_cwd'),
    'scale_mismatch':
    ('a teacher whose logits are 1000x the student\'s', 'loss_cwd',
     'model.distiller.loss_forward_mappings.loss_cwd'),
    'teacher_no_checkpoint': ('no teacher_ckpt', None, 'model.teacher_ckpt'),
    'teacher_bn_updating':
    ('teacher_norm_eval=False', None, 'model.teacher_norm_eval'),
    'teacher_dropout_active': ('the demo as shipped: the teacher in training '
                               'mode, PSPNet\'s Dropout2d before conv_seg',
                               None, 'model.teacher_eval=True'),
}


def _crafted(kind, teacher_ckpt, tmp_path):
    """(config, options) of the crafted case for ``kind``."""
    if kind == 'not_summed':
        return write_config(tmp_path, 'unsummed.py', UNSUMMED_NAME), {
            'model.teacher_ckpt': teacher_ckpt
        }
    if kind == 'constant_loss':
        return write_config(tmp_path, 'param.py', PARAMETER_LOSS), {
            'model.teacher_ckpt': teacher_ckpt
        }
    if kind == 'no_gradient':
        return write_config(tmp_path, 'frozen.py', FROZEN_STUDENT_BACKBONE), {
            'model.teacher_ckpt': teacher_ckpt
        }
    options = healthy(teacher_ckpt)
    if kind == 'dominant_loss':
        options['model.distiller.distill_losses.loss_cwd.loss_weight'] = 1e4
    elif kind == 'negligible_loss':
        options['model.distiller.distill_losses.loss_cwd.loss_weight'] = 1e-3
    elif kind == 'nonfinite':
        options['model.distiller.distill_losses.loss_cwd.tau'] = 0
    elif kind == 'scale_mismatch':
        options['model.teacher_ckpt'] = _scaled_teacher(teacher_ckpt, tmp_path)
    elif kind == 'teacher_no_checkpoint':
        options['model.teacher_ckpt'] = None
    elif kind == 'teacher_bn_updating':
        options.update({
            'model.teacher_eval': False,
            'model.teacher_norm_eval': False
        })
    elif kind == 'teacher_dropout_active':
        options = {'model.teacher_ckpt': teacher_ckpt}
    return DEMO_CWD, options


def test_every_kind_has_a_crafted_case():
    assert set(CRAFTED) | {'zero_loss'} == set(WARNING_KINDS)


@pytest.mark.parametrize('kind', sorted(CRAFTED))
def test_crafted_config_warns(kind, teacher_ckpt, tmp_path):
    config, options = _crafted(kind, teacher_ckpt, tmp_path)
    report = run(config, options)
    found = [w for w in report['warnings'] if w['kind'] == kind]
    assert len(found) == 1, (CRAFTED[kind][0], report['warnings'])
    _, loss, key = CRAFTED[kind]
    assert found[0]['loss'] == loss
    assert key in found[0]['message']
    if loss:
        assert loss in found[0]['message']


def test_crafted_values(teacher_ckpt, tmp_path):
    """What the crafted cases measure, beside their warning."""
    config, options = _crafted('constant_loss', teacher_ckpt, tmp_path)
    r = run(config, options, iters=3)['losses']['loss_bias']
    assert r['values'][0] > 0 and len(set(r['values'])) == 1
    assert r['grad_norm'] > 0  # it does train the student's bias
    config, options = _crafted('no_gradient', teacher_ckpt, tmp_path)
    r = run(config, options)['losses']['loss_c5']
    assert r['value'] > 0 and r['grad_norm'] == 0 and r['grad_share'] == 0
    config, options = _crafted('not_summed', teacher_ckpt, tmp_path)
    report = run(config, options)
    r = report['losses']['cwd']
    # it would send a gradient, but never does: no share, and the task
    # loss has all of the student's gradient
    assert r['grad_norm'] > 0 and r['grad_share'] is None
    assert report['task_losses']['decode.loss_ce']['grad_share'] == 1.0
    config, options = _crafted('nonfinite', teacher_ckpt, tmp_path)
    r = run(config, options)['losses']['loss_cwd']
    assert all(math.isnan(v) for v in r['values'])
    assert r['student']['finite'] and r['teacher']['finite']


def test_partial_teacher_checkpoint_is_named(teacher_ckpt, tmp_path):
    """MMRazor loads teacher checkpoints non-strictly: a checkpoint that
    lacks the head leaves it random, and the report says so."""
    report = run(
        DEMO_CWD,
        healthy(
            _partial_teacher(teacher_ckpt, tmp_path),
            **{'model.teacher_ckpt_strict': False}))
    assert report['teacher']['checkpoint_loaded']
    assert report['teacher']['checkpoint_missing'] > 0
    assert all(not k.startswith('backbone.')
               for k in report['teacher']['checkpoint_missing_keys'])
    (warning, ) = report['warnings']
    assert warning['kind'] == 'teacher_no_checkpoint'
    assert 'lacks' in warning['message']


def test_bad_input_is_named(tmp_path):
    with pytest.raises(TypeError, match='no distiller'):
        run('configs/akd/demo/pspnet_r18-w8_1xb8-600it_shapes-128.py')
    with pytest.raises(ValueError, match='iters must be >= 1'):
        run(DEMO_CWD, iters=0)
    bogus = str(tmp_path / 'bogus.pth')
    torch.save(dict(state_dict={'backbone.x': torch.zeros(1)}), bogus)
    with pytest.raises(KeyError, match='model.teacher_ckpt='):
        run(DEMO_CWD, {'model.teacher_ckpt': None}, checkpoint=bogus)
    torch.save(dict(state_dict={'teacher.x': torch.zeros(1)}), bogus)
    with pytest.raises(KeyError, match="lacks .* of the student's tensors"):
        run(DEMO_CWD, {'model.teacher_ckpt': None}, checkpoint=bogus)
    # a teacher checkpoint that does not exist: MMRazor's build error,
    # with what to do
    with pytest.raises(RuntimeError, match='building cfg.model') as err:
        run(DEMO_CWD, {'model.teacher_ckpt': 'no/such/teacher.pth'})
    assert "model.teacher_ckpt='no/such/teacher.pth' does not exist" in str(
        err.value)
    assert '--cfg-options model.teacher_ckpt=' in str(err.value)


# ---------------------------------------------------------------------------
# MMRazor's shipped CWD RetinaNet config
# ---------------------------------------------------------------------------
@pytest.fixture(scope='module')
def retina_teacher(tmp_path_factory):
    """A RetinaNet R101 checkpoint (random weights, mmdet's own
    initialisation), in half precision to halve the file."""
    from mmakd.models.utils import build_model_from_spec
    torch.manual_seed(0)
    teacher = build_model_from_spec(
        dict(
            cfg_path='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py',
            cfg_options={'model.backbone.init_cfg': None}), 'teacher')
    teacher.init_weights()
    path = str(tmp_path_factory.mktemp('retina') / 'r101.pth')
    torch.save(
        dict(
            state_dict={
                k: v.half() if v.is_floating_point() else v
                for k, v in teacher.state_dict().items()
            }), path)
    return path


@pytest.mark.slow
def test_mmrazor_cwd_retinanet(retina_teacher, empty_torch_home):
    """Healthy at 256x256; at 128x128 P7 is 1x1 and its CWD loss is zero
    (a softmax over one position), which only that level reports. Offline
    with an empty download cache: the student's ImageNet backbone is left
    out (and listed), the local teacher checkpoint loads."""
    options = {
        'model.teacher.pretrained': False,
        'model.teacher_ckpt': retina_teacher
    }
    report = run(CWD_RETINA, options, size=(256, 256), offline=True)
    assert kinds(report) == []
    assert [(r['key'], r['module']) for r in report['random_weights']] == [
        ('model.architecture.backbone.init_cfg', 'architecture.backbone')
    ]
    assert report['teacher']['checkpoint_loaded']
    assert report['algorithm'] == 'FpnTeacherDistill'
    assert report['teacher']['forward'] == 'feat'
    assert sorted(report['losses']) == [f'loss_cwd_fpn{i}' for i in range(5)]
    assert sorted(report['task_losses']) == ['loss_bbox', 'loss_cls']
    shares = [r['grad_share'] for r in report['losses'].values()]
    shares += [r['grad_share'] for r in report['task_losses'].values()]
    assert sum(shares) == pytest.approx(1.0)
    assert report['losses']['loss_cwd_fpn4']['student']['shape'] == [
        2, 256, 2, 2
    ]

    report = run(CWD_RETINA, options, size=(128, 128), offline=True)
    (warning, ) = report['warnings']
    assert warning['kind'] == 'zero_loss'
    assert warning['loss'] == 'loss_cwd_fpn4'
    assert '1x1' in warning['message']
    assert 'model.distiller.loss_forward_mappings.loss_cwd_fpn4' in \
        warning['message']
    assert report['losses']['loss_cwd_fpn4']['values'] == [0.0, 0.0]


# ---------------------------------------------------------------------------
# every distillation config mmakd and MMRazor ship
# ---------------------------------------------------------------------------
def _zoo():
    """mmakd's configs (every file but ``_base_`` fragments) and MMRazor's
    detection and segmentation distillation configs (those the installed
    stack can load; see :data:`helpers.MMRAZOR_TASK_FOLDERS`)."""
    import glob
    ours = sorted(
        osp.relpath(p, REPO) for p in glob.glob(
            osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
        if '_base_' not in p.split(osp.sep))
    return ours + [f'mmrazor::{p}' for p in MMRAZOR_DISTILL_CONFIGS]


#: Configs whose generated batch must be larger than 64x64 (deformable
#: convolutions and FBKD's pooling on P7); 3-6 s each here.
ZOO_SIZES = {'reppoints': (128, 128), 'fbkd': (128, 128)}


# In `make test`: the demo and synthetic configs (under 1 s each) and one
# AKD detector and segmentor at COCO / Cityscapes size; the other large
# models (3-17 s each) run with the slow tests.
@pytest.mark.parametrize(
    'path',
    slow_unless(_zoo(), [
        '/demo/', 'mmpretrain/synthetic/',
        'akd_cwd_fpn_retinanet-r101_retinanet-r50',
        'akd_cwd_logits_pspnet-r101-d8'
    ]))
def test_runs_on_every_shipped_config(path, no_network):
    """Random weights, no download, generated batches: every distillation
    config gives a report with every loss in it; any other config (a
    plain student or teacher, or a stage-1 trainer) is refused with an
    error naming what is missing."""
    from mmakd.testing import random_weights_overrides
    options = {}
    relative = path.split('::', 1)[-1]
    if relative in MMRAZOR_UPSTREAM_FIXES:
        options.update(MMRAZOR_UPSTREAM_FIXES[relative][1])
    cfg = load_config(path if '::' in path else osp.join(REPO, path), options
                      or None)
    cfg.merge_from_dict(random_weights_overrides(cfg))
    size = next((s for k, s in ZOO_SIZES.items() if k in path), (64, 64))
    if 'Distill' not in str(cfg.model.get('type')):
        with pytest.raises(TypeError, match='no distiller|no teacher'):
            analyze_distill(
                cfg, fake_data=True, size=size, iters=1, init_weights=False)
        return
    report = analyze_distill(
        cfg, fake_data=True, size=size, iters=1, init_weights=False)
    assert sorted(report['losses']) == sorted(
        cfg.model.distiller.loss_forward_mappings)
    for name, r in report['losses'].items():
        assert r['student'] is not None and r['teacher'] is not None, name
    assert {w['kind'] for w in report['warnings']} <= set(WARNING_KINDS)
    assert 'teacher_no_checkpoint' in kinds(report)  # random weights


def test_real_batches_are_reproducible(teacher_ckpt, shapes_root):
    """Batches of the config's training dataloader (random flips and
    shuffling included) and the AKD draws repeat for a seed."""
    options = healthy(teacher_ckpt,
                      **{'train_dataloader.dataset.data_root': shapes_root})
    first = run(DEMO_AKD, options, fake_data=False, batch_size=2)
    again = run(DEMO_AKD, options, fake_data=False, batch_size=2)
    other = run(DEMO_AKD, options, fake_data=False, batch_size=2, seed=1)
    assert first['data'] == 'train_dataloader' and first['batch_size'] == 2
    assert first['losses']['loss_cwd']['student']['shape'] == [2, 7, 16, 16]
    values = first['losses']['loss_cwd']['values']
    assert again['losses']['loss_cwd']['values'] == values
    assert other['losses']['loss_cwd']['values'] != values


def test_teacher_ensemble_checkpoints_count_as_loaded(tmp_path):
    """MultiTeacherDistill's teacher_ckpts: the teacher is loaded when
    every teacher has a checkpoint, and the report warns otherwise."""
    from mmakd.models.utils import build_model_from_spec
    config = ('configs/akd/demo/cwd_fpn_4xretinanet-r18-w32_retinanet-r18-'
              'w8_1xb8-400it_shapes-128.py')
    teacher = build_model_from_spec(
        dict(
            cfg_path=osp.join(
                REPO, 'configs/akd/demo/retinanet_r18-w32_fpn-64_1xb8-2000it_'
                'shapes-128.py')), 'model.teachers[0]')
    path = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), path)
    report = run(config, {'model.teacher_ckpts': [path] * 4}, iters=1)
    assert report['algorithm'] == 'MultiTeacherDistill'
    assert report['teacher']['checkpoint_loaded']
    assert 'teacher_no_checkpoint' not in kinds(report)
    report = run(config, {'model.teacher_ckpts': [path] * 3 + [None]}, iters=1)
    assert 'teacher_no_checkpoint' in kinds(report)


def test_ensemble_warnings_name_teacher_ckpts_and_every_teacher(
        teacher_ckpt, tmp_path):
    """MultiTeacherDistill refuses model.teacher_ckpt: the doctor names
    model.teacher_ckpts[i]; and it watches every teacher, not only the
    first: dropout active in the second teacher alone is reported, as are
    its BatchNorms, with the key MultiTeacherDistill takes
    (model.teacher_eval)."""
    config = write_config(
        tmp_path, 'two_teachers.py', f"""
model = dict(
    type='MultiTeacherDistill',
    teacher=None,
    teacher_ckpt=None,
    teacher_norm_eval=False,
    teachers=[
        dict(cfg_path='{osp.join(REPO, DEMO_TEACHER)}',
             cfg_options={{'model.decode_head.dropout_ratio': 0.0}}),
        dict(cfg_path='{osp.join(REPO, DEMO_TEACHER)}')],
    teacher_ckpts=['{teacher_ckpt}', None])
""")
    report = run(config, NO_STUDENT_DROPOUT)
    assert report['algorithm'] == 'MultiTeacherDistill'
    by_kind = {w['kind']: w['message'] for w in report['warnings']}
    message = by_kind['teacher_no_checkpoint']
    assert 'model.teacher_ckpts[1]' in message
    assert 'model.teacher_ckpt ' not in message
    assert 'set model.teacher_ckpt.' not in message
    assert report['teacher']['checkpoint_unset'] == ['model.teacher_ckpts[1]']
    # the first teacher has no dropout: only the second's is reported
    assert report['teacher']['active_dropout'] == [
        'teachers[1].decode_head.dropout'
    ]
    assert 'teachers[1].decode_head.dropout' in by_kind[
        'teacher_dropout_active']
    changed = report['teacher']['bn_changed']
    assert any(n.startswith('teachers[0].') for n in changed)
    assert any(n.startswith('teachers[1].') for n in changed)
    for kind in ('teacher_dropout_active', 'teacher_bn_updating'):
        assert 'model.teacher_eval=True' in by_kind[kind]
        assert "model.type='FlexibleTeacherDistill'" not in by_kind[kind]
    # a bad --checkpoint names the key this algorithm takes
    bogus = str(tmp_path / 'bogus.pth')
    torch.save(dict(state_dict={'backbone.x': torch.zeros(1)}), bogus)
    with pytest.raises(KeyError, match=r'model\.teacher_ckpts\[i\]='):
        run(config, NO_STUDENT_DROPOUT, checkpoint=bogus)


# ---------------------------------------------------------------------------
# --offline: MMRazor's configs with an empty download cache, no network
# ---------------------------------------------------------------------------
def test_offline_model_config_leaves_out_downloads_only(tmp_path):
    """Every downloaded or missing weight goes, in nested init_cfg lists
    too; the other initialisers and local files stay; a teacher loaded
    from a local file is left as it is (it is never initialised)."""
    from mmengine.config import Config
    local = str(tmp_path / 'here.pth')
    torch.save({}, local)
    kaiming = dict(type='Kaiming', layer='Conv2d')
    prior = dict(
        type='Normal',
        layer='Conv2d',
        std=0.01,
        override=dict(type='Normal', name='cls', std=0.01, bias_prob=0.01))
    cfg = Config(
        dict(
            model=dict(
                type='FpnTeacherDistill',
                teacher_ckpt='https://example.org/teacher.pth',
                teacher=dict(
                    type='RetinaNet',
                    backbone=dict(
                        type='ResNet',
                        init_cfg=[
                            dict(
                                type='Pretrained',
                                checkpoint='torchvision://resnet101'), kaiming
                        ]),
                    bbox_head=dict(type='RetinaHead', init_cfg=prior)),
                architecture=dict(
                    type='EncoderDecoder',
                    pretrained='open-mmlab://resnet18_v1c',
                    backbone=dict(
                        type='ResNetV1c',
                        init_cfg=dict(type='Pretrained', checkpoint=local)),
                    decode_head=dict(
                        init_cfg=dict(
                            type='Pretrained',
                            checkpoint=str(tmp_path / 'gone.pth')))),
                distiller=dict(
                    connectors=dict(
                        c=dict(type='X', checkpoint='s3://bucket/c.pth'))))))
    out, replaced = offline_model_config(cfg)
    m = out.model
    assert m.teacher_ckpt is None
    assert m.teacher.backbone.init_cfg == [kaiming]
    assert m.teacher.bbox_head.init_cfg == prior
    assert m.architecture.pretrained is None
    assert m.architecture.backbone.init_cfg.checkpoint == local
    # no init_cfg left: the module's default one applies
    assert 'init_cfg' not in m.architecture.decode_head
    assert m.distiller.connectors.c.checkpoint is None
    assert cfg.model.teacher_ckpt == 'https://example.org/teacher.pth'
    assert {
        r['key']: r['module']
        for r in replaced
    } == {
        'model.teacher_ckpt': 'teacher',
        'model.teacher.backbone.init_cfg[0]': 'teacher.backbone',
        'model.architecture.pretrained': 'architecture.backbone',
        'model.architecture.decode_head.init_cfg': 'architecture.decode_head',
        'model.distiller.connectors.c.checkpoint': 'distiller.connectors.c',
    }
    was = {r['key']: r['was'] for r in replaced}
    assert was['model.teacher.backbone.init_cfg[0]'] == \
        'Pretrained torchvision://resnet101'
    assert 'not found here' in was['model.architecture.decode_head.init_cfg']
    # a teacher checkpoint that is here: the teacher config stays as it is
    cfg.model.teacher_ckpt = local
    out, replaced = offline_model_config(cfg)
    assert out.model.teacher.backbone.init_cfg[0]['type'] == 'Pretrained'
    assert not any(r['key'].startswith('model.teacher') for r in replaced)
    # MultiTeacherDistill: model.teacher_ckpts[i], teachers[i] -> modules
    multi = Config(
        dict(
            model=dict(
                type='MultiTeacherDistill',
                teachers=[
                    dict(type='RetinaNet', backbone=dict(init_cfg=None)),
                    dict(
                        type='RetinaNet',
                        backbone=dict(
                            init_cfg=dict(
                                type='Pretrained',
                                checkpoint='torchvision://resnet18')))
                ],
                teacher_ckpts=[local, 'https://example.org/t1.pth'])))
    out, replaced = offline_model_config(multi)
    assert out.model.teacher_ckpts == [local, None]
    assert {
        r['key']: r['module']
        for r in replaced
    } == {
        'model.teacher_ckpts[1]': 'other_teachers.0',
        'model.teachers[1].backbone.init_cfg': 'other_teachers.0.backbone',
    }


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch, no_network):
    """An empty download cache, and no network: any download fails."""
    home = tmp_path / 'torch_home'
    home.mkdir()
    monkeypatch.setenv('TORCH_HOME', str(home))
    return home


def _mmrazor_config(relative):
    options = dict(MMRAZOR_UPSTREAM_FIXES[relative][1]) \
        if relative in MMRAZOR_UPSTREAM_FIXES else None
    return load_config(f'mmrazor::{relative}', options)


#: Losses under 1 % of the student's gradient between two randomly
#: initialised models however they are initialised, with the task losses
#: at their initial values (FBKD's at their default weight: 0.1-0.4 %; MGD's
#: at alpha_mgd=2e-5, set for trained features: under 1 %; measured at
#: 128 px): what the report says of random weights, not a false warning.
NEGLIGIBLE_ON_RANDOM_WEIGHTS = {
    'fbkd': {'loss_s1', 'loss_s2', 'loss_s3'},
    'mgd': {f'loss_mgd_fpn{i}'
            for i in range(5)},
}


def test_offline_covers_all_of_mmrazors_configs():
    assert len(MMRAZOR_DISTILL_CONFIGS) == 12


# In `make test`: the segmentation config; the detectors (3-6 s each, 49 s
# together on 2 quiet cores) run with the slow tests.
@pytest.mark.parametrize(
    'relative', slow_unless(MMRAZOR_DISTILL_CONFIGS, ['distill/mmseg/cwd/']))
def test_offline_on_mmrazor_configs(relative, empty_torch_home):
    """--offline on MMRazor's configs as shipped, with an empty download
    cache and no network: nothing is downloaded, every other initialiser
    runs (the task losses are those of an initialised model, not RetinaNet's
    1061 without its bias prior), no loss is falsely negligible, a 1x1
    level (GFL's P7 at 128 px) is still flagged zero_loss, and the report
    lists the weights left random."""
    cfg = _mmrazor_config(relative)
    report = analyze_distill(
        cfg,
        fake_data=True,
        size=(128, 128),
        batch_size=2 if 'mmseg' in relative else 1,  # PSPNet's 1x1 pool
        iters=1,
        offline=True)
    assert list(empty_torch_home.rglob('*')) == []  # nothing downloaded
    assert report['offline'] and report['random_weights']
    assert sorted(report['losses']) == sorted(
        cfg.model.distiller.loss_forward_mappings)
    for name, r in report['task_losses'].items():
        assert math.isfinite(r['value']) and r['value'] < 20, (name, r)
    found = kinds(report)
    negligible = {
        w['loss']
        for w in report['warnings'] if w['kind'] == 'negligible_loss'
    }
    allowed = next(
        (v for k, v in NEGLIGIBLE_ON_RANDOM_WEIGHTS.items() if k in relative),
        set())
    assert negligible <= allowed, report['warnings']
    assert 'nonfinite' not in found
    for w in report['warnings']:
        if w['kind'] == 'zero_loss':  # only 1x1 maps compare to zero
            assert '1x1' in w['message'], w
    assert 'teacher_no_checkpoint' in found
    (message, ) = [
        w['message'] for w in report['warnings']
        if w['kind'] == 'teacher_no_checkpoint'
    ]
    assert '--offline left out model.teacher' in message
    keys = {r['key'] for r in report['random_weights']}
    for r in report['random_weights']:
        assert r['module'] and r['module'].split('.')[0] in ('architecture',
                                                             'teacher',
                                                             'distiller'), r
    if 'gfl' in relative:
        zero = [
            w['loss'] for w in report['warnings'] if w['kind'] == 'zero_loss'
        ]
        p7 = [
            n for n, r in report['losses'].items()
            if r['student']['shape'][-2:] == [1, 1]
        ]
        assert p7 and zero == p7
    if 'retina_r101_retina_r50_1x_coco.py' in relative:
        assert kinds(report) == ['zero_loss', 'teacher_no_checkpoint']
        assert keys == {
            'model.teacher_ckpt', 'model.teacher.pretrained',
            'model.teacher.backbone.init_cfg',
            'model.architecture.backbone.init_cfg'
        }
        assert 0.5 < report['task_losses']['loss_cls']['value'] < 2
    if 'mmseg' in relative:
        assert keys == {
            'model.teacher_ckpt', 'model.teacher.pretrained',
            'model.architecture.pretrained'
        }
        assert report['teacher']['checkpoint_loaded'] is False


def test_download_failure_names_offline_and_the_keys(empty_torch_home):
    """Without --offline, a download that fails names --offline and the
    keys that download, as a user must change them."""
    cfg = load_config(CWD_RETINA)
    with pytest.raises(RuntimeError, match='building cfg.model') as err:
        analyze_distill(cfg, fake_data=True, size=(64, 64), iters=1)
    message = str(err.value)
    assert '--offline' in message
    for key in ('model.teacher_ckpt', 'model.teacher.pretrained',
                'model.teacher.backbone.init_cfg (in mmdet::retinanet/'
                'retinanet_r101_fpn_2x_coco.py)',
                'model.architecture.backbone.init_cfg'):
        assert key in message, key
    # the checkpoints dropped as the build hint said: init_weights downloads
    cfg = load_config(CWD_RETINA, {
        'model.teacher_ckpt': None,
        'model.teacher.pretrained': False
    })
    with pytest.raises(RuntimeError, match='init_weights') as err:
        analyze_distill(cfg, fake_data=True, size=(64, 64), iters=1)
    assert '--offline' in str(err.value)
    assert 'model.architecture.backbone.init_cfg' in str(err.value)
    assert 'model.teacher_ckpt' not in str(err.value)
