# Copyright (c) mmakd contributors. All rights reserved.
"""How far AKD's fused Avatar target lies from the teacher it perturbs.

"Avatar Knowledge Distillation: Self-ensemble Teacher Paradigm with
Uncertainty" (Zhang et al., ACM MM 2023, https://arxiv.org/abs/2305.02722)
trains the student on ``sum_k w_k L(S, A_k)`` over ``K`` Avatars
``A_k = P(T; xi_k)`` of a frozen teacher's tensor ``T``. For squared-error
and softmax-KL losses this is one loss against a fused target (the weighted
mean of the Avatars, of their standardised copies or of their softmaxes:
:mod:`mmakd.models.avatars.fusion`, ``docs/akd.md``, "What AKD computes")
plus a term without student gradient. This module measures how far that
target lies from the teacher, per ``K``, in the spaces the shipped losses
learn in; ``tools/analysis_tools/fused_target_distance.py`` runs it on a
trained detector's FPN features.
"""
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from mmakd.models.avatars import (DEFAULT_TAU, AvatarChannelDropout,
                                  AvatarDropout, AvatarGaussianNoise,
                                  BaseAvatarPerturbation, StrengthPerturbation,
                                  avatar_uncertainty, avatar_weights,
                                  build_perturbation, standardize)
from mmakd.models.avatars.seeding import seeded_generator

__all__ = [
    'METRICS', 'ENTROPIES', 'draw_avatars', 'cycled_strengths',
    'variance_factors', 'fused_weights', 'target_distances',
    'fused_target_distance', 'describe_perturbation'
]

#: The distances :func:`target_distances` returns, in table order.
METRICS = ('raw', 'standardized', 'cwd_kl_raw', 'cwd_kl_standardized')
#: The entropies of CWD's fused target :func:`target_distances` returns.
ENTROPIES = ('entropy_raw', 'entropy_standardized')

PerturbationCfg = Union[Dict, List[Dict], BaseAvatarPerturbation]


def describe_perturbation(module: BaseAvatarPerturbation) -> str:
    """A one-line description, e.g. ``AvatarDropout(p=0.1)`` or
    ``AvatarPerturbationMix[AvatarDropout(p=0.1, num_avatars=2), ...]``."""
    members = getattr(module, 'perturbations', None)
    if members is not None:
        return (f'{type(module).__name__}[' +
                ', '.join(describe_perturbation(m) for m in members) + ']')
    if isinstance(module, StrengthPerturbation):
        count = '' if module.per_avatar or module.num_avatars == 1 else \
            f', num_avatars={module.num_avatars}'
        return f'{type(module).__name__}({module.strength_name}=' \
            f'{module.strength}{count})'
    return f'{type(module).__name__}({module.extra_repr()})'


def draw_avatars(perturbation: BaseAvatarPerturbation, teacher: Tensor,
                 num_avatars: int,
                 generator: Optional[torch.Generator]) -> Tensor:
    """``K`` Avatars of ``teacher``; a perturbation with a fixed set of
    Avatars is cycled.

    A perturbation whose strengths are given per Avatar (or a mix of
    types) defines ``K0`` Avatars of its own (:attr:`per_avatar`): its
    ``K0`` Avatars are drawn ``ceil(K / K0)`` times, independently, and the
    first ``K`` kept, so ``p=(0.05, 0.1, 0.2, 0.4)`` gives Avatars of
    strengths ``(0.05,)`` at ``K = 1``, ``(0.05, 0.1)`` at ``K = 2`` and
    ``(0.05, 0.1, 0.2, 0.4, 0.05, ...)`` at ``K = 8``. Any other
    perturbation draws its ``K`` Avatars in one call.

    Args:
        perturbation (BaseAvatarPerturbation): The perturbation module.
        teacher (Tensor): ``(N, C, *spatial)``.
        num_avatars (int): ``K >= 1``.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: ``(K, *teacher.shape)`` Avatars.
    """
    if num_avatars < 1:
        raise ValueError(f'num_avatars must be >= 1, got {num_avatars}')
    if not perturbation.per_avatar:
        return perturbation(
            teacher, num_avatars=num_avatars, generator=generator)
    rounds = math.ceil(num_avatars / perturbation.num_avatars)
    stacks = [
        perturbation(teacher, generator=generator) for _ in range(rounds)
    ]
    return torch.cat(stacks)[:num_avatars]


def cycled_strengths(perturbation: BaseAvatarPerturbation,
                     num_avatars: int) -> Optional[List[float]]:
    """The strengths of the ``K`` Avatars :func:`draw_avatars` draws from a
    perturbation with one strength per Avatar, else None."""
    if not (isinstance(perturbation, StrengthPerturbation)
            and perturbation.per_avatar):
        return None
    return _cycle(list(perturbation.strength), num_avatars)


def _cycle(values: List[float], num_avatars: int) -> List[float]:
    return [values[k % len(values)] for k in range(num_avatars)]


def variance_factors(perturbation: BaseAvatarPerturbation, teacher: Tensor,
                     num_avatars: int) -> Optional[List[float]]:
    """``v_k = E||A_k - T||^2 / ||T||^2`` of each of the ``K`` Avatars
    :func:`draw_avatars` draws, for the shipped perturbations (and mixes of
    them), else None.

    Each has ``E[A_k] = T`` with independent noise per Avatar, so for
    weights ``w_k`` that do not depend on the draw
    ``E||sum_k w_k A_k - T||^2 / ||T||^2 = sum_k w_k^2 v_k``. Dropout and
    channel dropout of strength ``p`` (each element, or each channel of
    each sample, kept with probability ``1 - p`` and divided by it):
    ``v = p / (1 - p)``. Gaussian noise ``std * sigma_c * eps``:
    ``v = std^2 * (N H W) sum_c sigma_c^2 / ||T||^2``, ``sigma_c`` the
    per-channel standard deviation it scales by.
    """
    members = getattr(perturbation, 'perturbations', None)
    if members is not None:
        own: List[float] = []
        for member in members:
            part = variance_factors(member, teacher, member.num_avatars)
            if part is None:
                return None
            own += part
    elif isinstance(perturbation, (AvatarDropout, AvatarChannelDropout)):
        strengths = perturbation.strength if perturbation.per_avatar else \
            (perturbation.strength, )
        own = [p / (1 - p) for p in strengths]
    elif isinstance(perturbation, AvatarGaussianNoise):
        strengths = perturbation.strength if perturbation.per_avatar else \
            (perturbation.strength, )
        t = teacher.double()
        dims = tuple(d for d in range(t.dim()) if d != 1)
        var = t.var(dim=dims, correction=0)
        ratio = float(var.sum() * (t.numel() // t.shape[1]) / t.square().sum())
        own = [s * s * ratio for s in strengths]
    else:
        return None
    return _cycle(own, num_avatars)


def fused_weights(teacher: Tensor,
                  avatars: Tensor,
                  tau: Optional[float] = DEFAULT_TAU) -> Tensor:
    """AKD's Avatar weights, as :class:`~mmakd.models.AvatarDistiller`
    computes them for a single-tensor record: the drift ``u_k`` of each raw
    Avatar's channel statistics (:func:`avatar_uncertainty`) and
    ``w_k ~ u_k ** (-1 / tau)`` (:func:`avatar_weights`), or ``1 / K``
    each when ``tau`` is None (``avatars.uncertainty=None``).

    Returns:
        Tensor: ``(K,)`` float32 weights summing to 1.
    """
    k = avatars.shape[0]
    if tau is None:
        return torch.full((k, ), 1.0 / k, device=avatars.device)
    return avatar_weights(avatar_uncertainty(teacher, avatars), tau)


def _spatial_log_softmax(x: Tensor, tau: float, stacked: bool) -> Tensor:
    """CWD's distributions: a softmax over the positions of each channel of
    each sample, ``x / tau``, as float64 log-probabilities ``(..., N C,
    H W)`` (MMRazor's ``ChannelWiseDivergence``)."""
    lead = 2 if stacked else 1
    if x.dim() < lead + 2:
        raise ValueError('CWD distributions need (N, C, H, W) maps, got '
                         f'shape {tuple(x.shape)[lead - 1:]}')
    positions = math.prod(x.shape[lead + 1:])
    rows = x.double().reshape(*x.shape[:lead - 1], -1, positions)
    return F.log_softmax(rows / tau, dim=-1)


def _weighted_mean(stack: Tensor, weights: Tensor) -> Tensor:
    w = weights.double() / weights.double().sum()
    return (w.view(-1, *(1, ) * (stack.dim() - 1)) * stack).sum(0)


def _relative(target: Tensor, reference: Tensor) -> float:
    return float((target - reference).norm() / reference.norm())


def _entropy_mean(p: Tensor) -> float:
    """Mean over rows of ``H(p) = -sum p log p``, nats."""
    return float(-torch.xlogy(p, p).sum(-1).mean())


def _kl_mean(log_p: Tensor, q: Tensor) -> float:
    """Mean over rows of ``KL(p || q) = sum p (log p - log q)``, nats."""
    return float((log_p.exp() * (log_p - q.log())).sum(-1).mean())


def target_distances(teacher: Tensor,
                     avatars: Tensor,
                     weights: Tensor,
                     cwd_tau: float = 1.0) -> Dict[str, float]:
    """Distances of the fused targets of one draw of ``K`` Avatars from the
    teacher (see :func:`fused_target_distance` for the definitions).

    Args:
        teacher (Tensor): ``T``, ``(N, C, H, W)``.
        avatars (Tensor): ``(K, N, C, H, W)``.
        weights (Tensor): ``(K,)`` weights (normalised here to sum 1).
        cwd_tau (float): Temperature of the CWD softmaxes. Defaults to 1.

    Returns:
        dict: One float per name of :data:`METRICS` and :data:`ENTROPIES`
        (the mean entropy of CWD's fused target ``pbar``, raw and
        standardised, in nats).
    """
    t = teacher.double()
    out = dict(raw=_relative(_weighted_mean(avatars.double(), weights), t))
    t_std = standardize(teacher).double()
    a_std = standardize(avatars, stacked=True).double()
    out['standardized'] = _relative(_weighted_mean(a_std, weights), t_std)
    for space, t_x, a_x in (('raw', teacher, avatars), ('standardized', t_std,
                                                        a_std)):
        log_p_t = _spatial_log_softmax(t_x, cwd_tau, stacked=False)
        p_a = _spatial_log_softmax(a_x, cwd_tau, stacked=True).exp()
        p_bar = _weighted_mean(p_a, weights)
        out[f'cwd_kl_{space}'] = _kl_mean(log_p_t, p_bar)
        out[f'entropy_{space}'] = _entropy_mean(p_bar)
    return out


def _generator(seed: int, num_avatars: int, repeat: int,
               device: torch.device) -> torch.Generator:
    """A generator for one (seed, K, repeat): the same Avatars whatever the
    other ``K`` measured."""
    return seeded_generator(f'fused-target/{seed}/{num_avatars}/{repeat}',
                            device)


def _summary(values: Sequence[float]) -> Dict[str, Any]:
    mean = sum(values) / len(values)
    var = sum((v - mean)**2 for v in values) / (len(values) - 1) \
        if len(values) > 1 else 0.0
    return dict(mean=mean, std=math.sqrt(var), values=list(values))


def fused_target_distance(
        teacher: Tensor,
        perturbation: PerturbationCfg,
        num_avatars: Sequence[int] = (1, 2, 4, 8, 16, 32),
        repeats: int = 10,
        seed: int = 0,
        tau: Optional[float] = DEFAULT_TAU,
        cwd_tau: float = 1.0,
        progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Distance of AKD's fused target from the teacher, per number of
    Avatars ``K``.

    For each ``K`` and each of ``repeats`` independent draws, ``K`` Avatars
    ``A_k`` of ``T`` are drawn (:func:`draw_avatars`; a perturbation with
    one strength per Avatar is cycled to ``K``) and weighted by AKD's
    uncertainty weights ``w_k`` (:func:`fused_weights`, ``sum_k w_k = 1``,
    computed from the raw Avatars as the distiller does). With ``||.||``
    the Frobenius norm over all elements and ``std(.)`` the per-channel
    standardisation over batch and positions (:func:`standardize`, what
    ``avatars.normalize=True`` applies to each Avatar by its own
    statistics), four distances of the fused target from the teacher:

    - ``raw``: ``||Abar - T|| / ||T||``, ``Abar = sum_k w_k A_k``: what a
      squared-error loss on raw features (``normalize=False``, e.g. MGD)
      learns from. For inverted dropout with fixed equal weights
      ``E||Abar - T||^2 = p / (1 - p) ||T||^2 / K``.
    - ``standardized``: ``||sum_k w_k std(A_k) - std(T)|| / ||std(T)||``:
      the same with ``normalize=True`` (the default); ``std(A_k)`` is not
      unbiased for ``std(T)``, so this does not vanish as ``K`` grows.
    - ``cwd_kl_raw``: ``mean_{n,c} KL(p_T || pbar)`` in nats, ``p_x =
      softmax(x[n, c, :, :] / cwd_tau)`` over the ``H W`` positions of
      each channel of each sample (MMRazor's ``ChannelWiseDivergence``) and
      ``pbar = sum_k w_k p_{A_k}`` (the mean of the softmaxes, CWD's fused
      target): what CWD learns from with ``normalize=False`` or
      ``'student'`` (the demo's AKD settings). It is also the CWD loss
      (``loss_weight=1``, ``tau=1``) against the vanilla teacher of a
      student that reproduced the fused target exactly.
    - ``cwd_kl_standardized``: the same on ``std(A_k)`` and ``std(T)``,
      what CWD learns from with ``normalize=True``.

    Besides, ``entropy_raw`` and ``entropy_standardized``: the mean
    entropy ``mean_{n,c} H(pbar)`` of CWD's fused target, in nats, to
    compare with the teacher's ``H(p_T)`` (``reference``): whether the
    target is smoother or sharper than the teacher.

    Each is averaged over the repeats (``mean``) with the sample standard
    deviation over them (``std``, 0 for one repeat); ``values`` holds every
    repeat's. ``wmax_over_wmin`` is the spread of the weights, and
    ``raw_formula`` what ``raw`` should be for the shipped perturbations,
    ``sqrt(sum_k w_k^2 v_k)`` with this draw's weights taken as fixed
    (:func:`variance_factors`; it is the root of the expected square, so
    the mean distance lies slightly below it). Draw ``r``
    of ``K`` uses a generator seeded from ``(seed, K, r)``, so each ``K``'s
    numbers do not depend on which others are measured. ``K = 1`` with a
    strength of 0 gives exactly 0 in all four.

    Args:
        teacher (Tensor): ``T``, ``(N, C, H, W)`` (e.g. one FPN level).
        perturbation (dict | list[dict] | BaseAvatarPerturbation): As
            ``model.distiller.avatars.perturbation`` takes it, built with
            :func:`~mmakd.models.avatars.build_perturbation`.
        num_avatars (Sequence[int]): The ``K`` to measure. Defaults to
            ``(1, 2, 4, 8, 16, 32)``.
        repeats (int): Independent draws per ``K``. Defaults to 10.
        seed (int): Seed of the draws. Defaults to 0.
        tau (float, optional): Temperature of the uncertainty weights;
            None gives equal weights. Defaults to 4 (AKD's default).
        cwd_tau (float): Temperature of the CWD softmaxes. Defaults to 1
            (the demo's CWD).
        progress (Callable[[str], None], optional): Receives one line per
            ``K``.

    Returns:
        dict: ``perturbation`` (its description), ``shape``, ``repeats``,
        ``seed``, ``tau``, ``cwd_tau``, ``reference`` (``kl_uniform_raw``
        and ``kl_uniform_standardized``: ``mean_{n,c} KL(p_T || uniform)``,
        how far the teacher's own softmaxes are from uniform, a scale for
        the two KLs; ``entropy_raw`` and ``entropy_standardized``: the
        mean entropy of ``p_T``) and ``rows``: per ``K``, ``num_avatars``,
        ``strengths`` (for cycled per-Avatar strengths, else None) and
        ``{mean, std, values}`` for each of :data:`METRICS`,
        :data:`ENTROPIES`, ``wmax_over_wmin`` and ``raw_formula`` (None for
        other perturbations), and ``weights_mean``, each Avatar's weight
        averaged over the draws.
    """
    if teacher.dim() != 4:
        raise ValueError('teacher must be an (N, C, H, W) map, got shape '
                         f'{tuple(teacher.shape)}')
    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats}')
    module = build_perturbation(perturbation, 'perturbation')
    if module is None:
        raise ValueError('perturbation must be set')
    teacher = teacher.detach().float()
    reference = {}
    for name, t_x in (('raw', teacher), ('standardized',
                                         standardize(teacher))):
        log_p = _spatial_log_softmax(t_x, cwd_tau, stacked=False)
        uniform = -math.log(log_p.shape[-1])
        reference[f'kl_uniform_{name}'] = float(
            (log_p.exp() * (log_p - uniform)).sum(-1).mean())
        reference[f'entropy_{name}'] = _entropy_mean(log_p.exp())
    rows = []
    with torch.no_grad():
        for k in num_avatars:
            per_metric: Dict[str, List[float]] = {
                m: []
                for m in METRICS + ENTROPIES
            }
            spread, formula, weight_sums = [], [], None
            factors = variance_factors(module, teacher, k)
            for r in range(repeats):
                generator = _generator(seed, k, r, teacher.device)
                avatars = draw_avatars(module, teacher, k, generator).float()
                weights = fused_weights(teacher, avatars, tau)
                for name, value in target_distances(teacher, avatars, weights,
                                                    cwd_tau).items():
                    per_metric[name].append(value)
                spread.append(float(weights.max() / weights.min()))
                w64 = weights.double() / weights.double().sum()
                weight_sums = w64 if weight_sums is None else \
                    weight_sums + w64
                if factors is not None:
                    w = weights.double()
                    formula.append(
                        math.sqrt(
                            float((w.square() * w.new_tensor(factors)).sum() /
                                  w.sum().square())))
            row: Dict[str, Any] = dict(
                num_avatars=k, strengths=cycled_strengths(module, k))
            row.update({m: _summary(v) for m, v in per_metric.items()})
            row['wmax_over_wmin'] = _summary(spread)
            row['weights_mean'] = (weight_sums / repeats).tolist()
            row['raw_formula'] = _summary(formula) if formula else None
            rows.append(row)
            if progress:
                progress(f'K={k}: ' + ', '.join(
                    f'{m} {row[m]["mean"]:.4g} ± {row[m]["std"]:.2g}'
                    for m in METRICS))
    return dict(
        perturbation=describe_perturbation(module),
        shape=list(teacher.shape),
        repeats=repeats,
        seed=seed,
        tau=tau,
        cwd_tau=cwd_tau,
        reference=reference,
        rows=rows)
