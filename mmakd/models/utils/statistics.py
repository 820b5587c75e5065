# Copyright (c) mmakd contributors. All rights reserved.
"""Per-channel statistics behind AKD's uncertainty-aware factor.

Pure tensor functions used by :class:`mmakd.models.AvatarDistiller` and
:class:`mmakd.models.AvatarConnector`, from "Avatar Knowledge Distillation:
Self-ensemble Teacher Paradigm with Uncertainty" (Zhang et al., ACM MM 2023,
https://arxiv.org/abs/2305.02722), as specified in ``docs/method.md``.

Layouts: a teacher or student tensor is ``(N, C, *spatial)`` (``*spatial``
may be empty, e.g. classification logits ``(N, C)``); a stack of ``K``
Avatars is ``(K, N, C, *spatial)``. Statistics are always taken per channel
``C`` over the batch and spatial positions, and computed in float32.
"""
from typing import Tuple

import torch
from torch import Tensor

__all__ = [
    'channel_moments', 'standardize', 'avatar_uncertainty', 'avatar_weights'
]

#: Added to variances before dividing, as in ``nn.BatchNorm2d``.
EPS = 1e-5


def _reduce_dims(x: Tensor, stacked: bool) -> Tuple[int, ...]:
    """Dimensions to reduce for per-channel statistics."""
    channel = 2 if stacked else 1
    if x.dim() < channel + 1:
        raise ValueError(
            f'expected a tensor of shape ({"K, " if stacked else ""}N, C, '
            f'...), got shape {tuple(x.shape)}')
    return tuple(d for d in range(1 if stacked else 0, x.dim())
                 if d != channel)


def channel_moments(x: Tensor, stacked: bool = False) -> Tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation over batch and space.

    Args:
        x (Tensor): ``(N, C, *spatial)``, or ``(K, N, C, *spatial)`` with
            ``stacked=True`` (statistics per Avatar).
        stacked (bool): Whether dim 0 indexes Avatars. Defaults to False.

    Returns:
        tuple[Tensor, Tensor]: Mean and (biased) standard deviation, each
        ``(C,)``, or ``(K, C)`` when stacked; float32.
    """
    var, mean = torch.var_mean(
        x.float(), dim=_reduce_dims(x, stacked), correction=0)
    return mean, var.sqrt()


def standardize(x: Tensor, stacked: bool = False, eps: float = EPS) -> Tensor:
    """Per-channel batch standardisation without affine parameters.

    The same as ``nn.BatchNorm2d(C, affine=False)`` in training mode (biased
    batch variance, ``eps`` inside the square root), for any channel count
    (the reference code hard-coded 2048 channels) and any rank >= 2, without
    updating running statistics.

    Args:
        x (Tensor): ``(N, C, *spatial)``, or ``(K, N, C, *spatial)`` with
            ``stacked=True``, each Avatar standardised by its own statistics.
        stacked (bool): Whether dim 0 indexes Avatars. Defaults to False.
        eps (float): Added to the variance. Defaults to 1e-5.

    Returns:
        Tensor: float32 tensor of the shape of ``x``.

    Raises:
        ValueError: If every channel has a single value (batch 1 with 1x1
            maps, or ``(1, C)`` logits): standardising gives all zeros.
    """
    dims = _reduce_dims(x, stacked)
    count = 1
    for d in dims:
        count *= x.shape[d]
    if count < 2:
        raise ValueError(
            f'cannot standardise a tensor of shape {tuple(x.shape)} per '
            'channel: each channel holds a single value (batch size 1 with '
            '1x1 maps?), so the result would be all zeros. Use a larger '
            'batch or set avatars.normalize=False.')
    xf = x.float()
    var, mean = torch.var_mean(xf, dim=dims, correction=0, keepdim=True)
    return (xf - mean) * torch.rsqrt(var + eps)


def avatar_uncertainty(teacher: Tensor, avatars: Tensor,
                       eps: float = EPS) -> Tensor:
    """Scale-free variance of the statistical differences, per Avatar.

    For Avatar ``k`` with per-channel mean ``mu_k`` and std ``sigma_k``, and
    the vanilla teacher's ``mu_T`` and ``sigma_T`` (variances ``Var_c`` taken
    over channels)::

        u_k = (Var_c(mu_k - mu_T) / (Var_c(mu_T) + r)
               + Var_c(sigma_k - sigma_T) / (Var_c(sigma_T) + r)) / 2
        r   = eps * mean_c(sigma_T ** 2)

    Note:
        The spec says ``u_k = Var(D_k)`` made scale-free by the variance of
        the teacher's statistics. We keep the two statistics apart, each
        divided by the spread of its own teacher statistic, and average
        them: means and standard deviations live on different scales, so
        one pooled variance would be dominated by whichever is larger. The
        stabiliser ``r`` is relative to the teacher's own scale, so ``u_k``
        is exactly unchanged when the teacher and its Avatars are multiplied
        by a constant (an absolute epsilon would not be, for features whose
        channel statistics hardly vary).

    Args:
        teacher (Tensor): The vanilla teacher, ``(N, C, *spatial)``.
        avatars (Tensor): Its Avatars, ``(K, N, C, *spatial)``.
        eps (float): Relative stabiliser of the denominators. Defaults to
            1e-5.

    Returns:
        Tensor: ``(K,)`` float32 uncertainties, without gradient.
    """
    with torch.no_grad():
        mu_t, sigma_t = channel_moments(teacher)
        mu_a, sigma_a = channel_moments(avatars, stacked=True)
        var_mu = torch.var(mu_a - mu_t, dim=1, correction=0)
        var_sigma = torch.var(sigma_a - sigma_t, dim=1, correction=0)
        # tiny absolute floor only for an all-constant teacher
        r = eps * sigma_t.pow(2).mean() + torch.finfo(torch.float32).tiny
        scale_mu = torch.var(mu_t, correction=0) + r
        scale_sigma = torch.var(sigma_t, correction=0) + r
        return 0.5 * (var_mu / scale_mu + var_sigma / scale_sigma)


def avatar_weights(uncertainty: Tensor, tau: float = 1.0) -> Tensor:
    """Avatar weights ``w = softmax(-u / tau)`` over the Avatars.

    An Avatar that drifts further from the teacher teaches less; with one
    Avatar the weight is 1; as ``tau`` grows the weights become equal.

    Args:
        uncertainty (Tensor): ``(K,)`` uncertainties.
        tau (float): Temperature, > 0. Defaults to 1.0.

    Returns:
        Tensor: ``(K,)`` float32 weights summing to 1, without gradient.
    """
    with torch.no_grad():
        return torch.softmax(-uncertainty.float() / tau, dim=0)
