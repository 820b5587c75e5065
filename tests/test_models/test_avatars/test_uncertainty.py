# Copyright (c) mmakd contributors. All rights reserved.
"""Golden values of the statistics behind AKD's uncertainty-aware factor,
worked out by hand in the comments."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from mmakd.models.avatars import (avatar_dropout, avatar_uncertainty,
                                  avatar_weights, channel_moments,
                                  combine_uncertainty, standardize)

# T has N=2, C=2, H=1, W=2.
#   channel 0 holds 1, 3 | 5, 7: mean 4, variance (9+1+1+9)/4 = 5
#   channel 1 holds 0, 0 | 2, 2: mean 1, variance 1
T = torch.tensor([[[[1., 3.]], [[0., 0.]]], [[[5., 7.]], [[2., 2.]]]])


def test_channel_moments_by_hand():
    mean, std = channel_moments(T)
    torch.testing.assert_close(mean, torch.tensor([4., 1.]))
    torch.testing.assert_close(std, torch.tensor([math.sqrt(5), 1.]))
    stacked = torch.stack([T, 2 * T])
    mean_k, std_k = channel_moments(stacked, stacked=True)
    torch.testing.assert_close(mean_k, torch.tensor([[4., 1.], [8., 2.]]))
    torch.testing.assert_close(std_k[1], 2 * std)


def test_standardize_by_hand():
    out = standardize(T, eps=0.0)
    # channel 0: (x - 4) / sqrt(5) ; channel 1: (x - 1) / 1
    expected = torch.tensor([[[[-3., -1.]], [[-1., -1.]]],
                             [[[1., 3.]], [[1., 1.]]]])
    expected[:, 0] /= math.sqrt(5)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize('shape', [(4, 256, 7, 9), (3, 2048, 2, 2),
                                   (8, 19, 16, 32), (6, 10)])
def test_standardize_equals_batchnorm_without_affine(shape):
    """Any channel count (the reference hard-coded 2048) and rank."""
    x = torch.randn(*shape) * 3 + 1
    bn_cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    bn = bn_cls(shape[1], affine=False).train()
    torch.testing.assert_close(standardize(x), bn(x), atol=1e-5, rtol=1e-5)


def test_standardize_stacked_uses_each_avatars_own_statistics():
    x = torch.randn(3, 4, 5, 6)
    stacked = torch.stack([x, 10 * x + 3])
    out = standardize(stacked, stacked=True)
    torch.testing.assert_close(out[0], standardize(x))
    torch.testing.assert_close(out[1], standardize(x), atol=1e-5, rtol=1e-4)


def test_standardize_refuses_single_value_channels():
    with pytest.raises(ValueError, match='single value'):
        standardize(torch.randn(1, 8, 1, 1))
    with pytest.raises(ValueError, match='avatars.normalize=False'):
        standardize(torch.randn(1, 10))


def test_standardize_computes_in_float32():
    x = torch.randn(4, 8, 6, 6).to(torch.bfloat16) * 100
    out = standardize(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, standardize(x.float()))


def test_uncertainty_by_hand():
    # A_1 = T: no drift, u_1 = 0.
    # A_2 = 2T: D_mu = mu_T = (4, 1), D_sigma = sigma_T = (sqrt(5), 1):
    #           u_2 = (16 + 1 + 5 + 1) / (5 + 1) = 23 / 6
    # A_3 = 3T: twice the differences, four times the drift: 46 / 3
    avatars = torch.stack([T, 2 * T, 3 * T])
    u = avatar_uncertainty(T, avatars)
    torch.testing.assert_close(u, torch.tensor([0.0, 23 / 6, 46 / 3]))
    # weights proportional to u^(-1/tau); u_1 = 0 counts as 1e-8
    w = avatar_weights(u[1:], tau=1.0)
    torch.testing.assert_close(w, torch.tensor([0.8, 0.2]))
    w = avatar_weights(u[1:], tau=2.0)  # ratio sqrt(4) = 2
    torch.testing.assert_close(w, torch.tensor([2 / 3, 1 / 3]))
    w = avatar_weights(u, tau=4.0)
    z = torch.tensor([1e-8, 23 / 6, 46 / 3])**-0.25
    torch.testing.assert_close(w, z / z.sum())
    # a larger temperature moves the weights towards equal
    w_hot = avatar_weights(u[1:], tau=100.0)
    assert abs(w_hot[0] - 0.5) < 0.01
    assert avatar_weights(u[:1]).item() == 1.0  # K = 1
    assert avatar_weights(u[1:2]).item() == 1.0  # K = 1, any drift


def test_weights_depend_only_on_drift_ratios():
    """The same ratio of drifts gives the same weights whatever their size,
    so tau means the same on every layer."""
    u = torch.tensor([1.0, 2.0, 8.0])
    for scale in (1e-5, 1e-2, 1e3):
        torch.testing.assert_close(
            avatar_weights(u * scale), avatar_weights(u))


def test_combine_uncertainty_is_the_geometric_mean():
    levels = [torch.tensor([1.0, 4.0]), torch.tensor([100.0, 25.0])]
    torch.testing.assert_close(
        combine_uncertainty(levels), torch.tensor([10.0, 10.0]))
    assert combine_uncertainty(levels[:1]) is levels[0]


def test_uncertainty_is_scale_free_and_gradient_free():
    t = torch.randn(4, 16, 8, 8, requires_grad=True)
    a = torch.stack([t * (1 + 0.1 * torch.randn_like(t)) for _ in range(3)])
    u = avatar_uncertainty(t, a)
    assert not u.requires_grad
    for scale in (1e-3, 1e3):
        u_scaled = avatar_uncertainty(t * scale, a * scale)
        torch.testing.assert_close(u, u_scaled, rtol=1e-4, atol=1e-7)
    assert (u > 0).all()


def test_more_drift_means_more_uncertainty_and_less_weight():
    torch.manual_seed(0)
    t = torch.randn(4, 32, 8, 8) + torch.randn(1, 32, 1, 1)
    mild = t * (1 + 0.05 * torch.randn_like(t))
    strong = t * (1 + 0.8 * torch.randn_like(t))
    u = avatar_uncertainty(t, torch.stack([mild, strong]))
    assert u[0] < u[1]
    w = avatar_weights(u)
    assert w[0] > w[1]


def test_dead_and_constant_channels_are_harmless():
    """No per-channel division: an all-zero or constant channel (dead ReLU
    units, tiny maps) neither divides by zero nor dominates u."""
    torch.manual_seed(0)
    t = torch.relu(torch.randn(2, 16, 4, 4))
    t[:, 0] = 0.0
    t[:, 1] = 3.0
    a = avatar_dropout(t, 0.1, 4, torch.Generator().manual_seed(0))
    u = avatar_uncertainty(t, a)
    assert torch.isfinite(u).all() and (u > 0).all() and (u < 1).all()


def _relu_features():
    """ReLU feature maps of 64, 128 and 256 channels (32x32, 16x16, 8x8):
    the outputs of layer1-3 of a randomly initialised ResNet-18 on a
    2x3x128x128 batch."""
    from torchvision.models import resnet18
    torch.manual_seed(0)
    net = resnet18(weights=None).eval()
    with torch.no_grad():
        h = net.maxpool(
            net.relu(net.bn1(net.conv1(torch.randn(2, 3, 128, 128)))))
        feats = []
        for layer in (net.layer1, net.layer2, net.layer3):
            h = layer(h)
            feats.append(h)
    return feats


RELU_FEATURES = []


def relu_features():
    if not RELU_FEATURES:
        RELU_FEATURES.extend(_relu_features())
    return RELU_FEATURES


@pytest.mark.parametrize('level', [0, 1, 2])
def test_default_weights_follow_heterogeneous_dropout(level):
    """The issue's requirement at the default tau: with p = (0.05, 0.1,
    0.2, 0.4) on ReLU maps of 64-256 channels, weights strictly decrease
    with p and max/min >= 1.5 (measured about 2.7), for every seed."""
    feat = relu_features()[level]
    assert feat.shape[1] == 64 * 2**level and (feat >= 0).all()
    for seed in range(10):
        avatars = avatar_dropout(
            feat, (0.05, 0.1, 0.2, 0.4),
            generator=torch.Generator().manual_seed(seed))
        w = avatar_weights(avatar_uncertainty(feat, avatars))
        assert (w[1:] < w[:-1]).all(), (seed, w)
        assert w.max() / w.min() >= 1.5


@pytest.mark.parametrize('level', [0, 1, 2])
@pytest.mark.parametrize('num_avatars', [4, 8])
def test_default_weights_do_not_amplify_noise_of_iid_avatars(
        level, num_avatars):
    """Avatars drawn alike (one p) keep max/min <= 1.10 at the default tau
    (measured <= 1.039 over seeds 0-19), for every seed."""
    feat = relu_features()[level]
    for seed in range(10):
        avatars = avatar_dropout(feat, 0.1, num_avatars,
                                 torch.Generator().manual_seed(seed))
        w = avatar_weights(avatar_uncertainty(feat, avatars))
        assert w.max() / w.min() <= 1.10, (seed, w)


# ---------------------------------------------------------------------------
# u is undefined when the teacher has no variance (issue 24, point 5)
# ---------------------------------------------------------------------------
# A batch of one (1, C) logits: each channel holds a single value, so
# sum_c sigma_T,c^2 = 0 and u = drift / 0. Equal rows: the same.
ONE = torch.tensor([[3.0, -1.0, 0.5, 2.0]])
EQUAL_ROWS = ONE.expand(3, 4).contiguous()


@pytest.mark.parametrize(
    'teacher', [ONE, EQUAL_ROWS, 5 * torch.ones(2, 3, 4, 4)],
    ids=['batch-of-one', 'equal-rows', 'constant-maps'])
def test_uncertainty_is_undefined_without_teacher_variance(teacher):
    """Not 1e38 or inf: NaN, and ``defined`` says why."""
    avatars = avatar_dropout(
        teacher, (0.05, 0.1, 0.2, 0.4),
        generator=torch.Generator().manual_seed(0))
    u = avatar_uncertainty(teacher, avatars)
    assert u.shape == (4, ) and torch.isnan(u).all(), u
    u, defined = avatar_uncertainty(teacher, avatars, return_defined=True)
    assert torch.isnan(u).all() and defined.dtype == torch.bool
    assert not defined.item()
    # and the weights of an undefined u are equal
    assert avatar_weights(u).tolist() == [0.25] * 4


def test_one_varying_channel_keeps_u_defined():
    """Only the pooled variance counts: channel 1 varies (values 0 and 2,
    sigma 1), channel 0 is constant 3. A_1 = 2T: D_mu = (3, 1),
    D_sigma = (0, 1): u = (9 + 1 + 0 + 1) / 1 = 11."""
    t = torch.tensor([[3.0, 0.0], [3.0, 2.0]])
    u, defined = avatar_uncertainty(
        t, torch.stack([2 * t]), return_defined=True)
    assert defined.item()
    torch.testing.assert_close(u, torch.tensor([11.0]))


def test_nan_teacher_is_not_undefined():
    """A diverged teacher stays NaN *and* defined, so that the distiller's
    finiteness check still reports it."""
    t = torch.tensor([[1.0, float('nan')], [2.0, 0.0]])
    u, defined = avatar_uncertainty(
        t, torch.stack([t, t]), return_defined=True)
    assert torch.isnan(u).all() and defined.item()


def test_weights_of_an_undefined_uncertainty_are_equal():
    nan = float('nan')
    assert avatar_weights(torch.full((4, ), nan)).tolist() == [0.25] * 4
    torch.testing.assert_close(
        avatar_weights(torch.full((3, ), nan), tau=1.0),
        torch.full((3, ), 1 / 3))
    assert avatar_weights(torch.tensor([nan])).item() == 1.0


def test_combine_uncertainty_leaves_out_undefined_tensors():
    """The geometric mean over the tensors whose u is defined (an FPN level
    of 1x1 at batch 1 has none); NaN when no tensor has one."""
    nan = float('nan')
    levels = [
        torch.tensor([1.0, 4.0]),
        torch.tensor([nan, nan]),
        torch.tensor([100.0, 25.0])
    ]
    torch.testing.assert_close(
        combine_uncertainty(levels), torch.tensor([10.0, 10.0]))
    assert torch.isnan(combine_uncertainty(levels[1:2] * 3)).all()


def _seeded_normal_batch():
    torch.manual_seed(1)
    t = torch.relu(torch.randn(4, 16, 8, 8) + torch.randn(1, 16, 1, 1))
    avatars = avatar_dropout(
        t, (0.05, 0.1, 0.2, 0.4), generator=torch.Generator().manual_seed(1))
    return t, avatars


def test_weights_on_a_normal_batch_are_unchanged():
    """Regression guard for the undefined case: on a normal batch u and the
    weights equal (a) the formula in float64 NumPy, (b) bit for bit the
    float32 torch expression of the previous release."""
    t, avatars = _seeded_normal_batch()
    u = avatar_uncertainty(t, avatars)
    w = avatar_weights(u)
    # (a) independent float64 NumPy
    td, ad = t.double().numpy(), avatars.double().numpy()
    dims = (0, 2, 3)
    mu_t, sd_t = td.mean(dims), td.std(dims)
    u_np = np.array([
        np.sum((a.mean(dims) - mu_t)**2 + (a.std(dims) - sd_t)**2) /
        np.sum(sd_t**2) for a in ad
    ])
    z = u_np**-0.25
    np.testing.assert_allclose(u.numpy(), u_np, rtol=1e-4)
    np.testing.assert_allclose(w.numpy(), z / z.sum(), rtol=1e-5)
    # (b) the previous release's float32 expression, bit for bit
    var_t, mean_t = torch.var_mean(t, dim=(0, 2, 3), correction=0)
    var_a, mean_a = torch.var_mean(avatars, dim=(1, 3, 4), correction=0)
    sig_t, sig_a = var_t.sqrt(), var_a.sqrt()
    drift = (mean_a - mean_t).pow(2).sum(1) + (sig_a - sig_t).pow(2).sum(1)
    old_u = drift / (sig_t.pow(2).sum() + torch.finfo(torch.float32).tiny)
    assert torch.equal(u, old_u)
    old_w = torch.softmax(-old_u.clamp_min(1e-8).log() / 4.0, dim=0)
    assert torch.equal(w, old_w)
    levels = [u, u * 3]
    old_geo = torch.stack(levels).clamp_min(1e-8).log().mean(0).exp()
    assert torch.equal(combine_uncertainty(levels), old_geo)


def test_weight_ranges_quoted_in_the_docstrings():
    """The ranges ``avatar_weights`` and docs/akd.md quote, over ReLU maps
    of layer1-3 and seeds 0-19: ``w_max / w_min = exp(s / 4)`` exactly
    (``s`` the range of ``log u``), the bounds for K Avatars with that
    spread, i.i.d. ``p = 0.1`` within 1.04 (``s < 0.16``), and
    ``p = (0.05, 0.1, 0.2, 0.4)`` with ``s`` in 3.9-4.3, ``u`` growing 50-
    to 72-fold and a spread of 2.67-2.92."""
    spans, spreads, growth = {}, {}, []
    for name, p, k in [('iid', 0.1, 4), ('iid', 0.1, 8),
                       ('hetero', (0.05, 0.1, 0.2, 0.4), None)]:
        for feat in relu_features():
            for seed in range(20):
                avatars = avatar_dropout(feat, p, k,
                                         torch.Generator().manual_seed(seed))
                u = avatar_uncertainty(feat, avatars)
                w = avatar_weights(u)
                s = (u.log().max() - u.log().min()).item()
                r = (w.max() / w.min()).item()
                assert r == pytest.approx(math.exp(s / 4), rel=1e-5)
                n = len(w)
                assert 1 / (1 + (n - 1) * r) - 1e-6 <= w.min().item()
                assert w.max().item() <= r / (r + n - 1) + 1e-6
                spans.setdefault(name, []).append(s)
                spreads.setdefault(name, []).append(r)
                if name == 'hetero':
                    growth.append((u[-1] / u[0]).item())
    assert max(spans['iid']) < 0.16 and max(spreads['iid']) <= 1.04
    assert 3.9 <= min(spans['hetero']) and max(spans['hetero']) <= 4.3
    assert 2.66 <= min(spreads['hetero']) and max(spreads['hetero']) <= 2.92
    assert 50 <= min(growth) and max(growth) <= 73
