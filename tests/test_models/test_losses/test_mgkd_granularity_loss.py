# Copyright (c) mmakd contributors. All rights reserved.
"""MGKDGranularityLoss: golden values by hand, the reference formula,
dense inputs, gradients, validation."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmakd.models.losses import MGKDGranularityLoss, mgkd_kl_divergence
from mmakd.registry import MODELS

LN3 = math.log(3.0)


def kl_two_classes(p: float, q: float) -> float:
    """KL((p, 1-p) || (q, 1-q)), written out."""
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def test_golden_tau_1():
    """T = (ln 3, 0) gives softmax (3/4, 1/4); S = (0, 0) gives (1/2, 1/2).
    KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.304099 - 0.173287 = 0.130812, and
    tau^2 = 1."""
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[LN3, 0.0]])
    loss = MGKDGranularityLoss(tau=1.0)(s, t)
    assert kl_two_classes(0.75, 0.5) == pytest.approx(0.130812, abs=1e-6)
    assert loss.item() == pytest.approx(0.130812, abs=1e-5)


def test_golden_tau_2_and_weight():
    """At tau = 2, T / 2 = (ln 3 / 2, 0) = (ln sqrt 3, 0): softmax
    (sqrt3 / (sqrt3 + 1), 1 / (sqrt3 + 1)) = (0.633975, 0.366025); S / 2 is
    uniform. KL = 0.633975 ln 1.267949 + 0.366025 ln 0.732051
    = 0.633975 * 0.237401 - 0.366025 * 0.311905 = 0.150506 - 0.114165
    = 0.036341; times tau^2 = 4 gives 0.145363; loss_weight 0.5 halves it.
    """
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    assert p == pytest.approx(0.633975, abs=1e-6)
    assert 4 * kl_two_classes(p, 0.5) == pytest.approx(0.145363, abs=1e-6)
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[LN3, 0.0]])
    loss = MGKDGranularityLoss(tau=2.0, loss_weight=0.5)(s, t)
    assert loss.item() == pytest.approx(0.5 * 0.145363, abs=1e-5)


def test_batch_mean_and_reference_formula():
    """A second sample with S = T adds KL 0, so the batch mean halves; and
    the loss is the reference code's
    kl_div(log_softmax(S/tau), softmax(T/tau), 'batchmean') * tau^2."""
    s = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    t = torch.tensor([[LN3, 0.0], [1.0, 2.0]])
    loss = MGKDGranularityLoss(tau=1.0)(s, t)
    assert loss.item() == pytest.approx(0.130812 / 2, abs=1e-5)

    torch.manual_seed(0)
    s, t = torch.randn(5, 64), torch.randn(5, 64) * 3
    for tau in (2.0, 8.0):
        reference = F.kl_div(
            F.log_softmax(s / tau, dim=1),
            F.softmax(t / tau, dim=1),
            reduction='batchmean') * tau * tau
        torch.testing.assert_close(
            MGKDGranularityLoss(tau=tau)(s, t), reference)


def test_dense_inputs_average_over_pixels():
    """(N=1, C=2, H=1, W=2): pixel 0 is the tau = 1 case above, pixel 1 has
    S = T, so the loss is 0.130812 / 2, and it equals the 2-D loss of the
    pixels laid out as samples (position-wise, resolution-free)."""
    s = torch.tensor([[[[0.0, 5.0]], [[0.0, -1.0]]]])
    t = torch.tensor([[[[LN3, 5.0]], [[0.0, -1.0]]]])
    loss = MGKDGranularityLoss(tau=1.0)(s, t)
    assert loss.item() == pytest.approx(0.130812 / 2, abs=1e-5)
    torch.manual_seed(1)
    s, t = torch.randn(2, 7, 3, 4), torch.randn(2, 7, 3, 4)
    flat = lambda x: x.permute(0, 2, 3, 1).reshape(-1, 7)  # noqa: E731
    torch.testing.assert_close(
        mgkd_kl_divergence(s, t, 4.0),
        mgkd_kl_divergence(flat(s), flat(t), 4.0))


def test_gradient_by_hand_reaches_only_the_student():
    """d(tau^2 KL)/dS = tau * (softmax(S/tau) - softmax(T/tau)) / N; for the
    tau = 1 case: (1/2 - 3/4, 1/2 - 1/4) = (-0.25, 0.25). The teacher input
    gets no gradient (detached)."""
    s = torch.tensor([[0.0, 0.0]], requires_grad=True)
    t = torch.tensor([[LN3, 0.0]], requires_grad=True)
    MGKDGranularityLoss(tau=1.0)(s, t).backward()
    torch.testing.assert_close(s.grad, torch.tensor([[-0.25, 0.25]]))
    assert t.grad is None
    s = torch.tensor([[0.0, 0.0]], requires_grad=True)
    MGKDGranularityLoss(tau=2.0)(s, torch.tensor([[LN3, 0.0]])).backward()
    p = math.sqrt(3) / (math.sqrt(3) + 1)
    torch.testing.assert_close(s.grad,
                               torch.tensor([[2 * (0.5 - p), 2 * (p - 0.5)]]))


def test_identical_inputs_give_zero_and_half_precision_runs_in_fp32():
    x = torch.randn(3, 5).half()
    loss = MGKDGranularityLoss(tau=2.0)(x, x)
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(
        0.0, abs=1e-6)


def test_autocast_computes_in_float32(device, autocast_dtype):
    """Under autocast (bfloat16 on the CPU, float16 on CUDA), on inputs in
    that dtype as a model under autocast gives them: a float32 loss equal
    to the float64 formula on the same values (half-precision softmaxes
    would be off by 1e-4 to 1e-2)."""
    tau = 2.0
    g = torch.Generator().manual_seed(0)
    s = (torch.randn(8, 64, generator=g) * 4).to(device, autocast_dtype)
    t = (torch.randn(8, 64, generator=g) * 4).to(device, autocast_dtype)
    with torch.autocast(device.type, dtype=autocast_dtype):
        loss = MGKDGranularityLoss(tau=tau)(s, t)
    assert loss.dtype == torch.float32 and loss.device == device
    assert torch.isfinite(loss) and loss > 0
    reference = F.kl_div(
        F.log_softmax(s.double() / tau, dim=1),
        F.softmax(t.double() / tau, dim=1),
        reduction='batchmean') * tau * tau
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=0)


@pytest.mark.parametrize('tau', [0, -1.0, True, '2', None])
def test_bad_temperature_names_the_key(tau):
    with pytest.raises(ValueError, match='MGKDGranularityLoss.tau'):
        MGKDGranularityLoss(tau=tau)


def test_shape_mismatch():
    with pytest.raises(ValueError, match='same shape'):
        MGKDGranularityLoss()(torch.randn(2, 64), torch.randn(2, 256))


def test_builds_from_the_registry():
    loss = MODELS.build(dict(type='MGKDGranularityLoss', tau=8.0))
    assert isinstance(loss, MGKDGranularityLoss) and loss.tau == 8.0
    assert 'tau=8.0' in repr(loss)
