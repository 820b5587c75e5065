# Copyright (c) mmakd contributors. All rights reserved.
"""AvatarDistiller: golden values, gradients, MMRazor losses, validation."""
import json
import math
import os.path as osp
import uuid
from typing import Dict, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from torch import nn

from mmakd.models import AvatarDistiller, BaseAvatarPerturbation
from mmakd.registry import MODELS
from helpers import REPO, PerturbationSpy, fbkd_distiller_parts

pytestmark = pytest.mark.usefixtures('fresh_message_hub')

GOLDEN = osp.join(REPO, 'tests/data/golden/akd_losses.json')


@MODELS.register_module(name='TestFixedAvatars', force=True)
class FixedAvatars(BaseAvatarPerturbation):
    """Test perturbation: Avatars are given tensors (or multiples of T)."""

    def __init__(self, factors=(1.0, ), avatars=None, num_avatars=1):
        super().__init__(num_avatars)
        self.factors = factors
        self.avatars = avatars

    @property
    def is_identity(self):
        return False

    def perturb(self, x, num_avatars, generator):
        if self.avatars is not None:
            return self.avatars.to(x)
        return torch.stack([x * f for f in self.factors[:num_avatars]])


class Net(nn.Module):
    """A 1x1 conv ``feat`` (the recorded tensor) and a head conv."""

    def __init__(self, c_in=2, c=2, classes=3):
        super().__init__()
        self.feat = nn.Conv2d(c_in, c, 1)
        self.head = nn.Conv2d(c, classes, 1)

    def forward(self, x):
        return self.head(self.feat(x))


def identity_net(c=2):
    net = Net(c, c)
    with torch.no_grad():
        net.feat.weight.copy_(torch.eye(c).view(c, c, 1, 1))
        net.feat.bias.zero_()
    return net


def build(losses: Dict,
          mappings: Dict,
          avatars: Optional[Dict] = None,
          connectors: Optional[Dict] = None,
          student=None,
          teacher=None,
          source='feat'):
    distiller = AvatarDistiller(
        avatars=avatars,
        student_recorders=dict(feat=dict(type='ModuleOutputs', source=source)),
        teacher_recorders=dict(feat=dict(type='ModuleOutputs', source=source)),
        distill_losses=losses,
        loss_forward_mappings=mappings,
        connectors=connectors)
    student = student or Net()
    teacher = teacher or Net()
    distiller.prepare_from_student(student)
    distiller.prepare_from_teacher(teacher)
    return distiller, student, teacher


def run(distiller, student, teacher, x_s, x_t=None, teacher_grad=False):
    """One step; the teacher runs without gradients unless
    ``teacher_grad``."""
    with distiller.teacher_recorders, torch.set_grad_enabled(teacher_grad):
        teacher(x_s if x_t is None else x_t)
    with distiller.student_recorders:
        student(x_s)
    return distiller.compute_distill_losses()


def pair(loss_cfg, s_key='preds_S', t_key='preds_T', name='loss_a', **t_extra):
    """``distill_losses`` and ``loss_forward_mappings`` of the one loss
    ``name`` between the student's and the teacher's ``feat``."""
    inputs = {
        s_key: dict(from_student=True, recorder='feat'),
        t_key: dict(from_student=False, recorder='feat', **t_extra)
    }
    return {name: loss_cfg}, {name: inputs}


def build_one(loss_cfg,
              avatars,
              *keys,
              name='loss_a',
              student=None,
              teacher=None,
              **kwargs):
    """``build`` of the one loss ``pair(loss_cfg, *keys, name=name)``, its
    student and teacher a ``Net(3, 8)`` unless given."""
    losses, mappings = pair(dict(loss_cfg), *keys, name=name)
    return build(
        losses,
        mappings,
        avatars,
        student=Net(3, 8) if student is None else student,
        teacher=Net(3, 8) if teacher is None else teacher,
        **kwargs)


#: Losses (and the argument names of L2Loss) that several tests use.
CWD = dict(type='ChannelWiseDivergence', tau=1.0)
PKD = dict(type='PKDLoss', loss_weight=6.0)
L2_RAW = dict(type='L2Loss', normalize=False)
FEATURE = ('s_feature', 't_feature')

# T: N=2, C=2, H=1, W=2 (see test_statistics.py for its statistics).
T = torch.tensor([[[[1., 3.]], [[0., 0.]]], [[[5., 7.]], [[2., 2.]]]])
# S swaps the two values of channel 0 in each sample: after standardising,
# channel 0 of S - T is (+2, -2, +2, -2) / sqrt(5), channel 1 is 0.
S = torch.tensor([[[[3., 1.]], [[0., 0.]]], [[[7., 5.]], [[2., 2.]]]])


def hand_case(tau=1.0, uncertainty=True):
    uncertainty = None if not uncertainty else \
        dict() if tau is None else dict(tau=tau)
    avatars = dict(
        num_avatars=2,
        perturbation=dict(type='TestFixedAvatars', factors=(1.5, 2.0)),
        normalize=True,
        uncertainty=uncertainty)
    return build_one(
        dict(L2_RAW, loss_weight=1.0),
        avatars,
        *FEATURE,
        student=identity_net(),
        teacher=identity_net())


def test_golden_l2_by_hand():
    """Avatars 1.5T and 2T standardise to the same tensor, so the combined
    loss is the L2 loss of norm(S) and norm(T): sum((S-T)^2) / N
    = 4 * (2/sqrt(5))^2 / 2 = 1.6.

    Their drifts: cT has D_mu = (c-1) mu_T = (c-1)(4, 1) and D_sigma =
    (c-1) sigma_T = (c-1)(sqrt(5), 1), so u = (c-1)^2 (16 + 1 + 5 + 1) /
    (5 + 1) = (c-1)^2 * 23/6: 23/24 and 23/6, a ratio of 4. The weights are
    proportional to u^(-1/tau): (0.8, 0.2) at tau = 1."""
    distiller, student, teacher = hand_case()
    out = run(distiller, student, teacher, S, T)
    assert out['loss_a'].item() == pytest.approx(1.6, abs=1e-4)
    assert out['akd.a.w0'].item() == pytest.approx(0.8, abs=1e-5)
    assert out['akd.a.w1'].item() == pytest.approx(0.2, abs=1e-5)
    assert out['akd.a.wmax_over_wmin'].item() == pytest.approx(4.0, rel=1e-5)
    assert out['akd.a.u'].item() == pytest.approx(
        (23 / 24 + 23 / 6) / 2, rel=1e-5)
    assert not any('loss' in k for k in out if k.startswith('akd.'))


def test_golden_weights_at_the_default_tau():
    """tau = 4 by default: a 4x drift ratio gives a weight ratio of
    4 ** (1/4) = sqrt(2), w0 = sqrt(2) / (1 + sqrt(2))."""
    distiller, student, teacher = hand_case(tau=None)
    assert distiller.tau == 4.0
    out = run(distiller, student, teacher, S, T)
    assert out['akd.a.w0'].item() == pytest.approx(
        math.sqrt(2) / (1 + math.sqrt(2)), abs=1e-5)
    assert out['akd.a.wmax_over_wmin'].item() == pytest.approx(
        math.sqrt(2), rel=1e-5)


def test_golden_equal_weights_without_uncertainty():
    distiller, student, teacher = hand_case(uncertainty=False)
    out = run(distiller, student, teacher, S, T)
    assert out['loss_a'].item() == pytest.approx(1.6, abs=1e-4)
    assert out['akd.a.w0'].item() == 0.5 and out['akd.a.w1'].item() == 0.5


def test_golden_weighting_with_unequal_losses():
    """Without normalisation the two Avatars give different losses,
    L(S, 1.5T) and L(S, 2T) = sum((S - cT)^2) / N, weighted by
    (16, 1) / 17: the drift ratio 4 to the power 1 / tau = 2."""
    distiller, student, teacher = build_one(
        L2_RAW,
        dict(
            num_avatars=2,
            perturbation=dict(type='TestFixedAvatars', factors=(1.5, 2.0)),
            normalize=False,
            uncertainty=dict(tau=0.5)),
        *FEATURE,
        student=identity_net(),
        teacher=identity_net())
    out = run(distiller, student, teacher, S, T)
    l1 = ((S - 1.5 * T)**2).sum() / 2
    l2 = ((S - 2 * T)**2).sum() / 2
    # S - 2T: (1, -5 | 0, 0) and (-3, -9 | -2, -2): 124 / 2
    assert l2.item() == 62.0
    w0, w1 = out['akd.a.w0'].item(), out['akd.a.w1'].item()
    assert (w0, w1) == pytest.approx((16 / 17, 1 / 17), rel=1e-5)
    assert out["loss_a"].item() == pytest.approx(
        (w0 * l1 + w1 * l2).item(), rel=1e-5)


def _reference_akd_cwd(s, avatar, tau, loss_weight):
    """The reference AKD_ChannelWiseDivergence, rewritten independently:
    BatchNorm2d(affine=False) on the student only, the raw Avatar as the
    teacher distribution."""
    n, c, h, w = s.shape
    s = nn.BatchNorm2d(c, affine=False).train()(s)
    p_t = F.softmax(avatar.reshape(-1, h * w) / tau, dim=1)
    cost = torch.sum(p_t * F.log_softmax(avatar.reshape(-1, h * w) / tau, 1) -
                     p_t * F.log_softmax(s.reshape(-1, h * w) / tau, 1))
    return cost * tau**2 / (c * n) * loss_weight


def test_k1_dropout_student_normalisation_is_the_reference_cwd():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    student, teacher = Net(4, 8), Net(4, 8)
    with torch.no_grad():
        t_feat = teacher.feat(x)
        s_feat = student.feat(x)
    keep = (torch.arange(t_feat.numel()) % 10 != 3).view_as(t_feat)
    avatar = t_feat * keep / 0.9  # dropout p=0.1 with a known mask
    distiller, _, _ = build_one(
        dict(type='ChannelWiseDivergence', tau=2.0, loss_weight=3.0),
        dict(
            num_avatars=1,
            perturbation=dict(
                type='TestFixedAvatars', avatars=avatar.unsqueeze(0)),
            normalize='student'),
        student=student,
        teacher=teacher)
    out = run(distiller, student, teacher, x)
    expected = _reference_akd_cwd(s_feat, avatar, 2.0, 3.0)
    torch.testing.assert_close(out['loss_a'], expected, rtol=1e-5, atol=1e-6)
    assert out['akd.a.w0'].item() == 1.0


def _golden_inputs():
    """Inputs without RNG: deterministic arithmetic patterns."""
    idx = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    s = torch.sin(0.37 * idx) * 2 + 0.5
    t = torch.cos(0.23 * idx) * 3 - 1
    keep = ((idx.long() * 7) % 5 != 0).float()
    avatars = torch.stack([t * keep / 0.8, t * (1 - 0.3 * torch.sin(idx))])
    return s, t, avatars


@pytest.mark.parametrize(
    'case', ['cwd_both', 'cwd_student', 'kl_both', 'l2_teacher', 'maskd_both'])
def test_golden_json(case):
    """Combined losses on fixed inputs, frozen in tests/data/golden; the
    values were computed with the formula above (not by this code)."""
    with open(GOLDEN) as f:
        golden = json.load(f)[case]
    s, t, avatars = _golden_inputs()
    loss_cfg = golden['loss']
    student, teacher = Net(3, 3), Net(3, 3)
    # make the recorded tensors exactly s and t (hooks registered before
    # the recorders' own hooks, so they see the replaced outputs)
    student.feat.register_forward_hook(lambda m, i, o: s.clone())
    teacher.feat.register_forward_hook(lambda m, i, o: t.clone())
    if loss_cfg['type'] == 'MasKDLoss':
        torch.manual_seed(0)  # the loss's own parameters
    keys = FEATURE if loss_cfg['type'] == 'L2Loss' \
        else ('preds_S', 'preds_T')
    distiller, _, _ = build_one(
        loss_cfg,
        dict(
            num_avatars=2,
            perturbation=dict(type='TestFixedAvatars', avatars=avatars),
            normalize=golden['normalize'],
            uncertainty=dict(tau=1.0)),
        *keys,
        student=student,
        teacher=teacher)
    out = run(distiller, student, teacher, torch.zeros(2, 3, 4, 5))
    assert out['loss_a'].item() == pytest.approx(golden['value'], rel=1e-5)
    assert [out['akd.a.w0'].item(), out['akd.a.w1'].item()] == \
        pytest.approx(golden['weights'], rel=1e-5)


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------
def test_gradients_reach_the_student_only():
    torch.manual_seed(0)
    student, teacher = Net(3, 8), Net(3, 8)
    for p in teacher.parameters():
        p.requires_grad_(True)  # even a trainable teacher gets nothing
    distiller, _, _ = build_one(
        CWD, dict(num_avatars=4), student=student, teacher=teacher)
    x = torch.randn(2, 3, 8, 8)
    # with grad enabled on purpose
    out = run(distiller, student, teacher, x, teacher_grad=True)
    out['loss_a'].backward()
    assert student.feat.weight.grad is not None
    assert student.feat.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    for key, value in out.items():
        if key.startswith('akd.'):
            assert not value.requires_grad


def test_teacher_connector_learns_teacher_does_not():
    """Avatars are drawn before a teacher-side connector; a trainable
    connector gets gradients from every Avatar, the teacher none."""
    losses, mappings = pair(dict(type='L2Loss'), *FEATURE, connector='t_align')
    connectors = dict(
        t_align=dict(
            type='ConvModuleConnector',
            in_channel=8,
            out_channel=8,
            kernel_size=1))
    student, teacher = Net(3, 8), Net(3, 8)
    for p in teacher.parameters():
        p.requires_grad_(True)
    distiller, _, _ = build(
        losses,
        mappings,
        dict(num_avatars=3),
        connectors=connectors,
        student=student,
        teacher=teacher)
    x = torch.randn(2, 3, 8, 8)
    run(distiller, student, teacher, x, teacher_grad=True)['loss_a'].backward()
    conv = distiller.connectors['t_align'].conv_module.conv
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


# ---------------------------------------------------------------------------
# shapes: neck levels, tuples of levels, logits
# ---------------------------------------------------------------------------
class FPNLike(nn.Module):
    """Returns a tuple of three levels from a ``neck`` module."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.neck = nn.ModuleList([nn.Conv2d(16, 16, 1) for _ in range(3)])

    def forward(self, x):
        x = self.stem(x)
        return self.neck_forward(x)

    def neck_forward(self, x):
        outs = []
        for i, conv in enumerate(self.neck):
            outs.append(conv(F.avg_pool2d(x, 2**i)))
        return tuple(outs)


class NeckWrapper(nn.Module):

    def __init__(self):
        super().__init__()
        self.body = FPNLike()
        self.neck = _TupleNeck(self.body)

    def forward(self, x):
        return self.neck(x)


class _TupleNeck(nn.Module):

    def __init__(self, body):
        super().__init__()
        self.body = [body]

    def forward(self, x):
        return self.body[0](x)


def test_pkd_on_a_tuple_of_fpn_levels():
    distiller, student, teacher = build_one(
        PKD,
        dict(num_avatars=3),
        name='loss_pkd',
        student=NeckWrapper(),
        teacher=NeckWrapper(),
        source='neck')
    out = run(distiller, student, teacher, torch.randn(2, 3, 16, 16))
    assert torch.isfinite(out['loss_pkd'])
    assert out['loss_pkd'].requires_grad
    assert sum(out[f'akd.pkd.w{k}'].item() for k in range(3)) == \
        pytest.approx(1.0)


@pytest.mark.parametrize('loss_cfg,shape', [
    (CWD, (2, 19, 8, 16)),
    (dict(type='KLDivergence', tau=2.0), (2, 19, 8, 16)),
    (dict(type='KLDivergence', tau=1.0), (4, 10)),
])
def test_logits(loss_cfg, shape):
    """(N, num_classes, H, W) segmentation logits and (N, C) logits."""

    class Logits(nn.Module):

        def __init__(self):
            super().__init__()
            self.feat = nn.Linear(shape[1], shape[1]) if len(shape) == 2 \
                else nn.Conv2d(shape[1], shape[1], 1)

        def forward(self, x):
            return self.feat(x)

    distiller, student, teacher = build_one(
        loss_cfg, dict(num_avatars=2), student=Logits(), teacher=Logits())
    out = run(distiller, student, teacher, torch.randn(*shape))
    assert out['loss_a'] > 0
    out['loss_a'].backward()
    assert student.feat.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------
# the MMRazor losses of the issue
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('loss_cfg,keys,connectors', [
    (dict(type='ChannelWiseDivergence', tau=1.0, loss_weight=5.0),
     ('preds_S', 'preds_T'), None),
    (dict(type='MGDLoss', alpha_mgd=2e-5), ('preds_S', 'preds_T'),
     dict(
         s_mgd=dict(
             type='MGDConnector',
             student_channels=8,
             teacher_channels=8,
             lambda_mgd=0.65))),
    (PKD, ('preds_S', 'preds_T'), None),
    (dict(type='L2Loss', loss_weight=1.0), FEATURE, None),
    (dict(type='KLDivergence', tau=1.0), ('preds_S', 'preds_T'), None),
    (dict(type='MasKDLoss', channels=8, num_tokens=4),
     ('preds_S', 'preds_T'), None),
])
def test_mmrazor_losses_train(loss_cfg, keys, connectors):
    torch.manual_seed(0)
    losses, mappings = pair(loss_cfg, *keys)
    if connectors:
        mappings['loss_a'][keys[0]]['connector'] = 's_mgd'
    distiller, student, teacher = build(
        losses,
        mappings,
        dict(num_avatars=2),
        connectors=connectors,
        student=Net(3, 8),
        teacher=Net(3, 8))
    out = run(distiller, student, teacher, torch.randn(2, 3, 8, 8))
    assert torch.isfinite(out['loss_a']) and out['loss_a'] > 0
    out['loss_a'].backward()
    assert student.feat.weight.grad.abs().sum() > 0


def _fbkd_case(normalize, normalize_at='auto'):
    losses, mappings, connectors = fbkd_distiller_parts('loss_s0')
    student, teacher = Net(3, 16), Net(3, 16)
    return build(
        losses,
        mappings,
        dict(num_avatars=2, normalize=normalize, normalize_at=normalize_at),
        connectors=connectors,
        student=student,
        teacher=teacher)


def test_fbkd_standardises_its_features_before_the_connectors():
    """FBKD's connectors turn features into masks and pooled maps (tuples of
    6 and 5 tensors); 'auto' standardises the recorded features instead,
    which is 'record'."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    distiller, student, teacher = _fbkd_case(normalize=True)
    out = run(distiller, student, teacher, x)
    assert distiller.resolved_normalize_at == {'loss_s0': 'record'}
    assert torch.isfinite(out['loss_s0'])
    out['loss_s0'].backward()
    assert student.feat.weight.grad.abs().sum() > 0
    torch.manual_seed(0)
    explicit, student2, teacher2 = _fbkd_case(True, 'record')
    explicit.load_state_dict(distiller.state_dict())
    student2.load_state_dict(student.state_dict())
    teacher2.load_state_dict(teacher.state_dict())
    again = run(explicit, student2, teacher2, x)
    torch.testing.assert_close(again['loss_s0'], out['loss_s0'])


def test_fbkd_at_the_loss_is_refused_with_the_reason():
    distiller, student, teacher = _fbkd_case(True, 'loss')
    with pytest.raises(TypeError) as info:
        run(distiller, student, teacher, torch.randn(2, 3, 16, 16))
    message = str(info.value)
    assert 'FBKDLoss' in message and 'loss_s0' in message
    assert 'a tuple of 6' in message and 'a tuple of 5' in message
    assert "normalize_at='record'" in message


def test_fbkd_without_normalisation_trains():
    """Avatars go through FBKD's (trainable) teacher connector."""
    distiller, student, teacher = _fbkd_case(normalize=False)
    out = run(distiller, student, teacher, torch.randn(2, 3, 16, 16))
    assert torch.isfinite(out['loss_s0'])
    out['loss_s0'].backward()
    assert student.feat.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------
# selection, reproducibility, validation
# ---------------------------------------------------------------------------
def _two_losses(avatars):
    losses = dict(
        loss_cwd=dict(type='ChannelWiseDivergence', tau=1.0),
        loss_l2=dict(type='L2Loss'))
    mappings = dict(
        loss_cwd=dict(
            preds_S=dict(from_student=True, recorder='feat'),
            preds_T=dict(from_student=False, recorder='feat')),
        loss_l2=dict(
            s_feature=dict(from_student=True, recorder='feat'),
            t_feature=dict(from_student=False, recorder='feat')))
    torch.manual_seed(0)
    return build(
        losses, mappings, avatars, student=Net(3, 8), teacher=Net(3, 8))


def test_losses_selects_which_losses_use_avatars():
    distiller, student, teacher = _two_losses(
        dict(num_avatars=2, losses=['loss_cwd']))
    out = run(distiller, student, teacher, torch.randn(2, 3, 8, 8))
    assert 'akd.cwd.w0' in out and 'akd.l2.w0' not in out
    # the other loss is MMRazor's plain loss on the teacher itself
    s = distiller.get_record('feat', True)
    t = distiller.get_record('feat', False)
    torch.testing.assert_close(out['loss_l2'],
                               distiller.distill_losses['loss_l2'](s, t))


def test_same_seed_same_avatars_and_losses():
    x = torch.randn(2, 3, 8, 8)

    def loss_with(seed):
        MessageHub.get_instance(f'akd-test-{uuid.uuid4()}')
        distiller, student, teacher = _two_losses(dict(num_avatars=3))
        torch.manual_seed(seed)
        return run(distiller, student, teacher, x)['loss_cwd'].item()

    assert loss_with(1) == loss_with(1)
    assert loss_with(1) != loss_with(2)


def test_avatars_follow_the_runner_seed_iteration_and_rank(monkeypatch):
    from mmakd.models.avatars import seeding as module
    distiller, student, teacher = _two_losses(dict(num_avatars=2))
    hub = MessageHub.get_current_instance()
    x = torch.randn(2, 3, 8, 8)

    def loss_at(seed, iteration, rank=0):
        hub.update_info('seed', seed)
        hub.update_info('iter', iteration)
        monkeypatch.setattr(module, 'get_rank', lambda: rank)
        distiller.avatar_seeds.state = (None, 0)
        return run(distiller, student, teacher, x)['loss_cwd'].item()

    assert loss_at(0, 5) == loss_at(0, 5)  # e.g. after a resume
    assert loss_at(0, 5) != loss_at(0, 6)
    assert loss_at(0, 5) != loss_at(1, 5)
    assert loss_at(0, 5, rank=0) != loss_at(0, 5, rank=1)
    # a second call within one iteration (gradient accumulation) differs
    first = loss_at(0, 7)
    second = run(distiller, student, teacher, x)['loss_cwd'].item()
    assert first != second


@pytest.mark.parametrize('avatars,error,match', [
    (dict(num_avatars=0), ValueError,
     r'model.distiller.avatars.num_avatars must be an integer >= 1, got 0'),
    (dict(num_avatars=2.5), ValueError, r'avatars.num_avatars must be'),
    (dict(perturbation=dict(type='AvatarDropout', p=1.0)), ValueError,
     r'model.distiller.avatars.perturbation.p must be a number in \[0, 1\)'),
    (dict(perturbation=dict(type='AvatarDropout', p=-0.2)), ValueError,
     r'avatars.perturbation.p must be'),
    (dict(
        num_avatars=2, perturbation=dict(type='AvatarDropout', num_avatars=3)),
     ValueError, r'perturbation.num_avatars=3 contradicts'),
    (dict(
        num_avatars=2,
        perturbation=dict(type='AvatarDropout', p=(0.1, 0.2, 0.4))),
     ValueError, r'model.distiller.avatars.perturbation defines 3 Avatars '
     r'.* but model.distiller.avatars.num_avatars=2'),
    (dict(perturbation=dict(type='AvatarDropout', p=(0.1, 1.5))), ValueError,
     r'model.distiller.avatars.perturbation.p\[1\] must be a '
     r'number in \[0, 1\), got 1.5'),
    (dict(perturbation=[dict(type='AvatarDropout'), [dict(p=0.1)]]), TypeError,
     r'model.distiller.avatars.perturbation\[1\] is a list'),
    (dict(
        num_avatars=3,
        perturbation=[
            dict(type='AvatarDropout', num_avatars=2),
            dict(type='AvatarGaussianNoise', std=(0.1, 0.2))
        ]), ValueError, r'perturbation defines 4 Avatars'),
    (dict(normalize_at='before'), ValueError,
     r"avatars.normalize_at must be one of \('auto', 'loss', 'record'\)"),
    (dict(perturbation=None), ValueError, r'avatars.perturbation must be'),
    (dict(losses=['loss_nope']), KeyError,
     r"avatars.losses: 'loss_nope' is not in distill_losses"),
    (dict(losses='loss_cwd'), TypeError, r'avatars.losses must be a list'),
    (dict(losses=[]), ValueError, r'avatars.losses selects no loss'),
    (dict(normalize='yes'), ValueError, r'avatars.normalize must be'),
    (dict(uncertainty=dict(tau=0)), ValueError,
     r'avatars.uncertainty.tau must be a number > 0'),
    (dict(uncertainty=dict(temperature=1)), ValueError,
     r'avatars.uncertainty must be None or dict\(tau=...\)'),
    (dict(num_avatar=2), KeyError,
     r"avatars has unknown keys \['num_avatar'\]"),
])
def test_invalid_avatars_settings_name_the_key(avatars, error, match):
    with pytest.raises(error, match=match):
        _two_losses(avatars)


def test_loss_without_teacher_input_is_refused():
    losses = dict(loss_a=dict(type='L2Loss'))
    mappings = dict(
        loss_a=dict(
            s_feature=dict(from_student=True, recorder='feat'),
            t_feature=dict(from_student=True, recorder='feat')))
    with pytest.raises(ValueError, match=r"L2Loss 'loss_a' has 0 teacher"):
        build(losses, mappings, dict(num_avatars=2))


def test_base_loss_error_is_reraised_with_the_config_key():
    """Shapes are the base loss's business; when it fails, the error names
    the loss, its type, the inputs and the mapping to fix."""
    distiller, student, teacher = build_one(
        CWD, dict(num_avatars=2), student=Net(3, 4))
    with pytest.raises(RuntimeError) as info:
        run(distiller, student, teacher, torch.randn(2, 3, 8, 8))
    message = str(info.value)
    assert message.startswith(
        'model.distiller.distill_losses.loss_a (ChannelWiseDivergence)')
    assert 'preds_S: shape (2, 4, 8, 8)' in message
    assert 'model.distiller.loss_forward_mappings.loss_a' in message
    assert 'connector' in message
    assert isinstance(info.value.__cause__, RuntimeError)


class Strided(nn.Module):
    """``feat`` at full resolution for stride 1, half for stride 2."""

    def __init__(self, stride):
        super().__init__()
        self.feat = nn.Conv2d(3, 8, 3, stride=stride, padding=1)

    def forward(self, x):
        return self.feat(x)


def test_levels_of_different_sizes_train_when_the_loss_resizes():
    """MMRazor's PKDLoss resizes mismatched maps itself (its FPN configs
    pair levels of different strides): with AKD it trains too, whatever
    ``normalize``, and equals PKD on standardised inputs at p = 0."""
    for normalize in (True, 'student', False):
        torch.manual_seed(0)
        distiller, student, teacher = build_one(
            PKD,
            dict(
                num_avatars=2,
                normalize=normalize,
                perturbation=dict(type='AvatarDropout', p=0.0)),
            student=Strided(2),
            teacher=Strided(1))
        x = torch.randn(2, 3, 16, 16)
        out = run(distiller, student, teacher, x)
        assert distiller.get_record('feat', True).shape == (2, 8, 8, 8)
        assert distiller.get_record('feat', False).shape == (2, 8, 16, 16)
        plain = distiller.distill_losses['loss_a'](distiller.get_record(
            'feat', True), distiller.get_record('feat', False))
        # PKD standardises both sides itself: the result is the same
        torch.testing.assert_close(out['loss_a'], plain, rtol=1e-4, atol=1e-5)
        out['loss_a'].backward()
        assert student.feat.weight.grad.abs().sum() > 0


def test_non_finite_teacher_is_reported():
    distiller, student, teacher = build_one(CWD, dict(num_avatars=2))
    with torch.no_grad():
        teacher.feat.bias[2] = float('nan')
    with pytest.raises(
            FloatingPointError,
            match=r"loss_a.preds_T \(recorder 'feat'\) holds NaN"):
        run(distiller, student, teacher, torch.randn(2, 3, 8, 8))


def test_bf16_autocast_keeps_statistics_and_loss_in_fp32(
        device, autocast_dtype):
    """Under autocast (bfloat16 on the CPU, float16 on CUDA) the model runs
    in half precision, the AKD loss in float32, close to the loss of the
    same models without autocast."""
    student, teacher = Net(3, 8).to(device), Net(3, 8).to(device)
    distiller, student, teacher = build_one(
        CWD, dict(num_avatars=4), student=student, teacher=teacher)
    x = (torch.randn(2, 3, 8, 8) * 50).to(device)
    with torch.autocast(device.type, dtype=autocast_dtype):
        out = run(distiller, student, teacher, x)
    assert distiller.get_record('feat', False).dtype == autocast_dtype
    assert out['loss_a'].dtype == torch.float32
    assert torch.isfinite(out['loss_a'])
    reference = run(distiller, student, teacher, x)['loss_a']
    assert out['loss_a'].item() == pytest.approx(reference.item(), rel=0.1)


def test_extra_repr():
    distiller, _, _ = _two_losses(dict(num_avatars=4, normalize='student'))
    assert ("num_avatars=4, normalize='student', normalize_at='auto', "
            'tau=4.0') in repr(distiller)


# ---------------------------------------------------------------------------
# heterogeneous and mixed Avatars, calibrated weights
# ---------------------------------------------------------------------------
class ReluNet(nn.Module):
    """A ReLU feature ``feat`` of ``c`` channels."""

    def __init__(self, c=64):
        super().__init__()
        self.conv = nn.Conv2d(3, c, 3, padding=1)
        self.feat = nn.ReLU()

    def forward(self, x):
        return self.feat(self.conv(x))


def _hetero(avatars, c=64, size=16):
    torch.manual_seed(0)
    distiller, student, teacher = build_one(
        CWD, avatars, student=ReluNet(c), teacher=ReluNet(c))
    return run(distiller, student, teacher, torch.randn(2, 3, size, size)), \
        distiller


@pytest.mark.parametrize('c', [64, 256])
def test_heterogeneous_dropout_avatars_are_weighted_by_their_drift(c):
    """From a config: K inferred from the four strengths, weights strictly
    decreasing with p, spread >= 1.5 at the default tau, and logged."""
    out, distiller = _hetero(
        dict(perturbation=dict(type='AvatarDropout', p=(0.05, 0.1, 0.2, 0.4))),
        c)
    assert distiller.num_avatars == 4 and distiller.tau == 4.0
    w = torch.stack([out[f'akd.a.w{k}'] for k in range(4)])
    assert (w[1:] < w[:-1]).all()
    assert out['akd.a.wmax_over_wmin'] == pytest.approx(
        (w.max() / w.min()).item())
    assert out['akd.a.wmax_over_wmin'] >= 1.5
    # without the factor: equal weights, the same Avatars
    out_eq, _ = _hetero(
        dict(
            perturbation=dict(type='AvatarDropout', p=(0.05, 0.1, 0.2, 0.4)),
            uncertainty=None), c)
    assert out_eq['akd.a.wmax_over_wmin'] == 1.0
    assert out_eq['akd.a.u'] == out['akd.a.u']


def test_iid_dropout_avatars_get_nearly_equal_weights():
    out, _ = _hetero(dict(num_avatars=4), 128, 16)
    assert 1.0 <= out['akd.a.wmax_over_wmin'] <= 1.10


def test_mixed_perturbation_types_from_a_list():
    out, distiller = _hetero(
        dict(
            num_avatars=4,
            perturbation=[
                dict(type='AvatarDropout', p=0.2, num_avatars=2),
                dict(type='AvatarGaussianNoise', std=(0.05, 0.1))
            ]))
    assert type(distiller.perturbation).__name__ == 'AvatarPerturbationMix'
    w = [out[f'akd.a.w{k}'].item() for k in range(4)]
    assert sum(w) == pytest.approx(1.0)
    # mild noise drifts far less than dropout 0.2: it teaches more
    assert min(w[2:]) > max(w[:2])
    assert torch.isfinite(out['loss_a']) and out['loss_a'] > 0


def test_per_avatar_strength_via_cfg_options_style_override():
    """``--cfg-options model.distiller.avatars.perturbation.p='(0.1,0.3)'``
    gives a dict without type: still AvatarDropout, K from the values."""
    _, distiller = _hetero(dict(perturbation=dict(p=[0.1, 0.3])))
    assert distiller.num_avatars == 2
    assert distiller.perturbation.p == (0.1, 0.3)


# ---------------------------------------------------------------------------
# goldens through the real perturbation path: the distiller's own seeded
# AvatarDropout, its masks recovered from the Avatars, fed to the reference
# formulas
# ---------------------------------------------------------------------------
class PositiveNet(nn.Module):
    """``feat`` strictly positive, so that an Avatar's zeros are exactly its
    dropout mask."""

    def __init__(self, c=8, levels=1):
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv2d(3, c, 3, padding=1) for _ in range(levels)])
        self.feat = nn.Identity()

    def forward(self, x):
        outs = tuple(
            torch.exp(0.3 * conv(F.avg_pool2d(x, 2**i)))
            for i, conv in enumerate(self.convs))
        return self.feat(outs if len(outs) > 1 else outs[0])


def _np_uncertainty(t, avatars):
    """docs/akd.md 4.2, u_k in float64 NumPy, from the recovered Avatars."""
    t = t.double().numpy()
    dims = (0, 2, 3)
    mu_t, sd_t = t.mean(dims), t.std(dims)
    u = []
    for a in avatars:
        a = a.double().numpy()
        u.append(
            np.sum((a.mean(dims) - mu_t)**2 + (a.std(dims) - sd_t)**2) /
            np.sum(sd_t**2))
    return np.array(u)


def _np_weights(t, avatars, tau):
    z = np.maximum(_np_uncertainty(t, avatars), 1e-8)**(-1.0 / tau)
    return z / z.sum()


def test_real_dropout_path_is_the_reference_cwd():
    """K = 4 real dropout Avatars (p = 0.1, the distiller's own generator):
    each Avatar is T * mask / 0.9 for a Bernoulli(0.9) mask, and the loss is
    the weighted reference AKD CWD (student-only BatchNorm) of those
    Avatars, with the NumPy weights."""
    torch.manual_seed(0)
    distiller, student, teacher = build_one(
        dict(type='ChannelWiseDivergence', tau=2.0, loss_weight=3.0),
        dict(num_avatars=4, normalize='student'),
        student=PositiveNet(),
        teacher=PositiveNet())
    spy = PerturbationSpy(distiller.perturbation)
    out = run(distiller, student, teacher, torch.randn(2, 3, 12, 12))
    t = distiller.get_record('feat', False)
    s = distiller.get_record('feat', True)
    avatars = spy.outputs[0]
    masks = avatars != 0
    assert (t > 0).all()
    assert abs(1 - masks.float().mean().item() - 0.1) < 0.02
    torch.testing.assert_close(avatars, t * masks / 0.9)
    w = _np_weights(t, avatars, tau=4.0)
    expected = sum(wk * _reference_akd_cwd(s, a, 2.0, 3.0)
                   for wk, a in zip(w, t * masks / 0.9))
    torch.testing.assert_close(
        out['loss_a'], expected.float(), rtol=1e-5, atol=1e-6)
    assert [out[f'akd.a.w{k}'].item() for k in range(4)] == \
        pytest.approx(list(w), rel=1e-4)


def _bn(x):
    """The reference's normaliser: BatchNorm2d(C, affine=False), training
    mode."""
    return nn.BatchNorm2d(x.shape[1], affine=False).train()(x)


def _reference_pkd(s, t, loss_weight):
    """PKD (Cao et al., 2022): per-channel standardisation over N, H, W
    with the unbiased std, MSE / 2 per level, summed."""
    total = 0.0
    for a, b in zip(s, t):
        if a.shape[2:] != b.shape[2:]:
            a = F.interpolate(a, b.shape[2:], mode='bilinear')

        def norm(x):
            x = x.transpose(0, 1).reshape(x.shape[1], -1)
            return (x - x.mean(1, keepdim=True)) / (
                x.std(1, keepdim=True) + 1e-6)

        total = total + ((norm(a) - norm(b))**2).mean() / 2
    return total * loss_weight


def test_pkd_on_a_tuple_of_levels_values():
    """PKD on a tuple of three FPN-like levels, K = 2 real dropout Avatars:
    the Avatars' masks recovered per level, the weights from the geometric
    mean of the levels' drifts, the value from the reference PKD formula."""
    torch.manual_seed(0)
    distiller, student, teacher = build_one(
        PKD,
        dict(num_avatars=2, normalize=True),
        name='loss_pkd',
        student=PositiveNet(levels=3),
        teacher=PositiveNet(levels=3))
    spy = PerturbationSpy(distiller.perturbation)
    out = run(distiller, student, teacher, torch.randn(2, 3, 16, 16))
    t = distiller.get_record('feat', False)
    s = distiller.get_record('feat', True)
    assert len(spy.outputs) == 3  # one batched draw per level
    for level, avatars in zip(t, spy.outputs):
        torch.testing.assert_close(avatars, level * (avatars != 0) / 0.9)
    u = np.array([
        _np_uncertainty(level, a) for level, a in zip(t, spy.outputs)
    ])  # (levels, K)
    geo = np.exp(np.log(u).mean(0))
    w = geo**-0.25 / np.sum(geo**-0.25)
    expected = sum(
        wk * _reference_pkd([_bn(x)
                             for x in s], [_bn(a[k])
                                           for a in spy.outputs], 6.0)
        for k, wk in enumerate(w))
    torch.testing.assert_close(
        out['loss_pkd'], expected.float(), rtol=1e-5, atol=1e-6)
    assert out['akd.pkd.w0'].item() == pytest.approx(w[0], rel=1e-4)


def test_overflowing_teacher_statistics_are_reported():
    """Finite teacher values whose float32 variance overflows: the factor
    cannot be computed, and the error says so instead of naming no level."""
    distiller, student, teacher = build_one(L2_RAW, dict(num_avatars=2),
                                            *FEATURE)
    with torch.no_grad():
        teacher.feat.weight[0] *= 1e21  # values ~1e21: squares overflow
    with pytest.raises(
            FloatingPointError,
            match='statistics of its Avatars '
            'overflow float32'):
        run(distiller, student, teacher, torch.randn(2, 3, 8, 8))


def test_avatar_that_cannot_be_standardised_names_the_mapping():
    """Batch 1 with 1x1 maps: each channel holds one value."""
    distiller, student, teacher = build_one(
        L2_RAW, dict(num_avatars=2, normalize='teacher'), *FEATURE)
    with pytest.raises(
            ValueError,
            match=r"normalize='teacher': cannot "
            r'standardise model.distiller.loss_forward_mappings.'
            r'loss_a.t_feature: .*single value'):
        run(distiller, student, teacher, torch.randn(1, 3, 1, 1))
