# Copyright (c) mmakd contributors. All rights reserved.
"""AvatarDistiller when the teacher record has no variance (issue 24,
point 5): a batch of one ``(1, C)``, or constant teacher channels. The
uncertainty ``u`` is undefined there; the Avatars get equal weights, with
one warning per loss, never a false divergence."""
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmakd.models import AvatarDistiller
from mmakd.testing import CountHostSyncs
from helpers import PerturbationSpy, logged_messages

pytestmark = pytest.mark.usefixtures('fresh_message_hub')

KEY = 'model.distiller.avatars.uncertainty'


@pytest.fixture
def warnings_logged():
    """The messages the distiller logs at WARNING level or above."""
    with logged_messages(logging.WARNING) as messages:
        yield messages


class Logits(nn.Module):
    """``feat`` is a linear layer on ``(N, C)`` inputs; with zero weights
    (a teacher that ignores its input) every row is its bias.

    Note: equal input rows are no substitute: a GEMM may round rows
    differently (1 ulp here), which leaves a variance of about 1e-15, so
    ``u`` is defined (finite, about 1e13) and the weights are the usual
    drift ratios."""

    def __init__(self, c=6, zero=False):
        super().__init__()
        self.feat = nn.Linear(c, c)
        if zero:
            with torch.no_grad():
                self.feat.weight.zero_()
                self.feat.bias.copy_(torch.linspace(-20.0, 30.0, c))

    def forward(self, x):
        return self.feat(x)


class ConstantMaps(nn.Module):
    """``feat`` is a 1x1 conv; with zero weights (the teacher) each channel
    of its output is its bias: constant over batch and positions."""

    def __init__(self, c=6, zero=False):
        super().__init__()
        self.feat = nn.Conv2d(3, c, 1)
        if zero:
            with torch.no_grad():
                self.feat.weight.zero_()
                self.feat.bias.copy_(torch.linspace(5.0, 30.0, c))

    def forward(self, x):
        return self.feat(x)


def _build(student, teacher, normalize, check_finite, num_avatars=4):
    distiller = AvatarDistiller(
        avatars=dict(
            perturbation=dict(type='AvatarDropout', p=(0.05, 0.1, 0.2, 0.4)),
            num_avatars=num_avatars,
            normalize=normalize,
            check_finite=check_finite),
        student_recorders=dict(feat=dict(type='ModuleOutputs', source='feat')),
        teacher_recorders=dict(feat=dict(type='ModuleOutputs', source='feat')),
        distill_losses=dict(loss_kd=dict(type='L2Loss', normalize=False)),
        loss_forward_mappings=dict(
            loss_kd=dict(
                s_feature=dict(from_student=True, recorder='feat'),
                t_feature=dict(from_student=False, recorder='feat'))))
    distiller.prepare_from_student(student)
    distiller.prepare_from_teacher(teacher)
    return distiller


def _step(distiller, student, teacher, x):
    with distiller.teacher_recorders, torch.no_grad():
        teacher(x)
    with distiller.student_recorders:
        student(x)
    return distiller.compute_distill_losses()


def _standardize(x):
    dims = [d for d in range(x.dim()) if d != 1]
    var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5)


def _expected_loss(student_out, avatars, normalize):
    """The mean over Avatars of MMRazor's L2Loss (sum of squares / N),
    after standardising both sides when ``normalize``."""
    s = _standardize(student_out) if normalize else student_out
    total = 0.0
    for a in avatars:
        a = _standardize(a) if normalize else a
        total = total + F.mse_loss(s, a, reduction='sum') / s.shape[0]
    return total / len(avatars)


CASES = {
    # name: (student, teacher, input, the only normalize it allows)
    'batch-of-one':
    (lambda: Logits(), lambda: Logits(), lambda: torch.randn(1, 6) * 3, False),
    'constant-logits': (lambda: Logits(), lambda: Logits(zero=True),
                        lambda: torch.randn(4, 6) * 3, None),
    'constant-channels':
    (lambda: ConstantMaps(), lambda: ConstantMaps(zero=True),
     lambda: torch.randn(2, 3, 4, 4), None),
}


@pytest.mark.parametrize('check_finite', [True, False])
@pytest.mark.parametrize(
    'case,normalize',
    [(case, normalize) for case, (*_, only) in CASES.items()
     for normalize in (False, True) if only in (None, normalize)])
def test_no_teacher_variance_gives_equal_weights_and_one_warning(
        case, normalize, check_finite, warnings_logged):
    """Three iterations: equal weights, the loss of the mean over the
    Avatars (independent formula), u logged as nan, one warning. A batch
    of one is standardised nowhere (see the next test)."""
    _three_iterations_without_variance(case, normalize, check_finite,
                                       warnings_logged)


def test_constant_teacher_is_warned_about_once_on_the_device(
        device, warnings_logged):
    """The same on ``--device``: on CUDA the flags of constant channels
    come by a non-blocking copy, read once their event says they arrived
    (a later call), still one warning and equal weights."""
    _three_iterations_without_variance('constant-channels', True, True,
                                       warnings_logged, device)


def _three_iterations_without_variance(case,
                                       normalize,
                                       check_finite,
                                       warnings_logged,
                                       device='cpu'):
    make_student, make_teacher, make_x, _ = CASES[case]
    torch.manual_seed(0)
    student, teacher = make_student().to(device), make_teacher().to(device)
    distiller = _build(student, teacher, normalize, check_finite)
    spy = PerturbationSpy(distiller.perturbation)
    for it in range(3):
        x = make_x().to(device)
        out = _step(distiller, student, teacher, x)
        weights = [out[f'akd.kd.w{k}'].item() for k in range(4)]
        assert weights == [0.25] * 4, (it, weights)
        assert out['akd.kd.wmax_over_wmin'].item() == 1.0
        assert torch.isnan(out['akd.kd.u'])  # undefined, logged as nan
        loss = out['loss_kd']
        assert torch.isfinite(loss) and loss.requires_grad
        t = distiller.get_record('feat', False)
        s = distiller.get_record('feat', True)
        expected = _expected_loss(s.detach(), spy.outputs[-1], normalize)
        torch.testing.assert_close(
            loss.detach(), expected, rtol=1e-5, atol=1e-5)
        # the teacher really has no variance in any channel
        dims = [d for d in range(t.dim()) if d != 1]
        assert torch.var(t, dim=dims, correction=0).sum() == 0
    ours = [m for m in warnings_logged if KEY in m]
    assert len(ours) == 1, warnings_logged
    message = ours[0]
    assert 'loss_forward_mappings.loss_kd.t_feature' in message
    assert f'batch size {tuple(t.shape)[0]}' in message
    assert 'equal weights 1/4' in message
    if case == 'batch-of-one':
        assert 'single value' in message
    else:
        assert 'constant' in message


@pytest.mark.parametrize('normalize', [True, 'student', 'teacher'])
def test_batch_of_one_with_normalize_is_an_error_naming_it(normalize):
    """Standardising (1, C) per channel gives zeros: an error naming the
    key and the batch size, not a divergence."""
    torch.manual_seed(0)
    student, teacher = Logits(), Logits()
    distiller = _build(student, teacher, normalize, True)
    with pytest.raises(ValueError) as info:
        _step(distiller, student, teacher, torch.randn(1, 6))
    message = str(info.value)
    assert 'model.distiller.avatars.normalize=' in message
    assert 'batch size 1' in message and 'single value' in message


def test_no_false_divergence_and_no_extra_synchronisation(device):
    """The undefined case costs no host synchronisation beyond the single
    finiteness check (on ``--device``: on CUDA its flags are copied
    without one), and values near 30 (whose old u overflowed to inf) are
    not reported as a diverged teacher."""
    torch.manual_seed(0)
    student = ConstantMaps().to(device)
    teacher = ConstantMaps(zero=True).to(device)
    distiller = _build(student, teacher, False, True)
    x = torch.randn(2, 3, 4, 4).to(device)
    with distiller.teacher_recorders, torch.no_grad():
        teacher(x)
    with distiller.student_recorders:
        student(x)
    with CountHostSyncs() as syncs:
        out = distiller.compute_distill_losses()
    assert syncs.count == 1
    assert torch.isfinite(out['loss_kd'])


def test_levels_without_variance_are_left_out_of_u():
    """A tuple of levels where only the last (1x1 at batch 1) has no
    variance: u is the first level's, and the weights follow it."""

    class TwoLevels(nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.feat = nn.Identity()

        def forward(self, x):
            y = torch.exp(0.3 * self.conv(x))
            return self.feat((y, F.adaptive_avg_pool2d(y, 1)))

    torch.manual_seed(0)
    student, teacher = TwoLevels(), TwoLevels()
    distiller = _build(student, teacher, False, True)
    distiller.distill_losses['loss_kd'] = _SumL2()
    spy = PerturbationSpy(distiller.perturbation)
    out = _step(distiller, student, teacher, torch.randn(1, 3, 6, 6))
    t = distiller.get_record('feat', False)[0]
    a = spy.outputs[0]
    dims = (0, 2, 3)
    var_t, mu_t = torch.var_mean(t, dims, correction=0)
    var_a, mu_a = torch.var_mean(a, (1, 3, 4), correction=0)
    u = ((mu_a - mu_t)**2 + (var_a.sqrt() - var_t.sqrt())**2).sum(1) \
        / var_t.sum()
    z = u**-0.25
    w = [out[f'akd.kd.w{k}'].item() for k in range(4)]
    assert w == pytest.approx((z / z.sum()).tolist(), rel=1e-5)
    assert w[0] > w[-1]  # p = 0.05 weighs more than p = 0.4
    assert out['akd.kd.u'].item() == pytest.approx(u.mean().item(), rel=1e-5)


class _SumL2(nn.Module):
    """L2 summed over the levels of a tuple."""

    def forward(self, s_feature, t_feature):
        return sum(((s - t)**2).sum() for s, t in zip(s_feature, t_feature))


class _Event:
    """Stands for an accelerator event: ``query()`` says whether the copy
    of the flags has arrived."""

    def __init__(self):
        self.done = False

    def query(self):
        return self.done


def test_flags_copied_from_an_accelerator_are_read_once_arrived(
        warnings_logged):
    """On an accelerator the flags come by a non-blocking copy: they are
    read (and warned about) only when their event says they arrived, and
    kept until then, once per loss."""
    distiller = _build(Logits(), Logits(), False, True)
    event = _Event()
    flags = torch.tensor([True])  # level 0 has no variance
    distiller.teacher_checks.undefined_reads.append(
        ('loss_kd', 't_feature', [(4, 6)], flags, event))
    distiller.teacher_checks.read_undefined()
    assert [m for m in warnings_logged if KEY in m] == []
    assert len(distiller.teacher_checks.undefined_reads) == 1
    # a second entry for the same loss is not staged while one waits
    distiller.teacher_checks.watch_undefined('loss_kd', 't_feature',
                                             [torch.ones(4, 6)],
                                             [torch.tensor(False)])
    assert len(distiller.teacher_checks.undefined_reads) == 1
    event.done = True
    distiller.teacher_checks.read_undefined()
    ours = [m for m in warnings_logged if KEY in m]
    assert len(ours) == 1 and 'batch size 4' in ours[0]
    assert 'constant in every channel' in ours[0]
    assert distiller.teacher_checks.undefined_reads == []
