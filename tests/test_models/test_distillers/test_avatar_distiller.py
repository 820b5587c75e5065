# Copyright (c) mmakd contributors. All rights reserved.
"""AvatarDistiller: golden values, gradients, MMRazor losses, validation."""
import json
import math
import os.path as osp
import uuid
from typing import Dict, Optional

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from torch import nn

from mmakd.models import AvatarDistiller, BaseAvatarPerturbation
from mmakd.registry import MODELS
from helpers import REPO

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


@pytest.fixture(autouse=True)
def fresh_message_hub():
    """No runner: seed and iteration are not in the hub."""
    MessageHub.get_instance(f'akd-test-{uuid.uuid4()}')


def build(losses: Dict, mappings: Dict, avatars: Optional[Dict] = None,
          connectors: Optional[Dict] = None, student=None, teacher=None,
          source='feat'):
    distiller = AvatarDistiller(
        avatars=avatars,
        student_recorders=dict(
            feat=dict(type='ModuleOutputs', source=source)),
        teacher_recorders=dict(
            feat=dict(type='ModuleOutputs', source=source)),
        distill_losses=losses,
        loss_forward_mappings=mappings,
        connectors=connectors)
    student = student or Net()
    teacher = teacher or Net()
    distiller.prepare_from_student(student)
    distiller.prepare_from_teacher(teacher)
    return distiller, student, teacher


def run(distiller, student, teacher, x_s, x_t=None):
    with distiller.teacher_recorders, torch.no_grad():
        teacher(x_s if x_t is None else x_t)
    with distiller.student_recorders:
        student(x_s)
    return distiller.compute_distill_losses()


def pair(loss_cfg, s_key='preds_S', t_key='preds_T', **t_extra):
    return (dict(loss_a=loss_cfg),
            dict(loss_a={
                s_key: dict(from_student=True, recorder='feat'),
                t_key: dict(from_student=False, recorder='feat', **t_extra)
            }))


# T: N=2, C=2, H=1, W=2 (see test_statistics.py for its statistics).
T = torch.tensor([[[[1., 3.]], [[0., 0.]]], [[[5., 7.]], [[2., 2.]]]])
# S swaps the two values of channel 0 in each sample: after standardising,
# channel 0 of S - T is (+2, -2, +2, -2) / sqrt(5), channel 1 is 0.
S = torch.tensor([[[[3., 1.]], [[0., 0.]]], [[[7., 5.]], [[2., 2.]]]])


def hand_case(tau=1.0, uncertainty=True):
    losses, mappings = pair(
        dict(type='L2Loss', normalize=False, loss_weight=1.0), 's_feature',
        't_feature')
    avatars = dict(
        num_avatars=2,
        perturbation=dict(type='TestFixedAvatars', factors=(1.0, 2.0)),
        normalize=True,
        uncertainty=dict(tau=tau) if uncertainty else None)
    return build(losses, mappings, avatars, student=identity_net(),
                 teacher=identity_net())


def test_golden_l2_by_hand():
    """Avatars T and 2T standardise to the same tensor, so the combined loss
    is the L2 loss of norm(S) and norm(T): sum((S-T)^2) / N
    = 4 * (2/sqrt(5))^2 / 2 = 1.6. Their uncertainties are 0 and ~1, so the
    weights are softmax(-(0, 1)) = (0.7311, 0.2689)."""
    distiller, student, teacher = hand_case()
    out = run(distiller, student, teacher, S, T)
    assert out['loss_a'].item() == pytest.approx(1.6, abs=1e-4)
    assert out['akd.a.w0'].item() == pytest.approx(1 / (1 + math.exp(-1)),
                                                   abs=1e-4)
    assert out['akd.a.w1'].item() == pytest.approx(0.2689, abs=1e-4)
    assert out['akd.a.u'].item() == pytest.approx(0.5, abs=1e-4)
    assert not any('loss' in k for k in out if k.startswith('akd.'))


def test_golden_equal_weights_without_uncertainty():
    distiller, student, teacher = hand_case(uncertainty=False)
    out = run(distiller, student, teacher, S, T)
    assert out['loss_a'].item() == pytest.approx(1.6, abs=1e-4)
    assert out['akd.a.w0'].item() == 0.5 and out['akd.a.w1'].item() == 0.5


def test_golden_weighting_with_unequal_losses():
    """Without normalisation the two Avatars give different losses:
    L(S, T) = sum((S-T)^2)/N = 4*4/2 = 8 and
    L(S, 2T) = sum((S-2T)^2)/N, both checked against the weighted sum."""
    losses, mappings = pair(
        dict(type='L2Loss', normalize=False), 's_feature', 't_feature')
    distiller, student, teacher = build(
        losses, mappings,
        dict(num_avatars=2,
             perturbation=dict(type='TestFixedAvatars', factors=(1.0, 2.0)),
             normalize=False, uncertainty=dict(tau=0.5)),
        student=identity_net(), teacher=identity_net())
    out = run(distiller, student, teacher, S, T)
    l1 = ((S - T)**2).sum() / 2
    l2 = ((S - 2 * T)**2).sum() / 2
    assert l1.item() == 8.0
    w0, w1 = out['akd.a.w0'].item(), out['akd.a.w1'].item()
    assert w0 / w1 == pytest.approx(math.exp(out['akd.a.u'].item() * 2 * 2),
                                    rel=1e-3)  # exp((u1 - u0) / tau)
    assert out["loss_a"].item() == pytest.approx((w0 * l1 + w1 * l2).item(),
                                                rel=1e-5)


def _reference_akd_cwd(s, avatar, tau, loss_weight):
    """The reference AKD_ChannelWiseDivergence, rewritten independently:
    BatchNorm2d(affine=False) on the student only, the raw Avatar as the
    teacher distribution."""
    n, c, h, w = s.shape
    s = nn.BatchNorm2d(c, affine=False).train()(s)
    p_t = F.softmax(avatar.reshape(-1, h * w) / tau, dim=1)
    cost = torch.sum(p_t * F.log_softmax(avatar.reshape(-1, h * w) / tau, 1)
                     - p_t * F.log_softmax(s.reshape(-1, h * w) / tau, 1))
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
    losses, mappings = pair(
        dict(type='ChannelWiseDivergence', tau=2.0, loss_weight=3.0))
    distiller, _, _ = build(
        losses, mappings,
        dict(num_avatars=1,
             perturbation=dict(
                 type='TestFixedAvatars', avatars=avatar.unsqueeze(0)),
             normalize='student'),
        student=student, teacher=teacher)
    out = run(distiller, student, teacher, x)
    expected = _reference_akd_cwd(s_feat, avatar, 2.0, 3.0)
    torch.testing.assert_close(out['loss_a'], expected, rtol=1e-5,
                               atol=1e-6)
    assert out['akd.a.w0'].item() == 1.0


def _golden_inputs():
    """Inputs without RNG: deterministic arithmetic patterns."""
    idx = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    s = torch.sin(0.37 * idx) * 2 + 0.5
    t = torch.cos(0.23 * idx) * 3 - 1
    keep = ((idx.long() * 7) % 5 != 0).float()
    avatars = torch.stack([t * keep / 0.8, t * (1 - 0.3 * torch.sin(idx))])
    return s, t, avatars


@pytest.mark.parametrize('case', ['cwd_both', 'cwd_student', 'kl_both',
                                  'l2_teacher', 'maskd_both'])
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
    keys = ('s_feature', 't_feature') if loss_cfg['type'] == 'L2Loss' \
        else ('preds_S', 'preds_T')
    losses, mappings = pair(loss_cfg, *keys)
    distiller, _, _ = build(
        losses, mappings,
        dict(num_avatars=2,
             perturbation=dict(type='TestFixedAvatars', avatars=avatars),
             normalize=golden['normalize'], uncertainty=dict(tau=1.0)),
        student=student, teacher=teacher)
    out = run(distiller, student, teacher, torch.zeros(2, 3, 4, 5))
    assert out['loss_a'].item() == pytest.approx(golden['value'], rel=1e-5)
    assert [out['akd.a.w0'].item(), out['akd.a.w1'].item()] == \
        pytest.approx(golden['weights'], rel=1e-5)


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------
def test_gradients_reach_the_student_only():
    torch.manual_seed(0)
    losses, mappings = pair(dict(type='ChannelWiseDivergence', tau=1.0))
    student, teacher = Net(3, 8), Net(3, 8)
    for p in teacher.parameters():
        p.requires_grad_(True)  # even a trainable teacher gets nothing
    distiller, _, _ = build(losses, mappings, dict(num_avatars=4),
                            student=student, teacher=teacher)
    x = torch.randn(2, 3, 8, 8)
    with distiller.teacher_recorders:
        teacher(x)  # with grad enabled on purpose
    with distiller.student_recorders:
        student(x)
    out = distiller.compute_distill_losses()
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
    losses = dict(loss_a=dict(type='L2Loss'))
    mappings = dict(loss_a=dict(
        s_feature=dict(from_student=True, recorder='feat'),
        t_feature=dict(from_student=False, recorder='feat',
                       connector='t_align')))
    connectors = dict(t_align=dict(
        type='ConvModuleConnector', in_channel=8, out_channel=8,
        kernel_size=1))
    student, teacher = Net(3, 8), Net(3, 8)
    for p in teacher.parameters():
        p.requires_grad_(True)
    distiller, _, _ = build(losses, mappings, dict(num_avatars=3),
                            connectors=connectors, student=student,
                            teacher=teacher)
    x = torch.randn(2, 3, 8, 8)
    with distiller.teacher_recorders:
        teacher(x)
    with distiller.student_recorders:
        student(x)
    distiller.compute_distill_losses()['loss_a'].backward()
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
        self.neck = nn.ModuleList(
            [nn.Conv2d(16, 16, 1) for _ in range(3)])

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
    losses = dict(loss_pkd=dict(type='PKDLoss', loss_weight=6.0))
    mappings = dict(loss_pkd=dict(
        preds_S=dict(from_student=True, recorder='feat'),
        preds_T=dict(from_student=False, recorder='feat')))
    student, teacher = NeckWrapper(), NeckWrapper()
    distiller, _, _ = build(losses, mappings, dict(num_avatars=3),
                            student=student, teacher=teacher, source='neck')
    out = run(distiller, student, teacher, torch.randn(2, 3, 16, 16))
    assert torch.isfinite(out['loss_pkd'])
    assert out['loss_pkd'].requires_grad
    assert sum(out[f'akd.pkd.w{k}'].item() for k in range(3)) == \
        pytest.approx(1.0)


@pytest.mark.parametrize('loss_cfg,shape', [
    (dict(type='ChannelWiseDivergence', tau=1.0), (2, 19, 8, 16)),
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

    losses, mappings = pair(loss_cfg)
    student, teacher = Logits(), Logits()
    distiller, _, _ = build(losses, mappings, dict(num_avatars=2),
                            student=student, teacher=teacher)
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
     dict(s_mgd=dict(type='MGDConnector', student_channels=8,
                     teacher_channels=8, lambda_mgd=0.65))),
    (dict(type='PKDLoss', loss_weight=6.0), ('preds_S', 'preds_T'), None),
    (dict(type='L2Loss', loss_weight=1.0), ('s_feature', 't_feature'), None),
    (dict(type='KLDivergence', tau=1.0), ('preds_S', 'preds_T'), None),
    (dict(type='MasKDLoss', channels=8, num_tokens=4),
     ('preds_S', 'preds_T'), None),
])
def test_mmrazor_losses_train(loss_cfg, keys, connectors):
    torch.manual_seed(0)
    losses, mappings = pair(loss_cfg, *keys)
    if connectors:
        mappings['loss_a'][keys[0]]['connector'] = 's_mgd'
    student, teacher = Net(3, 8), Net(3, 8)
    distiller, _, _ = build(losses, mappings, dict(num_avatars=2),
                            connectors=connectors, student=student,
                            teacher=teacher)
    out = run(distiller, student, teacher, torch.randn(2, 3, 8, 8))
    assert torch.isfinite(out['loss_a']) and out['loss_a'] > 0
    out['loss_a'].backward()
    assert student.feat.weight.grad.abs().sum() > 0


def _fbkd_case(normalize):
    losses = dict(loss_s0=dict(type='FBKDLoss'))
    mappings = dict(loss_s0=dict(
        s_input=dict(from_student=True, recorder='feat', connector='s0'),
        t_input=dict(from_student=False, recorder='feat', connector='t0')))
    common = dict(in_channels=16, reduction=4, mode='dot_product',
                  sub_sample=True, maxpool_stride=2)
    connectors = dict(s0=dict(type='FBKDStudentConnector', **common),
                      t0=dict(type='FBKDTeacherConnector', **common))
    student, teacher = Net(3, 16), Net(3, 16)
    return build(losses, mappings,
                 dict(num_avatars=2, normalize=normalize),
                 connectors=connectors, student=student, teacher=teacher)


def test_fbkd_with_normalisation_is_refused_with_the_reason():
    distiller, student, teacher = _fbkd_case(normalize=True)
    with pytest.raises(ValueError) as info:
        run(distiller, student, teacher, torch.randn(2, 3, 16, 16))
    message = str(info.value)
    assert 'FBKDLoss' in message and 'loss_s0' in message
    assert 'a tuple of 6' in message and 'a tuple of 5' in message
    assert 'normalize=False' in message


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
    return build(losses, mappings, avatars, student=Net(3, 8),
                 teacher=Net(3, 8))


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
    from mmakd.models.distillers import avatar_distiller as module
    distiller, student, teacher = _two_losses(dict(num_avatars=2))
    hub = MessageHub.get_current_instance()
    x = torch.randn(2, 3, 8, 8)

    def loss_at(seed, iteration, rank=0):
        hub.update_info('seed', seed)
        hub.update_info('iter', iteration)
        monkeypatch.setattr(module, 'get_rank', lambda: rank)
        distiller._rng_step = (None, 0)
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
    (dict(perturbation=dict(type='AvatarDropout', num_avatars=3)),
     ValueError, r'perturbation.num_avatars=3 contradicts'),
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
    (dict(num_avatar=2), KeyError, r"avatars has unknown keys \['num_avatar'\]"),
])
def test_invalid_avatars_settings_name_the_key(avatars, error, match):
    with pytest.raises(error, match=match):
        _two_losses(avatars)


def test_loss_without_teacher_input_is_refused():
    losses = dict(loss_a=dict(type='L2Loss'))
    mappings = dict(loss_a=dict(
        s_feature=dict(from_student=True, recorder='feat'),
        t_feature=dict(from_student=True, recorder='feat')))
    with pytest.raises(ValueError, match=r"L2Loss 'loss_a' has 0 teacher"):
        build(losses, mappings, dict(num_avatars=2))


def test_student_teacher_shape_mismatch_names_the_mapping():
    losses, mappings = pair(dict(type='ChannelWiseDivergence', tau=1.0))
    distiller, student, teacher = build(
        losses, mappings, dict(num_avatars=2), student=Net(3, 4),
        teacher=Net(3, 8))
    with pytest.raises(ValueError) as info:
        run(distiller, student, teacher, torch.randn(2, 3, 8, 8))
    message = str(info.value)
    assert 'model.distiller.loss_forward_mappings.loss_a' in message
    assert "'preds_S' has shape (2, 4, 8, 8)" in message
    assert "'preds_T' has shape (2, 8, 8, 8)" in message
    assert 'connector' in message


def test_non_finite_teacher_is_reported():
    losses, mappings = pair(dict(type='ChannelWiseDivergence', tau=1.0))
    distiller, student, teacher = build(losses, mappings, dict(num_avatars=2),
                                        student=Net(3, 8), teacher=Net(3, 8))
    with torch.no_grad():
        teacher.feat.bias[2] = float('nan')
    with pytest.raises(FloatingPointError,
                       match=r"loss_a.preds_T \(recorder 'feat'\) holds NaN"):
        run(distiller, student, teacher, torch.randn(2, 3, 8, 8))


def test_bf16_autocast_keeps_statistics_and_loss_in_fp32():
    losses, mappings = pair(dict(type='ChannelWiseDivergence', tau=1.0))
    distiller, student, teacher = build(losses, mappings, dict(num_avatars=4),
                                        student=Net(3, 8), teacher=Net(3, 8))
    x = torch.randn(2, 3, 8, 8) * 50
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = run(distiller, student, teacher, x)
    assert distiller.get_record('feat', False).dtype == torch.bfloat16
    assert out['loss_a'].dtype == torch.float32
    assert torch.isfinite(out['loss_a'])
    reference = run(distiller, student, teacher, x)['loss_a']
    assert out['loss_a'].item() == pytest.approx(reference.item(), rel=0.1)


def test_extra_repr():
    distiller, _, _ = _two_losses(dict(num_avatars=4, normalize='student'))
    assert "num_avatars=4, normalize='student', tau=1.0" in repr(distiller)
