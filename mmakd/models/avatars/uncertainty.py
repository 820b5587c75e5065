# Copyright (c) mmakd contributors. All rights reserved.
"""AKD's uncertainty-aware factor: Avatar drift and weights.

Pure tensor functions used by :class:`mmakd.models.AvatarDistiller` and
:class:`mmakd.models.AvatarConnector`, from "Avatar Knowledge Distillation:
Self-ensemble Teacher Paradigm with Uncertainty" (Zhang et al., ACM MM 2023,
https://arxiv.org/abs/2305.02722), as specified in ``docs/method.md``.

Layouts: a teacher or student tensor is ``(N, C, *spatial)`` (``*spatial``
may be empty, e.g. classification logits ``(N, C)``); a stack of ``K``
Avatars is ``(K, N, C, *spatial)``. Statistics are always taken per channel
``C`` over the batch and spatial positions, and computed in float32.
"""
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

from .avatar_draw import AvatarDraw
from .standardize import _reduce_dims, channel_moments

__all__ = [
    'avatar_uncertainty', 'combine_uncertainty', 'avatar_weights',
    'DEFAULT_TAU'
]

#: Drifts below this count as this in :func:`avatar_weights`.
MIN_UNCERTAINTY = 1e-8
#: Default temperature of :func:`avatar_weights`.
DEFAULT_TAU = 4.0


def avatar_uncertainty(
        teacher: Tensor,
        avatars: Union[Tensor, AvatarDraw],
        return_defined: bool = False,
        return_moments: bool = False) -> Union[Tensor, Tuple[Tensor, ...]]:
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
        ``p = 0.05 -> 0.4`` on ReLU maps ``u`` grows 50- to 72-fold on every
        map size measured (``docs/akd.md``).

    ``u`` is undefined (``drift / 0``) exactly when the denominator
    ``sum_c sigma_T,c^2`` is 0, i.e. when every channel of the teacher holds
    one value over the batch and the positions: always for a batch of one
    without spatial positions (``(1, C)`` logits, ``(1, C, 1, 1)`` maps),
    which has a single sample per channel, and for constant channels at any
    batch size (equal rows, a teacher whose output ignores its input). Its
    ``u`` is then NaN for every Avatar, which :func:`combine_uncertainty`
    leaves out and :func:`avatar_weights` turns into equal weights (it used
    to be ``drift / 1.2e-38``: near 1e38 or ``inf``). One channel that varies
    is enough: ``u`` is then finite for a finite teacher. Values that equal
    in float32 have a variance of exactly 0 (Welford's update adds nothing
    when a value equals the running mean), so the test is exact.

    Args:
        teacher (Tensor): The vanilla teacher, ``(N, C, *spatial)``.
        avatars (Tensor | AvatarDraw): Its Avatars, ``(K, N, C,
            *spatial)``, or as drawn by a perturbation's ``draw``.
        return_defined (bool): Also return whether ``u`` is defined.
            Defaults to False.
        return_moments (bool): Also return (last) the Avatars' per-channel
            means and biased variances, ``(K, C)`` each, for
            :func:`~mmakd.models.avatars.standardize`. Defaults to False.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``(K,)`` float32 uncertainties
        >= 0 (NaN where undefined, or where the teacher holds NaN or Inf),
        without gradient; with ``return_defined``, also a 0-dim bool tensor,
        False only when the teacher's pooled variance is 0 (a teacher with
        NaN or Inf counts as defined, so that a check of ``u`` still sees
        it).
    """
    with torch.no_grad():
        mu_t, sigma_t = channel_moments(teacher)
        if isinstance(avatars, AvatarDraw):
            var_a, mu_a = avatars.moments()
        else:
            var_a, mu_a = torch.var_mean(
                avatars.float(), dim=_reduce_dims(avatars, True), correction=0)
        sigma_a = var_a.sqrt()  # as channel_moments(avatars, stacked=True)
        drift = (mu_a - mu_t).pow(2).sum(1) + (sigma_a - sigma_t).pow(2).sum(1)
        variance = sigma_t.pow(2).sum()
        defined = variance != 0  # NaN != 0: a diverged teacher is defined
        # the floor changes nothing unless the variance is denormal; kept so
        # that u is bit-identical to earlier releases
        u = drift / (variance + torch.finfo(torch.float32).tiny)
        u = torch.where(defined, u, torch.full_like(u, float('nan')))
        out = (u, defined) if return_defined else (u, )
        if return_moments:
            out += ((mu_a, var_a), )
        return out[0] if len(out) == 1 else out


def combine_uncertainty(uncertainties: Sequence[Tensor]) -> Tensor:
    """One ``u_k`` per Avatar for a record of several tensors (e.g. the FPN
    levels of one recorder): the geometric mean over the tensors, the mean
    that :func:`avatar_weights` (a power of ``u``) treats alike for every
    tensor, whatever its own level of drift.

    A tensor whose ``u`` is NaN (undefined, see :func:`avatar_uncertainty`:
    e.g. a 1x1 FPN level at batch size 1) is left out of the mean; the
    result is NaN only when every tensor's is.

    Args:
        uncertainties (Sequence[Tensor]): ``(K,)`` per tensor.

    Returns:
        Tensor: ``(K,)`` float32.
    """
    if len(uncertainties) == 1:
        return uncertainties[0]
    with torch.no_grad():
        stacked = torch.stack(list(uncertainties)).clamp_min(MIN_UNCERTAINTY)
        log_u = stacked.log()
        missing = torch.isnan(log_u)
        # mean over the defined tensors (0 / 0 = NaN when there is none);
        # the plain mean otherwise, bit-identical to earlier releases
        partial = log_u.nan_to_num(0.0).sum(0) / (~missing).sum(0)
        return torch.where(missing.any(0), partial, log_u.mean(0)).exp()


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
    weight; ``tau = 1`` is inverse-uncertainty weighting.

    Ranges, from the formula: every ``w_k`` lies in ``(0, 1)``, and the
    spread is ``w_max / w_min = exp(s / tau)`` with ``s`` the range of
    ``log u`` over the Avatars; for ``K`` Avatars with spread ``r`` the
    weights are bounded by ``1 / (1 + (K - 1) r) <= w_min <= 1 / K <=
    w_max <= r / (r + K - 1)``. Avatars drawn alike (one perturbation, one
    strength) drift alike up to sampling noise, which a large exponent
    would amplify: on ReLU maps of 64-256 channels and 8x8 or more
    positions (ResNet-18 layer1-3, seeds 0-19) the noise span ``s`` of
    four or eight ``p = 0.1`` dropout Avatars stays below 0.16, so
    ``w_max / w_min <= exp(0.16 / 4) = 1.04`` (each weight within 4 % of
    ``1 / K``), while dropout ``p = (0.05, 0.1, 0.2, 0.4)`` spans
    ``s = 3.9-4.3`` (``u`` grows 50- to 72-fold), a spread of 2.67-2.92
    (weights from about 0.38 down to 0.14). Drifts below 1e-8 count as
    1e-8, so an Avatar equal to the teacher gets a large but finite
    weight. An undefined ``u`` (NaN for every Avatar, see
    :func:`avatar_uncertainty`) gives equal weights ``1 / K``.

    Args:
        uncertainty (Tensor): ``(K,)`` uncertainties >= 0, or all NaN.
        tau (float): Temperature, > 0; larger is more equal. Defaults to 4.

    Returns:
        Tensor: ``(K,)`` float32 weights summing to 1, without gradient.
    """
    with torch.no_grad():
        log_u = uncertainty.float().clamp_min(MIN_UNCERTAINTY).log()
        undefined = torch.isnan(log_u).all()
        log_u = torch.where(undefined, torch.zeros_like(log_u), log_u)
        return torch.softmax(-log_u / tau, dim=0)
