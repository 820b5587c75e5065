# Copyright (c) mmakd contributors. All rights reserved.
"""Golden values of the statistics behind AKD's uncertainty-aware factor,
worked out by hand in the comments."""
import math

import pytest
import torch
from torch import nn

from mmakd.models.utils import (avatar_uncertainty, avatar_weights,
                                channel_moments, standardize)

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
    # A_2 = 2T: D_mu = mu_T = (4, 1), Var_c = 2.25 = Var_c(mu_T)
    #           D_sigma = sigma_T, Var_c(D_sigma) = Var_c(sigma_T)
    #           with r = eps * mean_c(sigma_T^2) = 1e-5 * (5 + 1) / 2:
    #           u_2 = (2.25/(2.25+r) + v/(v+r)) / 2 ~= 1
    avatars = torch.stack([T, 2 * T])
    u = avatar_uncertainty(T, avatars)
    var_sigma = ((math.sqrt(5) - 1) / 2)**2
    r = 1e-5 * 3
    expected_u2 = 0.5 * (2.25 / (2.25 + r) + var_sigma / (var_sigma + r))
    torch.testing.assert_close(u, torch.tensor([0.0, expected_u2]))
    # weights = softmax(-u / tau): e^0 / (e^0 + e^-u2)
    w = avatar_weights(u, tau=1.0)
    w1 = 1 / (1 + math.exp(-expected_u2))
    torch.testing.assert_close(w, torch.tensor([w1, 1 - w1]))
    assert w[0] == pytest.approx(0.731, abs=1e-3)
    # a larger temperature moves the weights towards equal
    w_hot = avatar_weights(u, tau=100.0)
    assert abs(w_hot[0] - 0.5) < 0.01
    assert avatar_weights(u[:1]).item() == 1.0  # K = 1


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
