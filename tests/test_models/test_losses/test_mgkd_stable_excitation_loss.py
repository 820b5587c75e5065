# Copyright (c) mmakd contributors. All rights reserved.
"""MGKDStableExcitationLoss: the averaged target by hand, the reference
formula, gradients, validation."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmakd.models.losses import MGKDStableExcitationLoss
from mmakd.registry import MODELS

LN3 = math.log(3.0)


def test_golden_target_and_loss():
    """T = (3 ln 3, 0) and both tube decoders (0, 0): the target is
    E = (ln 3, 0), softmax (3/4, 1/4). With S = (0, 0) at tau = 1:
    KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.130812. KD on T alone would use
    softmax(T) = (27/28, 1/28): KL = 27/28 ln(27/14) + 1/28 ln(1/14)
    = 0.633323 - 0.094252 = 0.539071, a different value."""
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[3 * LN3, 0.0]])
    zeros = torch.zeros(1, 2)
    loss_fn = MGKDStableExcitationLoss(tau=1.0)
    target = loss_fn.target(t, zeros, zeros)
    torch.testing.assert_close(target, torch.tensor([[LN3, 0.0]]))
    assert loss_fn(s, t, zeros, zeros).item() == pytest.approx(
        0.130812, abs=1e-5)
    kd_alone = 27 / 28 * math.log(27 / 14) + 1 / 28 * math.log(1 / 14)
    assert kd_alone == pytest.approx(0.539071, abs=1e-6)
    assert loss_fn(s, t, t, t).item() == pytest.approx(kd_alone, abs=1e-5)


def test_is_kd_on_the_mean_of_three_logits():
    """The reference (student_stable.py): stable_out = (t + ak + dk) / 3,
    then DistillKL(T=4) = kl_div(log_softmax(s/4), softmax(stable/4),
    batchmean) * 16, times the weight."""
    torch.manual_seed(0)
    s, t, dn, dw = (torch.randn(4, 10) * 3 for _ in range(4))
    stable = (t + dn + dw) / 3
    reference = F.kl_div(
        F.log_softmax(s / 4, dim=1),
        F.softmax(stable / 4, dim=1),
        reduction='batchmean') * 16 * 0.8
    loss = MGKDStableExcitationLoss(tau=4.0, loss_weight=0.8)(s, t, dn, dw)
    torch.testing.assert_close(loss, reference)


def test_dense_logits():
    torch.manual_seed(2)
    s, t, dn, dw = (torch.randn(2, 19, 4, 6) for _ in range(4))
    loss = MGKDStableExcitationLoss(tau=1.0)(s, t, dn, dw)
    flat = lambda x: x.permute(0, 2, 3, 1).reshape(-1, 19)  # noqa: E731
    expected = MGKDStableExcitationLoss(tau=1.0)(flat(s), flat(t), flat(dn),
                                                 flat(dw))
    torch.testing.assert_close(loss, expected)


def test_gradient_reaches_only_the_student():
    s = torch.tensor([[0.0, 0.0]], requires_grad=True)
    teacher = [
        torch.tensor([[3 * LN3, 0.0]], requires_grad=True),
        torch.zeros(1, 2, requires_grad=True),
        torch.zeros(1, 2, requires_grad=True)
    ]
    MGKDStableExcitationLoss(tau=1.0)(s, *teacher).backward()
    # softmax(S) - softmax(E) = (1/2 - 3/4, 1/2 - 1/4)
    torch.testing.assert_close(s.grad, torch.tensor([[-0.25, 0.25]]))
    assert all(t.grad is None for t in teacher)


def test_validation():
    with pytest.raises(ValueError, match='MGKDStableExcitationLoss.tau'):
        MGKDStableExcitationLoss(tau=0)
    loss = MODELS.build(dict(type='MGKDStableExcitationLoss', tau=4))
    x = torch.randn(2, 5)
    with pytest.raises(ValueError, match='preds_T_narrow and preds_T_wide'):
        loss(x, x)
    with pytest.raises(ValueError, match='num_classes'):
        loss(x, x, torch.randn(2, 4), x)
