# Copyright (c) mmakd contributors. All rights reserved.
"""Avatar perturbations as pure tensor functions.

From "Avatar Knowledge Distillation: Self-ensemble Teacher Paradigm with
Uncertainty" (Zhang et al., ACM MM 2023, https://arxiv.org/abs/2305.02722):
at every iteration ``K`` Avatars ``A_k = P(T; xi_k)`` are drawn from a frozen
teacher's tensor ``T``. Each function draws all ``K`` at once, with one
random tensor of shape ``(K, *T.shape)`` (or ``(K, N, C, 1, ...)`` for
channel dropout) and one broadcast multiply or add, so the cost does not
grow with a Python loop over Avatars.

Every function returns a ``(K, *T.shape)`` tensor, is the identity (``K``
copies of ``T``, as a broadcast view) when its strength is 0, and draws its
randomness from ``generator`` or, if None, from PyTorch's global generator
of ``T``'s device, so the same seed gives the same Avatars.

Reference code (dropout with ``training=True``, ``K = 1``):
https://github.com/Gumpest/AvatarKD/blob/36b104f7c852ed26440105f22e40391fc5cdc0a3/mmrazor/models/losses/akd_cwd.py#L52
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = [
    'check_probability', 'check_std', 'check_num_avatars', 'avatar_dropout',
    'avatar_channel_dropout', 'avatar_gaussian_noise'
]


def check_probability(p: float, name: str = 'p') -> float:
    """Return ``p`` as float if it lies in [0, 1), else raise ValueError."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) \
            or not 0.0 <= p < 1.0:
        raise ValueError(f'{name} must be a number in [0, 1), got {p!r}')
    return float(p)


def check_std(std: float, name: str = 'std') -> float:
    """Return ``std`` as float if it is a number >= 0, else raise."""
    if isinstance(std, bool) or not isinstance(std, (int, float)) \
            or not std >= 0:
        raise ValueError(f'{name} must be a number >= 0, got {std!r}')
    return float(std)


def check_num_avatars(num_avatars: int, name: str = 'num_avatars') -> int:
    """Return ``num_avatars`` if it is an integer >= 1, else raise."""
    if isinstance(num_avatars, bool) or not isinstance(num_avatars, int) \
            or num_avatars < 1:
        raise ValueError(f'{name} must be an integer >= 1, got '
                         f'{num_avatars!r}')
    return num_avatars


def _identity(x: Tensor, num_avatars: int) -> Tensor:
    return x.unsqueeze(0).expand(num_avatars, *x.shape)


def _scaled_bernoulli(x: Tensor, p: float, mask_shape: Tuple[int, ...],
                      generator: Optional[torch.Generator]) -> Tensor:
    """``x`` times a keep-mask of ``mask_shape`` (broadcast), kept values
    divided by ``1 - p``: the dropouts' common step."""
    keep = 1.0 - p
    mask = torch.empty(mask_shape, dtype=x.dtype, device=x.device).bernoulli_(
        keep, generator=generator)
    return x * mask.div_(keep)


def avatar_dropout(x: Tensor,
                   p: float = 0.1,
                   num_avatars: int = 1,
                   generator: Optional[torch.Generator] = None) -> Tensor:
    """Element-wise dropout Avatars, rescaled by ``1 / (1 - p)``.

    Each element of each Avatar is zeroed with probability ``p`` and the
    rest are divided by ``1 - p``, so ``E[A_k] = T``. The reference setting
    is ``p = 0.1``.

    Args:
        x (Tensor): Teacher tensor, any shape.
        p (float): Drop probability in [0, 1). Defaults to 0.1.
        num_avatars (int): ``K >= 1``. Defaults to 1.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: ``(K, *x.shape)`` Avatars.
    """
    p = check_probability(p)
    num_avatars = check_num_avatars(num_avatars)
    if p == 0.0:
        return _identity(x, num_avatars)
    return _scaled_bernoulli(x, p, (num_avatars, *x.shape), generator)


def avatar_channel_dropout(x: Tensor,
                           p: float = 0.1,
                           num_avatars: int = 1,
                           generator: Optional[torch.Generator] = None
                           ) -> Tensor:
    """Channel dropout Avatars: whole channels zeroed, rescaled.

    For each Avatar and each sample, every channel of ``x`` (dim 1 of
    ``(N, C, *spatial)``) is zeroed with probability ``p``; kept channels
    are divided by ``1 - p``.

    Args:
        x (Tensor): Teacher tensor ``(N, C, *spatial)``.
        p (float): Drop probability in [0, 1). Defaults to 0.1.
        num_avatars (int): ``K >= 1``. Defaults to 1.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: ``(K, *x.shape)`` Avatars.
    """
    p = check_probability(p)
    num_avatars = check_num_avatars(num_avatars)
    if x.dim() < 2:
        raise ValueError('channel dropout needs a (N, C, ...) tensor, got '
                         f'shape {tuple(x.shape)}')
    if p == 0.0:
        return _identity(x, num_avatars)
    shape = (num_avatars, x.shape[0], x.shape[1]) + (1, ) * (x.dim() - 2)
    return _scaled_bernoulli(x, p, shape, generator)


def avatar_gaussian_noise(x: Tensor,
                          std: float = 0.1,
                          num_avatars: int = 1,
                          generator: Optional[torch.Generator] = None
                          ) -> Tensor:
    """Additive Gaussian noise scaled by the feature's own spread.

    ``A_k = T + std * sigma_c * eps_k`` with ``eps_k ~ N(0, 1)`` element-wise
    and ``sigma_c`` the standard deviation of ``T``'s channel ``c`` over the
    batch and positions, so ``std`` is relative to each channel's scale and
    ``E[A_k] = T``.

    Note:
        The spec asks for noise "scaled by the feature's own standard
        deviation" without saying which; per channel keeps a channel with
        small activations from being drowned by the noise of a large one.
        A tensor with fewer than 2 dims uses its global standard deviation.

    Args:
        x (Tensor): Teacher tensor ``(N, C, *spatial)``.
        std (float): Noise level relative to the channel's spread, >= 0.
            Defaults to 0.1.
        num_avatars (int): ``K >= 1``. Defaults to 1.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: ``(K, *x.shape)`` Avatars.
    """
    std = check_std(std)
    num_avatars = check_num_avatars(num_avatars)
    if std == 0:
        return _identity(x, num_avatars)
    with torch.no_grad():
        if x.dim() >= 2:
            dims = tuple(d for d in range(x.dim()) if d != 1)
            sigma = torch.std(x.float(), dim=dims, correction=0, keepdim=True)
        else:
            sigma = torch.std(x.float(), correction=0)
    noise = torch.randn((num_avatars, *x.shape), dtype=x.dtype,
                        device=x.device, generator=generator)
    return x + noise * (sigma * std).to(x.dtype)
