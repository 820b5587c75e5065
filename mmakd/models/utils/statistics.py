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
from typing import Sequence, Tuple

import torch
from torch import Tensor

__all__ = [
    'channel_moments', 'standardize', 'avatar_uncertainty',
    'combine_uncertainty', 'avatar_weights', 'DEFAULT_TAU'
]

#: Added to variances before dividing, as in ``nn.BatchNorm2d``.
EPS = 1e-5
#: Drifts below this count as this in :func:`avatar_weights`.
MIN_UNCERTAINTY = 1e-8
#: Default temperature of :func:`avatar_weights`.
DEFAULT_TAU = 4.0


def _reduce_dims(x: Tensor, stacked: bool) -> Tuple[int, ...]:
    """Dimensions to reduce for per-channel statistics."""
    channel = 2 if stacked else 1
    if x.dim() < channel + 1:
        raise ValueError(
            f'expected a tensor of shape ({"K, " if stacked else ""}N, C, '
            f'...), got shape {tuple(x.shape)}')
    return tuple(
        d for d in range(1 if stacked else 0, x.dim()) if d != channel)


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


def avatar_uncertainty(teacher: Tensor, avatars: Tensor) -> Tensor:
    """Relative drift of each Avatar's channel statistics from the teacher's.

    For Avatar ``k`` with per-channel mean ``mu_k`` and standard deviation
    ``sigma_k``, and the vanilla teacher's ``mu_T`` and ``sigma_T`` (sums
    over channels ``c``)::

        u_k = sum_c [(mu_k,c - mu_T,c)^2 + (sigma_k,c - sigma_T,c)^2]
              / sum_c sigma_T,c^2

    the squared drift of the statistics, pooled over channels, relative to
    the teacher's pooled per-channel variance: dimensionless, exactly
    unchanged when the teacher and its Avatars are multiplied by a
    constant, and 0 for an Avatar equal to the teacher.

    Note:
        The specification's ``u_k = Var(D_k)`` "made scale-free by the
        variance of T's statistics" was first implemented literally, as
        variances over channels of the mean and std differences, each
        divided by the spread of the teacher's statistic over channels.
        That removes the drift all channels share (dropout inflates every
        channel's std), divides by the spread of the channel means, which
        can be tiny, and is dominated by sampling noise on small maps
        (i.i.d. dropout Avatars of a (2, 64, 8, 8) ReLU map differed by up
        to 47 % in ``u``; here 20 %). Pooling squared drifts over channels
        keeps the drift that exists, needs no per-channel division (dead
        or constant channels are harmless) and is less noisy, while growing
        steadily with the perturbation's strength: for dropout
        ``p = 0.05 -> 0.4`` on ReLU maps ``u`` grows about 80-fold on every
        map size measured (``docs/akd.md``).

    Args:
        teacher (Tensor): The vanilla teacher, ``(N, C, *spatial)``.
        avatars (Tensor): Its Avatars, ``(K, N, C, *spatial)``.

    Returns:
        Tensor: ``(K,)`` float32 uncertainties >= 0, without gradient.
    """
    with torch.no_grad():
        mu_t, sigma_t = channel_moments(teacher)
        mu_a, sigma_a = channel_moments(avatars, stacked=True)
        drift = (mu_a - mu_t).pow(2).sum(1) + (sigma_a - sigma_t).pow(2).sum(1)
        # tiny absolute floor only for an all-constant teacher
        scale = sigma_t.pow(2).sum() + torch.finfo(torch.float32).tiny
        return drift / scale


def combine_uncertainty(uncertainties: Sequence[Tensor]) -> Tensor:
    """One ``u_k`` per Avatar for a record of several tensors (e.g. the FPN
    levels of one recorder): the geometric mean over the tensors, the mean
    that :func:`avatar_weights` (a power of ``u``) treats alike for every
    tensor, whatever its own level of drift.

    Args:
        uncertainties (Sequence[Tensor]): ``(K,)`` per tensor.

    Returns:
        Tensor: ``(K,)`` float32.
    """
    if len(uncertainties) == 1:
        return uncertainties[0]
    with torch.no_grad():
        stacked = torch.stack(list(uncertainties)).clamp_min(MIN_UNCERTAINTY)
        return stacked.log().mean(0).exp()


def avatar_weights(uncertainty: Tensor, tau: float = DEFAULT_TAU) -> Tensor:
    """Avatar weights inversely proportional to a power of the drift.

    ::

        w_k = u_k ** (-1 / tau) / sum_j u_j ** (-1 / tau)
            = softmax_k(-log(u_k) / tau),   u_k >= 1e-8

    The weight ratio of two Avatars depends only on the ratio of their
    drifts, ``w_j / w_k = (u_k / u_j) ** (1 / tau)``: ``tau`` means the same
    on every layer, model and perturbation strength, whatever the absolute
    size of ``u`` (which differs between layers). At the default
    ``tau = 4`` an Avatar that drifts 16 times further gets half the
    weight; ``tau = 1`` is inverse-uncertainty weighting. Avatars drawn
    alike (one perturbation, one strength) drift alike up to sampling
    noise, which a large exponent would amplify: on ReLU maps of 64-256
    channels and 8x8 or more positions the noise in ``log u`` stays below
    about 0.22 (weights within 6 % at ``tau = 4``), while dropout
    ``p = (0.05, 0.1, 0.2, 0.4)`` spans about 4.4 in ``log u`` (weights
    from 0.44 to 0.15). Drifts below 1e-8 count as 1e-8, so an Avatar
    equal to the teacher gets a large but finite weight.

    Args:
        uncertainty (Tensor): ``(K,)`` uncertainties >= 0.
        tau (float): Temperature, > 0; larger is more equal. Defaults to 4.

    Returns:
        Tensor: ``(K,)`` float32 weights summing to 1, without gradient.
    """
    with torch.no_grad():
        log_u = uncertainty.float().clamp_min(MIN_UNCERTAINTY).log()
        return torch.softmax(-log_u / tau, dim=0)
