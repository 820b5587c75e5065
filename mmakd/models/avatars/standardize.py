# Copyright (c) mmakd contributors. All rights reserved.
"""Per-channel batch statistics and standardisation of AKD's features.

Pure tensor functions used by :class:`mmakd.models.AvatarDistiller`, its
fused targets and :class:`mmakd.models.AvatarConnector` ("Avatar Knowledge
Distillation: Self-ensemble Teacher Paradigm with Uncertainty", Zhang et
al., ACM MM 2023, https://arxiv.org/abs/2305.02722; ``docs/method.md``).

Layouts: a teacher or student tensor is ``(N, C, *spatial)`` (``*spatial``
may be empty, e.g. classification logits ``(N, C)``); a stack of ``K``
Avatars is ``(K, N, C, *spatial)``. Statistics are always taken per channel
``C`` over the batch and spatial positions, and computed in float32.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ['channel_moments', 'standardize', 'EPS']

#: Added to variances before dividing, as in ``nn.BatchNorm2d``.
EPS = 1e-5


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


def standardize(x: Tensor,
                stacked: bool = False,
                eps: float = EPS,
                moments: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
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
        moments (tuple[Tensor, Tensor], optional): ``x``'s per-channel mean
            and biased variance, ``(C,)`` each, if already computed (e.g.
            with the Avatars' drift): saves a pass over ``x``; the result
            then differs from the default only by float rounding. Used only
            when they have the precision of the result, not with
            ``stacked``.

    Returns:
        Tensor: Tensor of the shape of ``x``, float32 (float64 for a
        float64 ``x``).

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
    xf = x if x.dtype == torch.float64 else x.float()
    if moments is not None and not stacked and xf.dtype == moments[1].dtype:
        shape = (1, -1) + (1, ) * (x.dim() - 2)
        mean, var = (m.reshape(shape) for m in moments)
        scale = torch.rsqrt(var + eps)
        return torch.addcmul(-mean * scale, xf, scale)  # one pass over x
    var, mean = torch.var_mean(xf, dim=dims, correction=0, keepdim=True)
    return (xf - mean) * torch.rsqrt(var + eps)
