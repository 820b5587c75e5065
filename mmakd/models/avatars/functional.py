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
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = [
    'check_probability', 'check_std', 'check_num_avatars', 'check_strengths',
    'avatar_dropout', 'avatar_channel_dropout', 'avatar_gaussian_noise',
    'keep_masks', 'dropout_mask_shape'
]

#: A strength for all Avatars, or one per Avatar.
Strength = Union[float, Sequence[float]]


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


def check_strengths(
    strength: Strength,
    check,
    name: str,
    num_avatars: Optional[int] = None,
    num_avatars_name: str = 'num_avatars'
) -> Tuple[Union[float, Tuple[float, ...]], int]:
    """Validate a strength given for all Avatars or one per Avatar.

    Args:
        strength (float | Sequence[float]): One value for every Avatar, or
            a sequence with one value per Avatar.
        check (callable): Validates one value, e.g. :func:`check_std`.
        name (str): The strength's name (config key) for errors.
        num_avatars (int, optional): ``K``; None means ``len(strength)``
            for a sequence and 1 otherwise.
        num_avatars_name (str): The name of ``num_avatars`` for errors.

    Returns:
        tuple: The strength (float, or tuple of floats) and ``K``.
    """
    if isinstance(strength, (list, tuple)):
        if not strength:
            raise ValueError(f'{name} must be a number or a non-empty '
                             f'sequence of numbers, got {strength!r}')
        values = tuple(
            check(v, f'{name}[{i}]') for i, v in enumerate(strength))
        if num_avatars is None:
            num_avatars = len(values)
        num_avatars = check_num_avatars(num_avatars, num_avatars_name)
        if len(values) != num_avatars:
            raise ValueError(
                f'{name} gives {len(values)} values (one per Avatar) but '
                f'{num_avatars_name}={num_avatars}; give {num_avatars} '
                'values or a single number.')
        return values, num_avatars
    value = check(strength, name)
    return value, check_num_avatars(1 if num_avatars is None else num_avatars,
                                    num_avatars_name)


def _per_avatar(strength: Union[float, Tuple[float, ...]], x: Tensor,
                ndim: int) -> Union[float, Tensor]:
    """A scalar, or the per-Avatar values as a float32 ``(K, 1, ..., 1)``
    tensor of ``ndim`` dims (on ``x``'s device) that broadcasts against a
    ``(K, *x.shape)`` stack."""
    if isinstance(strength, tuple):
        return torch.tensor(
            strength, dtype=torch.float32,
            device=x.device).view(-1,
                                  *(1, ) * (ndim - 1))
    return strength


def _is_zero(strength: Union[float, Tuple[float, ...]]) -> bool:
    values = strength if isinstance(strength, tuple) else (strength, )
    return all(v == 0.0 for v in values)


def _identity(x: Tensor, num_avatars: int) -> Tensor:
    return x.unsqueeze(0).expand(num_avatars, *x.shape)


def keep_masks(
    x: Tensor, p: Union[float, Tuple[float, ...]], mask_shape: Tuple[int, ...],
    generator: Optional[torch.Generator]
) -> Tuple[Tensor, Union[float, Tensor]]:
    """Boolean keep-masks of ``mask_shape`` drawn in one call, and the keep
    probability ``1 - p`` (a float, or a float32 ``(K, 1, ...)`` tensor
    when ``p`` is per Avatar). The draw is the one a mask of ``x``'s dtype
    gets from the same generator: the same random numbers, compared with
    the same probability."""
    keep = 1.0 - _per_avatar(p, x, len(mask_shape))
    masks = torch.empty(
        mask_shape, dtype=torch.bool, device=x.device).bernoulli_(
            keep, generator=generator)
    return masks, keep


def _scaled_bernoulli(x: Tensor, p: Union[float, Tuple[float, ...]],
                      mask_shape: Tuple[int, ...],
                      generator: Optional[torch.Generator]) -> Tensor:
    """``x`` times a keep-mask of ``mask_shape`` (broadcast), kept values
    divided by ``1 - p`` (per Avatar when ``p`` is a tuple): the dropouts'
    common step, one random draw for all Avatars."""
    keep = 1.0 - _per_avatar(p, x, len(mask_shape))
    mask = torch.empty(
        mask_shape, dtype=x.dtype, device=x.device).bernoulli_(
            keep, generator=generator)
    mask.div_(keep)
    if mask.dim() != x.dim() + 1 or mask.shape[1:] != x.shape or (
            x.requires_grad and torch.is_grad_enabled()):
        return x * mask
    return mask.mul_(x)  # in place: one (K, ...) tensor, same values


def avatar_dropout(x: Tensor,
                   p: Strength = 0.1,
                   num_avatars: Optional[int] = None,
                   generator: Optional[torch.Generator] = None) -> Tensor:
    """Element-wise dropout Avatars, rescaled by ``1 / (1 - p)``.

    Each element of each Avatar is zeroed with probability ``p`` and the
    rest are divided by ``1 - p``, so ``E[A_k] = T``. The reference setting
    is ``p = 0.1``.

    Args:
        x (Tensor): Teacher tensor, any shape.
        p (float | Sequence[float]): Drop probability in [0, 1), or one per
            Avatar (heterogeneous Avatars). Defaults to 0.1.
        num_avatars (int, optional): ``K >= 1``; None means ``len(p)`` for
            a sequence, else 1.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: ``(K, *x.shape)`` Avatars.
    """
    return _dropout(x, p, num_avatars, generator, channel=False)


def avatar_channel_dropout(
        x: Tensor,
        p: Strength = 0.1,
        num_avatars: Optional[int] = None,
        generator: Optional[torch.Generator] = None) -> Tensor:
    """Channel dropout Avatars: whole channels zeroed, rescaled.

    For each Avatar and each sample, every channel of ``x`` (dim 1 of
    ``(N, C, *spatial)``) is zeroed with probability ``p``; kept channels
    are divided by ``1 - p``.

    Args:
        x (Tensor): Teacher tensor ``(N, C, *spatial)``.
        p (float | Sequence[float]): Drop probability in [0, 1), or one per
            Avatar. Defaults to 0.1.
        num_avatars (int, optional): ``K >= 1``; None means ``len(p)`` for
            a sequence, else 1.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: ``(K, *x.shape)`` Avatars.
    """
    return _dropout(x, p, num_avatars, generator, channel=True)


def _dropout(x: Tensor, p: Strength, num_avatars: Optional[int],
             generator: Optional[torch.Generator], channel: bool) -> Tensor:
    """The two dropouts: checked strengths, identity at ``p = 0``, else one
    scaled Bernoulli draw of the mask shape."""
    p, num_avatars = check_strengths(p, check_probability, 'p', num_avatars)
    shape = dropout_mask_shape(x, num_avatars, channel)
    if _is_zero(p):
        return _identity(x, num_avatars)
    return _scaled_bernoulli(x, p, shape, generator)


def avatar_gaussian_noise(
        x: Tensor,
        std: Strength = 0.1,
        num_avatars: Optional[int] = None,
        generator: Optional[torch.Generator] = None) -> Tensor:
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
        std (float | Sequence[float]): Noise level relative to the
            channel's spread, >= 0, or one per Avatar. Defaults to 0.1.
        num_avatars (int, optional): ``K >= 1``; None means ``len(std)``
            for a sequence, else 1.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: ``(K, *x.shape)`` Avatars.
    """
    std, num_avatars = check_strengths(std, check_std, 'std', num_avatars)
    if _is_zero(std):
        return _identity(x, num_avatars)
    with torch.no_grad():
        if x.dim() >= 2:
            dims = tuple(d for d in range(x.dim()) if d != 1)
            sigma = torch.std(x.float(), dim=dims, correction=0, keepdim=True)
        else:
            sigma = torch.std(x.float(), correction=0)
        scale = (sigma * _per_avatar(std, x, x.dim() + 1)).to(x.dtype)
    noise = torch.randn((num_avatars, *x.shape),
                        dtype=x.dtype,
                        device=x.device,
                        generator=generator)
    if x.requires_grad and torch.is_grad_enabled():
        return x + noise * scale
    return noise.mul_(scale).add_(x)  # in place: same values


def dropout_mask_shape(x: Tensor, num_avatars: int,
                       channel: bool) -> Tuple[int, ...]:
    """The keep-mask shape of :func:`avatar_dropout` (``(K, *x.shape)``) or
    of :func:`avatar_channel_dropout` (``(K, N, C, 1, ...)``)."""
    if not channel:
        return (num_avatars, *x.shape)
    if x.dim() < 2:
        raise ValueError('channel dropout needs a (N, C, ...) tensor, got '
                         f'shape {tuple(x.shape)}')
    return (num_avatars, x.shape[0], x.shape[1]) + (1, ) * (x.dim() - 2)
