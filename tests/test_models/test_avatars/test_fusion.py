# Copyright (c) mmakd contributors. All rights reserved.
"""Fused Avatar targets (``model.distiller.avatars.fuse``): the same loss,
student gradients and weights as the per-Avatar loop, which losses fuse and
which refuse, the build log, the Avatars themselves and the lifetime of
their stack."""
import weakref
from typing import Dict, List, Tuple

import pytest
import torch
import torch.nn.functional as F
from mmrazor.models.architectures.connectors.base_connector import \
    BaseConnector
from torch import nn

from mmakd.models import AvatarDistiller
from mmakd.models.avatars import (AvatarChannelDropout, AvatarDropout,
                                  AvatarGaussianNoise, avatar_channel_dropout,
                                  avatar_dropout, avatar_gaussian_noise)
from mmakd.models.avatars.fusion import fusion_for
from mmakd.registry import MODELS
from helpers import fbkd_distiller_parts, logged_messages

pytestmark = pytest.mark.usefixtures('fresh_message_hub')

KEY = 'model.distiller.avatars'
#: Relative error allowed between the fused path and the loop in float32.
RTOL32 = 1e-5
#: ... and in float64.
RTOL64 = 1e-10
#: Cases whose loss computes in float32 whatever its inputs (documented for
#: MGKDGranularityLoss), held to the float32 tolerance in float64 too.
FLOAT32_LOSSES = ('mgkd_codes', 'mgkd_maps')


@pytest.fixture
def logged():
    """The messages logged at INFO level or above while the test runs."""
    with logged_messages() as messages:
        yield messages


# ---------------------------------------------------------------------------
# tiny models and a connector for tuples
# ---------------------------------------------------------------------------
class Maps(nn.Module):
    """``feat``: a 3x3 conv, the recorded ``(N, 8, H / stride, W /
    stride)`` map."""

    def __init__(self, stride=1, c=8):
        super().__init__()
        self.feat = nn.Conv2d(3, c, 3, stride=stride, padding=1)

    def forward(self, x):
        return self.feat(x)


class Logits(nn.Module):
    """``feat``: a linear layer giving ``(N, 10)`` logits of ``(N, 3, 8,
    8)`` inputs (``stride`` is ignored)."""

    def __init__(self, stride=1):
        super().__init__()
        self.feat = nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        return self.feat(x.flatten(1))


class _Levels(nn.Module):

    def __init__(self, c):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, c, 1) for _ in range(2))

    def forward(self, x):
        return (self.convs[0](x), self.convs[1](F.avg_pool2d(x, 2)))


class Levels(nn.Module):
    """``feat`` returns a tuple of two maps, the second at half the size
    of the first (an FPN's levels)."""

    def __init__(self, stride=1, c=8):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, stride=stride, padding=1)
        self.feat = _Levels(c)

    def forward(self, x):
        return self.feat(self.stem(x))


@MODELS.register_module(name='TestLevelConvs', force=True)
class LevelConvs(BaseConnector):
    """A trainable 1x1 conv per level of a tuple record."""

    def __init__(self, channels=8, levels=2, init_cfg=None):
        super().__init__(init_cfg)
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, 1) for _ in range(levels))

    def forward_train(self, feats):
        return tuple(conv(f) for conv, f in zip(self.convs, feats))


#: ``kind``: (model class, student stride, teacher stride, input shape).
NETS = {
    'maps': (Maps, 1, 1, (2, 3, 8, 8)),
    # student (2, 8, 4, 4), teacher (2, 8, 8, 8)
    'strided': (Maps, 2, 1, (2, 3, 8, 8)),
    'logits': (Logits, 1, 1, (4, 3, 8, 8)),
    # student ((2, 8, 4, 4), (2, 8, 2, 2)), teacher twice as large
    'levels': (Levels, 2, 1, (2, 3, 8, 8)),
}


def conv_connector(channels=8):
    """MMRazor's ConvModuleConnector: a trainable 1x1 conv (no norm or
    activation)."""
    return dict(
        type='ConvModuleConnector',
        in_channel=channels,
        out_channel=channels,
        kernel_size=1,
        norm_cfg=None,
        act_cfg=None)


FEATURE = ('s_feature', 't_feature')
#: MasKD with 3 tokens on 8 channels, its masks frozen (as it fuses).
MASKD = dict(type='MasKDLoss', channels=8, num_tokens=3, freeze_masks=True)
#: One per fusable loss class and variant: the loss, its argument names,
#: the models and the connectors of the student and the teacher input.
CASES = {
    'cwd':
    dict(
        loss=dict(type='ChannelWiseDivergence', tau=2.0, loss_weight=3.0),
        s_connector=conv_connector()),
    'kl_logits':
    dict(loss=dict(type='KLDivergence', tau=2.0), nets='logits'),
    'kl_logits_mean':
    dict(
        loss=dict(type='KLDivergence', reduction='mean', loss_weight=2.0),
        nets='logits'),
    'kl_maps_sum':
    dict(loss=dict(type='KLDivergence', reduction='sum')),
    'l2':
    dict(loss=dict(type='L2Loss', mult=2.0), keys=FEATURE),
    'l2_raw':
    dict(
        loss=dict(
            type='L2Loss', normalize=False, div_element=True, loss_weight=0.5),
        keys=FEATURE),
    # a teacher connector without parameters keeps the loss fused
    'l2_pooled_teacher':
    dict(
        loss=dict(type='L2Loss', normalize=False),
        keys=FEATURE,
        nets='strided',
        t_connector=dict(
            type='TorchFunctionalConnector',
            function_name='avg_pool2d',
            func_args=dict(kernel_size=2))),
    'pkd':
    dict(
        loss=dict(type='PKDLoss', loss_weight=6.0),
        s_connector=conv_connector()),
    # levels of different sizes, student and teacher mismatched
    'pkd_levels':
    dict(
        loss=dict(type='PKDLoss', loss_weight=6.0),
        nets='levels',
        s_connector=dict(type='TestLevelConvs')),
    'pkd_levels_resize_teacher':
    dict(loss=dict(type='PKDLoss', resize_stu=False), nets='levels'),
    'at':
    dict(loss=dict(type='ATLoss', loss_weight=2.0), keys=FEATURE),
    'mgd':
    dict(
        loss=dict(type='MGDLoss', alpha_mgd=0.02),
        s_connector=dict(
            type='MGDConnector',
            student_channels=8,
            teacher_channels=8,
            lambda_mgd=0.65)),
    'mgkd_codes':
    dict(loss=dict(type='MGKDGranularityLoss', tau=2.0), nets='logits'),
    'mgkd_maps':
    dict(loss=dict(type='MGKDGranularityLoss', tau=8.0, loss_weight=0.5)),
    'maskd':
    dict(loss=dict(MASKD, custom_mask_warmup=0)),
    'maskd_plain':
    dict(loss=dict(MASKD, weight_mask=False, custom_mask=False)),
}


def make_nets(kind: str, dtype=torch.float32, device='cpu'):
    """Student, teacher and input of a ``NETS`` kind (seeded), on
    ``device``."""
    net, s_stride, t_stride, shape = NETS[kind]
    torch.manual_seed(0)
    student, teacher = net(s_stride), net(t_stride)
    x = torch.randn(shape)
    return tuple(t.to(device, dtype) for t in (student, teacher, x))


def distiller_cfg(loss: Dict,
                  keys: Tuple[str, str] = ('preds_S', 'preds_T'),
                  s_connector: Dict = None,
                  t_connector: Dict = None,
                  name: str = 'loss_a') -> Dict:
    """``AvatarDistiller`` arguments (without ``avatars``) of one loss on
    the recorder ``feat``."""
    s_key, t_key = keys
    connectors = {}
    s_record = dict(from_student=True, recorder='feat')
    t_record = dict(from_student=False, recorder='feat')
    if s_connector:
        connectors['s_conn'] = s_connector
        s_record['connector'] = 's_conn'
    if t_connector:
        connectors['t_conn'] = t_connector
        t_record['connector'] = 't_conn'
    return dict(
        student_recorders=dict(feat=dict(type='ModuleOutputs', source='feat')),
        teacher_recorders=dict(feat=dict(type='ModuleOutputs', source='feat')),
        distill_losses={name: loss},
        loss_forward_mappings={name: {
            s_key: s_record,
            t_key: t_record
        }},
        connectors=connectors or None)


def build(cfg: Dict,
          avatars: Dict,
          student,
          teacher,
          state=None,
          dtype=torch.float32,
          device='cpu'):
    """An ``AvatarDistiller`` on ``student`` and ``teacher``, its connectors
    and losses in ``dtype`` on ``device``; with ``state``, they load it (so
    that two distillers start alike)."""
    torch.manual_seed(0)
    distiller = AvatarDistiller(avatars=avatars, **cfg).to(device, dtype)
    if state is not None:
        distiller.load_state_dict(state)
    distiller.prepare_from_student(student)
    distiller.prepare_from_teacher(teacher)
    return distiller


def step(distiller, student, teacher, x, name: str = 'loss_a'):
    """One AKD step from a known state: the Avatars' generator restarts at
    call 0 and the global seed (MGDConnector's masks, and the Avatars'
    seed without a runner) is reset. Returns the distiller's output and
    the gradients of the student's and the connectors' parameters."""
    distiller.avatar_seeds.state = (None, 0)
    torch.manual_seed(1)
    with distiller.teacher_recorders, torch.no_grad():
        teacher(x)
    with distiller.student_recorders:
        student(x)
    out = distiller.compute_distill_losses()
    out[name].backward()
    grads = {
        'student': [p.grad for p in student.parameters()],
        'connectors': [p.grad for p in distiller.connectors.parameters()]
    }
    assert all(p.grad is None for p in teacher.parameters())
    return out, grads


def loop_and_fused(case: Dict,
                   avatars: Dict,
                   dtype=torch.float32,
                   fused='auto',
                   device='cpu'):
    """The same step with ``fuse=False`` and ``fuse=fused`` on copies of
    the same models (on ``device``): ``(loop distiller, its step), (fused,
    its step)``."""
    cfg = distiller_cfg(case['loss'], case.get('keys', ('preds_S', 'preds_T')),
                        case.get('s_connector'), case.get('t_connector'))
    runs = []
    state = None
    for fuse in (False, fused):
        student, teacher, x = make_nets(
            case.get('nets', 'maps'), dtype, device)
        distiller = build(cfg, dict(avatars, fuse=fuse), student, teacher,
                          state, dtype, device)
        state = distiller.state_dict()
        runs.append((distiller, step(distiller, student, teacher, x)))
    return runs


def flat(grads: List[torch.Tensor]) -> torch.Tensor:
    assert all(g is not None for g in grads)
    return torch.cat([g.flatten() for g in grads])


def assert_same_step(loop_step, fused_step, rtol: float) -> None:
    """Same loss (relative error <= rtol), same gradients (the relative
    error of the student's and of the connectors' gradients, each as one
    vector, <= rtol) and bit-identical ``akd.*`` logs."""
    (out_l, grads_l), (out_f, grads_f) = loop_step, fused_step
    assert set(out_l) == set(out_f)
    for key in out_l:
        if key.startswith('akd.'):
            assert torch.equal(out_l[key], out_f[key]), key
    loss_l, loss_f = out_l['loss_a'].item(), out_f['loss_a'].item()
    assert loss_l > 0
    assert abs(loss_f - loss_l) <= rtol * abs(loss_l), (loss_l, loss_f)
    for group in ('student', 'connectors'):
        if not grads_l[group]:
            continue
        g_l, g_f = flat(grads_l[group]), flat(grads_f[group])
        assert g_l.norm() > 0, group
        error = ((g_f - g_l).norm() / g_l.norm()).item()
        assert error <= rtol, (group, error)


# ---------------------------------------------------------------------------
# 1. every fusable loss: fused == loop
# ---------------------------------------------------------------------------
def rtol_of(case: str, dtype: torch.dtype) -> float:
    if dtype == torch.float64 and case not in FLOAT32_LOSSES:
        return RTOL64
    return RTOL32


def check_fused_equals_the_loop(case: str,
                                avatars: Dict,
                                dtype: torch.dtype,
                                device='cpu') -> Dict:
    """Build both, assert the choice and the numbers; the loop's output."""
    runs = loop_and_fused(CASES[case], avatars, dtype, device=device)
    (loop, loop_step), (fused, fused_step) = runs
    assert loop.fusions['loss_a'] is None
    assert fused.fusions['loss_a'] is not None
    assert type(fused.fusions['loss_a'].loss).__name__ == \
        CASES[case]['loss']['type']
    assert loop_step[0]['loss_a'].dtype == dtype or \
        case in FLOAT32_LOSSES
    assert_same_step(loop_step, fused_step, rtol_of(case, dtype))
    return loop_step[0]


@pytest.mark.parametrize('at', ['loss', 'record'])
@pytest.mark.parametrize('normalize', ['none', 'student', 'teacher', 'both'])
@pytest.mark.parametrize('case', sorted(CASES))
def test_fused_equals_the_loop_in_float64(case, normalize, at):
    """Three i.i.d. dropout Avatars, models and inputs in float64: the
    fused path is chosen, and gives the loop's loss, student and connector
    gradients (relative error <= 1e-10) and weights (bit for bit)."""
    check_fused_equals_the_loop(
        case, dict(num_avatars=3, normalize=normalize, normalize_at=at),
        torch.float64)


@pytest.mark.parametrize('at', ['loss', 'record'])
@pytest.mark.parametrize('case', sorted(CASES))
def test_fused_equals_the_loop_in_float32(case, at):
    """The same in float32 (standardised both sides, the default), to
    1e-5."""
    check_fused_equals_the_loop(case, dict(num_avatars=3, normalize_at=at),
                                torch.float32)


PERTURBATIONS = {
    'dropout_per_avatar':
    dict(type='AvatarDropout', p=(0.05, 0.1, 0.2, 0.4)),
    'dropout_and_noise': [
        dict(type='AvatarDropout', p=0.1, num_avatars=2),
        dict(type='AvatarGaussianNoise', std=0.2, num_avatars=2)
    ],
    'channel_dropout_and_noise': [
        dict(type='AvatarChannelDropout', p=0.3, num_avatars=2),
        dict(type='AvatarGaussianNoise', std=(0.1, 0.4))
    ],
}


@pytest.mark.parametrize('dtype,perturbation', [
    (torch.float64, 'dropout_per_avatar'),
    (torch.float64, 'dropout_and_noise'),
    (torch.float64, 'channel_dropout_and_noise'),
    (torch.float32, 'dropout_and_noise'),
])
@pytest.mark.parametrize('case', sorted(CASES))
def test_fused_equals_the_loop_with_heterogeneous_avatars(
        case, dtype, perturbation):
    """Four Avatars of different strengths or types, with unequal weights
    (default ``tau``): still the loop's numbers."""
    out = check_fused_equals_the_loop(
        case, dict(perturbation=PERTURBATIONS[perturbation]), dtype)
    weights = torch.stack([out[f'akd.a.w{k}'] for k in range(4)])
    assert weights.max() / weights.min() > 1.01  # really weighted


@pytest.mark.parametrize('case', ['cwd', 'pkd_levels', 'mgd', 'maskd'])
def test_fused_equals_the_loop_on_the_device(case, device):
    """On ``--device``, float32, Avatars drawn there from its generator
    (dropout and noise, unequal weights): the fused path gives the loop's
    loss and gradients (to 1e-5) and bit-identical weights."""
    out = check_fused_equals_the_loop(
        case, dict(perturbation=PERTURBATIONS['dropout_and_noise']),
        torch.float32, device)
    assert out['loss_a'].device == device
    weights = torch.stack([out[f'akd.a.w{k}'] for k in range(4)])
    assert weights.max() / weights.min() > 1.01  # really weighted


def test_equal_weights_fused_equals_the_loop():
    avatars = dict(num_avatars=3, uncertainty=None)
    (_, loop_step), (_, fused_step) = loop_and_fused(CASES['cwd'], avatars)
    assert fused_step[0]['akd.a.w0'].item() == pytest.approx(1 / 3)
    assert_same_step(loop_step, fused_step, RTOL32)


@pytest.mark.parametrize('case', ['cwd', 'pkd_levels', 'mgd'])
def test_one_avatar_loops_under_auto_and_fuses_when_forced(case):
    """With K = 1 the loss runs once either way: 'auto' keeps the plain
    call (the fused form would only add work); fuse=True still fuses,
    with the loop's numbers."""
    avatars = dict(num_avatars=1)
    (_, loop_step), (auto, auto_step) = loop_and_fused(CASES[case], avatars)
    assert auto.fusions['loss_a'] is None
    assert_same_step(loop_step, auto_step, 0.0)
    (_, loop_step), (forced, forced_step) = loop_and_fused(
        CASES[case], avatars, fused=True)
    assert forced.fusions['loss_a'] is not None
    assert_same_step(loop_step, forced_step, RTOL32)


def test_fused_path_calls_the_student_side_once():
    """Under ``fuse='auto'`` the loss module itself is not called and the
    fusion's ``student_loss`` once per step; the loop calls the loss once
    per Avatar."""
    calls = {False: [], 'auto': []}
    for fuse in calls:
        student, teacher, x = make_nets('maps')
        distiller = build(
            distiller_cfg(CASES['cwd']['loss']),
            dict(num_avatars=3, fuse=fuse), student, teacher)
        distiller.distill_losses['loss_a'].register_forward_hook(
            lambda *args, fuse=fuse: calls[fuse].append('loss'))
        fusion = distiller.fusions['loss_a']
        if fusion is not None:
            original = fusion.student_loss

            def student_loss(*args, fuse=fuse, original=original):
                calls[fuse].append('student_loss')
                return original(*args)

            fusion.student_loss = student_loss
        step(distiller, student, teacher, x)
    assert calls == {False: ['loss'] * 3, 'auto': ['student_loss']}


@pytest.mark.parametrize('case',
                         [c for c in sorted(CASES) if c not in FLOAT32_LOSSES])
def test_fused_loss_is_exact_in_float64(case):
    """``LossFusion.fused_loss`` on its own, against ``sum_k w_k L(S, A_k)``
    computed with the loss module, all in float64, with weights that do
    not sum to 1: value and student gradient to 1e-10."""
    cfg = CASES[case]
    torch.manual_seed(0)
    loss = MODELS.build(cfg['loss']).double()
    fusion, why = fusion_for(loss)
    assert fusion is not None, why
    kind = cfg.get('nets', 'maps')
    student_net, teacher_net, x = make_nets(kind, torch.float64)
    student = student_net(x)
    student = student if isinstance(student, torch.Tensor) else \
        tuple(student)
    with torch.no_grad():
        teacher = teacher_net(x)
    if cfg.get('t_connector'):
        teacher = F.avg_pool2d(teacher, 2)
    levels = [teacher] if isinstance(teacher, torch.Tensor) else teacher
    g = torch.Generator().manual_seed(3)
    stacks = [avatar_dropout(t, 0.2, 4, generator=g) for t in levels]
    avatars = [
        stacks[0][k] if isinstance(teacher, torch.Tensor) else tuple(
            s[k] for s in stacks) for k in range(4)
    ]
    weights = torch.tensor([0.1, 0.2, 0.3, 0.15], dtype=torch.float64)
    params = list(student_net.parameters())
    looped = sum(w * loss(student, a) for w, a in zip(weights, avatars))
    grads_l = torch.autograd.grad(looped, params, retain_graph=True)
    fused = fusion.fused_loss(student, iter(avatars), weights)
    grads_f = torch.autograd.grad(fused, params)
    assert fused.dtype == torch.float64
    error = abs(fused.item() - looped.item()) / abs(looped.item())
    assert error <= RTOL64, (looped.item(), fused.item(), error)
    g_l, g_f = flat(grads_l), flat(grads_f)
    assert ((g_f - g_l).norm() / g_l.norm()).item() <= RTOL64


# ---------------------------------------------------------------------------
# 2. and 3. losses that are not fused; settings that are refused
# ---------------------------------------------------------------------------
def fbkd_cfg(name='loss_s0'):
    losses, mappings, connectors = fbkd_distiller_parts(name)
    return dict(
        student_recorders=dict(feat=dict(type='ModuleOutputs', source='feat')),
        teacher_recorders=dict(feat=dict(type='ModuleOutputs', source='feat')),
        distill_losses=losses,
        loss_forward_mappings=mappings,
        connectors=connectors)


def test_fbkd_keeps_the_loop_under_auto_with_the_same_numbers():
    """FBKD has no fused form: ``'auto'`` loops, exactly as ``False``
    (bit-identical loss, weights and gradients, the trainable teacher
    connector's included)."""
    steps = []
    state = None
    for fuse in (False, 'auto'):
        torch.manual_seed(0)
        student, teacher = Maps(c=16), Maps(c=16)
        x = torch.randn(2, 3, 16, 16)
        distiller = build(fbkd_cfg(), dict(num_avatars=2, fuse=fuse), student,
                          teacher, state)
        state = distiller.state_dict()
        assert distiller.fusions == {'loss_s0': None}
        steps.append(step(distiller, student, teacher, x, 'loss_s0'))
    (out_l, grads_l), (out_f, grads_f) = steps
    assert set(out_l) == set(out_f)
    for key in out_l:
        assert torch.equal(out_l[key], out_f[key]), key
    for group in ('student', 'connectors'):
        assert grads_l[group] and all(g is not None for g in grads_l[group])
        for g_l, g_f in zip(grads_l[group], grads_f[group]):
            assert torch.equal(g_l, g_f), group


NOT_FUSABLE = {
    'fbkd': (None, 'FBKDLoss is not a squared-error or softmax-KL loss'),
    'l2_dist': (dict(type='L2Loss', dist=True), 'L2Loss(dist=True)'),
    'kl_none': (dict(type='KLDivergence',
                     reduction='none'), "KLDivergence(reduction='none')"),
    'l1': (dict(type='L1Loss'), 'L1Loss is not a squared-error'),
    'maskd_trainable':
    (dict(MASKD, freeze_masks=False), 'MasKDLoss(freeze_masks=False)'),
}


def not_fusable_cfg(case: str, name: str = 'loss_a') -> Dict:
    loss = NOT_FUSABLE[case][0]
    if loss is None:
        return fbkd_cfg(name)
    keys = FEATURE if loss['type'] in ('L2Loss', 'L1Loss') else \
        ('preds_S', 'preds_T')
    return distiller_cfg(loss, keys, name=name)


@pytest.mark.parametrize('case', sorted(NOT_FUSABLE))
def test_not_fusable_losses_loop_under_auto(case):
    distiller = AvatarDistiller(
        avatars=dict(num_avatars=2), **not_fusable_cfg(case))
    assert list(distiller.fusions.values()) == [None]
    assert list(distiller.fusions) == list(distiller.distill_losses)
    loss = next(iter(distiller.distill_losses.values()))
    fusion, why = fusion_for(loss)
    assert fusion is None and NOT_FUSABLE[case][1] in why


@pytest.mark.parametrize('case', sorted(NOT_FUSABLE))
def test_fuse_true_refuses_a_loss_without_a_fused_form(case):
    name = 'loss_s0' if case == 'fbkd' else 'loss_b'
    with pytest.raises(ValueError) as info:
        AvatarDistiller(
            avatars=dict(num_avatars=2, fuse=True),
            **not_fusable_cfg(case, name))
    message = str(info.value)
    assert f'model.distiller.distill_losses.{name}' in message
    assert NOT_FUSABLE[case][1] in message
    assert f'{KEY}.fuse=True' in message


@pytest.mark.parametrize('fuse', ['maybe', None, 'true', 1, 0, 1.0])
def test_invalid_fuse_names_the_key(fuse):
    with pytest.raises(ValueError, match=rf'{KEY}\.fuse'):
        AvatarDistiller(
            avatars=dict(fuse=fuse), **distiller_cfg(CASES['cwd']['loss']))


def test_fuse_true_builds_when_every_loss_fuses():
    distiller = AvatarDistiller(
        avatars=dict(fuse=True),
        **distiller_cfg(CASES['pkd']['loss'], s_connector=conv_connector()))
    assert distiller.fusions['loss_a'] is not None
    assert "fused=['loss_a']" in distiller.extra_repr()


def test_trainable_teacher_connector_keeps_the_loop():
    """A teacher-side connector with trainable parameters learns from each
    Avatar: ``'auto'`` loops (and the connector gets its gradient);
    ``True`` is refused, naming the connector."""
    cfg = distiller_cfg(
        dict(type='L2Loss'), FEATURE, t_connector=conv_connector())
    student, teacher, x = make_nets('maps')
    distiller = build(cfg, dict(num_avatars=2), student, teacher)
    assert distiller.fusions == {'loss_a': None}
    _, grads = step(distiller, student, teacher, x)
    assert flat(grads['connectors']).norm() > 0
    with pytest.raises(ValueError) as info:
        AvatarDistiller(avatars=dict(fuse=True), **cfg)
    message = str(info.value)
    assert 'model.distiller.distill_losses.loss_a' in message
    assert 'teacher-side connector ConvModuleConnector' in message


def test_teacher_connector_without_parameters_fuses():
    """Only a trainable teacher-side connector blocks fusion: one without
    parameters (a pooling) does not."""
    cfg = distiller_cfg(
        dict(type='L2Loss'),
        FEATURE,
        t_connector=CASES['l2_pooled_teacher']['t_connector'])
    distiller = AvatarDistiller(avatars=dict(fuse=True), **cfg)
    assert distiller.fusions['loss_a'] is not None


# ---------------------------------------------------------------------------
# 4. the build log
# ---------------------------------------------------------------------------
def two_losses_cfg() -> Dict:
    cfg = distiller_cfg(CASES['cwd']['loss'], name='loss_cwd')
    l1 = distiller_cfg(dict(type='L1Loss'), FEATURE, name='loss_l1')
    cfg['distill_losses'].update(l1['distill_losses'])
    cfg['loss_forward_mappings'].update(l1['loss_forward_mappings'])
    return cfg


@pytest.mark.parametrize('fuse', ['auto', False])
def test_build_log_names_the_choice_per_loss(fuse, logged):
    AvatarDistiller(avatars=dict(num_avatars=2, fuse=fuse), **two_losses_cfg())
    lines = [m for m in logged if m.startswith(f'{KEY}.fuse=')]
    assert len(lines) == 1, logged
    line = lines[0]
    assert line.startswith(f'{KEY}.fuse={fuse!r}: ')
    cwd, l1 = line.split(': ', 1)[1].split('; ')
    assert cwd.startswith('loss_cwd (ChannelWiseDivergence): ')
    assert l1.startswith('loss_l1 (L1Loss): per-Avatar loop (')
    if fuse == 'auto':
        assert 'fused target' in cwd
        assert 'L1Loss is not a squared-error' in l1
    else:
        assert cwd.endswith(f'per-Avatar loop ({KEY}.fuse=False)')
        assert l1.endswith(f'per-Avatar loop ({KEY}.fuse=False)')


def test_build_log_is_written_once(logged):
    student, teacher, x = make_nets('maps')
    distiller = build(
        distiller_cfg(CASES['cwd']['loss']), dict(num_avatars=2), student,
        teacher)
    step(distiller, student, teacher, x)
    step(distiller, student, teacher, x)
    lines = [m for m in logged if m.startswith(f'{KEY}.fuse=')]
    assert lines == [
        f"{KEY}.fuse='auto': loss_a (ChannelWiseDivergence): fused target, "
        'one loss call per step'
    ]


# ---------------------------------------------------------------------------
# 5. the Avatars are those of the earlier (not in-place) formulas
# ---------------------------------------------------------------------------
def _old_strength(strength, ndim: int):
    """A float, or per Avatar a float32 ``(K, 1, ..., 1)`` tensor."""
    if isinstance(strength, tuple):
        shape = (-1, ) + (1, ) * (ndim - 1)
        return torch.tensor(strength, dtype=torch.float32).view(shape)
    return strength


def old_dropout(x, p, k, generator, channel=False):
    """The formula before the in-place multiply: ``x * mask.div_(1 - p)``
    with ``mask = empty(...).bernoulli_(1 - p)``."""
    shape = (k, *x.shape) if not channel else \
        (k, x.shape[0], x.shape[1]) + (1, ) * (x.dim() - 2)
    keep = 1.0 - _old_strength(p, len(shape))
    mask = torch.empty(shape, dtype=x.dtype)
    mask.bernoulli_(keep, generator=generator)
    return x * mask.div_(keep)


def old_gaussian_noise(x, std, k, generator):
    """``x + noise * scale``, ``scale`` the per-channel (biased) std over
    the dims other than 1, times ``std``."""
    with torch.no_grad():
        dims = tuple(d for d in range(x.dim()) if d != 1)
        sigma = torch.std(x.float(), dim=dims, correction=0, keepdim=True)
        scale = (sigma * _old_strength(std, x.dim() + 1)).to(x.dtype)
    noise = torch.randn((k, *x.shape), dtype=x.dtype, generator=generator)
    return x + noise * scale


OLD = {
    'dropout': (avatar_dropout, old_dropout),
    'channel_dropout':
    (avatar_channel_dropout,
     lambda x, p, k, g: old_dropout(x, p, k, g, channel=True)),
    'gaussian_noise': (avatar_gaussian_noise, old_gaussian_noise),
}


@pytest.mark.parametrize('requires_grad', [False, True])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape', [(2, 3, 4, 5), (4, 6)])
@pytest.mark.parametrize('strength', [0.3, (0.05, 0.1, 0.2, 0.4)])
@pytest.mark.parametrize('fn', sorted(OLD))
def test_avatars_are_bit_identical_to_the_old_formula(fn, strength, shape,
                                                      dtype, requires_grad):
    new, old = OLD[fn]
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3 + 1).to(dtype).requires_grad_(requires_grad)
    k = 4
    got = new(x, strength, k, generator=torch.Generator().manual_seed(7))
    expected = old(x, strength, k, torch.Generator().manual_seed(7))
    assert got.shape == (k, *shape) and got.dtype == dtype
    assert torch.equal(got, expected)
    assert not torch.equal(got[0], x)  # really perturbed


MODULES = {
    'dropout': lambda s: AvatarDropout(p=s, num_avatars=4),
    'channel_dropout': lambda s: AvatarChannelDropout(p=s, num_avatars=4),
    'gaussian_noise': lambda s: AvatarGaussianNoise(std=s, num_avatars=4),
}


@pytest.mark.parametrize('strength', [0.3, (0.05, 0.1, 0.2, 0.4)])
@pytest.mark.parametrize('fn', sorted(OLD))
def test_modules_draw_the_avatars_of_the_old_formula(fn, strength):
    """What the distiller draws (``draw``, boolean masks for a dropout)
    and ``forward``: the old formula's Avatars, bit for bit."""
    module = MODULES[fn](strength)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5).relu()
    expected = OLD[fn][1](x, strength, 4, torch.Generator().manual_seed(7))
    drawn = module.draw(x, generator=torch.Generator().manual_seed(7))
    assert len(drawn) == 4
    for k in range(4):
        assert torch.equal(drawn[k], expected[k]), k
    stack = module(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(stack, expected)


@pytest.mark.parametrize('perturbation', sorted(PERTURBATIONS))
def test_weights_are_bit_identical_with_and_without_fusion(perturbation):
    """Weights come from the Avatars before any loss: ``akd.a.w<k>``,
    ``u`` and the spread are the same tensors under both paths."""
    avatars = dict(perturbation=PERTURBATIONS[perturbation])
    (_, (out_l, _)), (_, (out_f, _)) = loop_and_fused(CASES['pkd_levels'],
                                                      avatars)
    keys = [f'akd.a.w{k}' for k in range(4)]
    keys += ['akd.a.u', 'akd.a.wmax_over_wmin']
    assert set(keys) <= set(out_l)
    for key in keys:
        assert out_l[key].dtype == out_f[key].dtype
        assert torch.equal(out_l[key], out_f[key]), key


# ---------------------------------------------------------------------------
# 6. the Avatar stack is freed before the student loss
# ---------------------------------------------------------------------------
class WeakDrawSpy:
    """Keeps weak references to the Avatars a perturbation draws (what its
    ``draw`` returns, one per level, and every tensor it holds but the
    teacher), and nothing else."""

    def __init__(self, perturbation):
        self.refs = []
        original = perturbation.draw

        def draw(x, *args, **kwargs):
            out = original(x, *args, **kwargs)
            refs = [weakref.ref(out)]
            refs += [
                weakref.ref(v) for v in vars(out).values()
                if isinstance(v, torch.Tensor) and v is not x
            ]
            assert len(refs) > 1  # the masks or the stack
            self.refs.append(refs)
            return out

        perturbation.draw = draw

    def alive(self) -> List[bool]:
        """Per level: whether its draw or any of its tensors is alive."""
        return [any(ref() is not None for ref in refs) for refs in self.refs]


@pytest.mark.parametrize('case,perturbation,levels', [
    ('cwd', None, 1),
    ('kl_logits', None, 1),
    ('pkd_levels', None, 2),
    ('l2_pooled_teacher', 'dropout_and_noise', 1),
    ('mgd', 'dropout_per_avatar', 1),
    ('at', 'channel_dropout_and_noise', 1),
])
def test_avatar_stack_is_freed_before_the_student_loss(case, perturbation,
                                                       levels):
    """The fused path holds the Avatars while it averages them
    (``targets``) and has let them go when ``student_loss`` runs."""
    avatars = dict(num_avatars=3)
    if perturbation:
        avatars = dict(perturbation=PERTURBATIONS[perturbation])
    cfg = CASES[case]
    student, teacher, x = make_nets(cfg.get('nets', 'maps'))
    distiller = build(
        distiller_cfg(cfg['loss'], cfg.get('keys', ('preds_S', 'preds_T')),
                      cfg.get('s_connector'), cfg.get('t_connector')), avatars,
        student, teacher)
    spy = WeakDrawSpy(distiller.perturbation)
    fusion = distiller.fusions['loss_a']
    during_targets, at_student_loss = [], []
    targets, student_loss = fusion.targets, fusion.student_loss

    def spy_targets(*args):
        during_targets.append(spy.alive())
        return targets(*args)

    def spy_student_loss(*args):
        at_student_loss.append(spy.alive())
        return student_loss(*args)

    fusion.targets = spy_targets
    fusion.student_loss = spy_student_loss
    out, _ = step(distiller, student, teacher, x)
    assert torch.isfinite(out['loss_a'])
    k = distiller.num_avatars
    # alive while the Avatars are used (the last one may already be free:
    # the draw goes as soon as the last Avatar is made from it) ...
    assert during_targets[:k - 1] == [[True] * levels] * (k - 1)
    # ... and freed before the student's side of the loss
    assert at_student_loss == [[False] * levels]
