# Copyright (c) mmakd contributors. All rights reserved.
"""Exact fused targets: ``K`` weighted Avatar losses as one loss.

For a loss that is, given the student, affine in a transform ``t = phi(A)``
of its teacher input up to a term of ``t`` alone,
``L(S, A) = F(S) + <H(S), t> + G(t)`` (squared errors, forward KL on
softmaxes), the weighted sum of ``K`` Avatar losses is one loss against the
weighted mean of the transformed Avatars plus a term without student
gradient (``W = sum_k w_k``, ``tbar = sum_k w_k t_k / W``)::

    sum_k w_k L(S, A_k) = W L(S, tbar) + [sum_k w_k G(t_k) - W G(tbar)]

The bracket is ``sum_k w_k D(t_k, tbar) >= 0`` (the loss's own divergence of
each Avatar from the fused target). Squared error: ``t`` the (transformed)
feature, ``G = c ||t||^2``; KL: ``t`` the teacher's softmax (the mean of the
softmaxes, not the softmax of the mean), ``G = c sum t log t``. A
:class:`LossFusion` knows one loss class's ``phi``, ``G`` and ``L(S, t)``;
:func:`fusion_for` finds it. ``docs/akd.md`` ("What AKD computes") derives
the identities and what they imply.
"""
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type

import torch
from torch import Tensor, nn

__all__ = [
    'LossFusion', 'register_fusion', 'fusion_for', 'fusion_blocker',
    'fusable_losses', 'levels_of', 'sum64', 'sum_squares64'
]

Record = Any
_FUSIONS: Dict[Type[nn.Module], Type['LossFusion']] = {}


def register_fusion(*loss_classes: Type[nn.Module]) -> Callable:
    """Class decorator: the fusion of ``loss_classes`` (exact types)."""

    def wrap(cls: Type['LossFusion']) -> Type['LossFusion']:
        for loss_cls in loss_classes:
            _FUSIONS[loss_cls] = cls
        return cls

    return wrap


def fusable_losses() -> List[str]:
    """Names of the loss classes with a fused target, sorted."""
    _load()
    return sorted(cls.__name__ for cls in _FUSIONS)


def _load() -> None:
    from . import fused_maskd, fused_softmax, fused_squared  # noqa: F401


def fusion_for(loss: nn.Module) -> Tuple[Optional['LossFusion'], str]:
    """The fusion of ``loss``, or None and why it has none."""
    _load()
    cls = _FUSIONS.get(type(loss))
    if cls is None:
        return None, (f'{type(loss).__name__} is not a squared-error or '
                      'softmax-KL loss with a known fused form (fusable: '
                      f'{", ".join(fusable_losses())})')
    fusion = cls(loss)
    why = fusion.blocker()
    return (None, why) if why else (fusion, '')


def fusion_blocker(connector: Optional[nn.Module]) -> str:
    """Why a teacher-side connector prevents fusion ('' if it does not):
    the fused target is built without gradient, so a trainable connector
    on the Avatars would lose its gradient."""
    if connector is not None and any(p.requires_grad
                                     for p in connector.parameters()):
        return (f'its teacher-side connector {type(connector).__name__} '
                'is trainable (each Avatar passes through it with '
                'gradient)')
    return ''


def levels_of(value: Record) -> List[Tensor]:
    return [value] if isinstance(value, Tensor) else list(value)


class LossFusion:
    """The fused target of one loss instance (``self.loss``).

    Subclasses give, for a loss computed as ``sum_l c_l ||s_l - t_l||^2``
    or ``sum_l c_l sum t_l (log t_l - log q_l)`` over levels ``l``:
    :meth:`targets` (``t_l`` of one Avatar and its ``G``), :meth:`self_term`
    (``G`` of the fused target) and :meth:`student_loss` (``L(S, t)``, with
    the student's gradient). :meth:`fused_loss` puts them together.

    Args:
        loss (nn.Module): The loss module.
    """

    def __init__(self, loss: nn.Module) -> None:
        self.loss = loss

    def blocker(self) -> str:
        """Why this loss instance cannot be fused ('' if it can)."""
        if any(p.requires_grad for p in self.loss.parameters()):
            return (f'{type(self.loss).__name__} has trainable parameters '
                    'that each Avatar would train')
        return ''

    def targets(self, student: Record,
                avatar: Record) -> Tuple[List[Tensor], Tensor]:
        """``t_l`` per level for one Avatar, and ``G(t)`` (float64)."""
        raise NotImplementedError

    def self_term(self, student: Record, targets: List[Tensor]) -> Tensor:
        """``G`` of the fused target (float64)."""
        raise NotImplementedError

    def student_loss(self, student: Record, targets: List[Tensor]) -> Tensor:
        """``L(S, t)`` with ``t`` in the transformed space."""
        raise NotImplementedError

    def fused_loss(self, student: Record, avatars: Iterable[Record],
                   weights: Tensor) -> Tensor:
        """``sum_k w_k L(S, A_k)``, the student side computed once.

        Args:
            student (Record): The loss's student input (as it receives it).
            avatars (Iterable[Record]): The ``K`` Avatars as the loss would
                receive them, produced one at a time.
            weights (Tensor): ``(K,)`` Avatar weights, without gradient.

        Returns:
            Tensor: The loss value; its gradient reaches the student only.
        """
        sums: Optional[List[Tensor]] = None
        g_sum = weights.new_zeros((), dtype=torch.float64)
        with torch.no_grad():
            draws = iter(avatars)
            for w in weights:
                # no reference kept here (a zip would keep the last item):
                # targets() may free the Avatar as it goes
                targets, g = self.targets(student, next(draws))
                if sums is None:
                    sums = [t * w for t in targets]
                else:
                    for s, t in zip(sums, targets):
                        s.addcmul_(t, w)
                g_sum += w.double() * g
            # drop the last Avatar and the iterator (it may hold the stack)
            del targets
            avatars = draws = None  # noqa: F841
            # One W everywhere, so that the target-only terms of the fused
            # loss and of the gap cancel exactly (for a KL they are about
            # the entropy, often 100x the loss); W in float64 first, as the
            # student term W ||S||^2 must match sum_k w_k ||S||^2.
            total = weights.sum(dtype=torch.float64).to(sums[0].dtype)
            fused = [s.div_(total) for s in sums]
            gap = g_sum - total.double() * self.self_term(student, fused)
        value = total * self.student_loss(student, fused)
        return value + gap.to(value.dtype)


def sum64(x: Tensor) -> Tensor:
    """The sum of ``x`` as float64: float32 sums of its last dimension,
    added in float64 (``sum(dtype=torch.float64)`` would copy ``x`` to
    float64: twice its memory, and slower)."""
    if x.dim() < 2 or x.dtype == torch.float64:
        return x.sum(dtype=torch.float64)
    return x.reshape(-1, x.shape[-1]).sum(1).double().sum()


def sum_squares64(x: Tensor) -> Tensor:
    """``sum(x ** 2)`` as float64, in the manner of :func:`sum64`, in one
    pass over ``x``."""
    rows = x.reshape(-1, x.shape[-1]) if x.dim() >= 2 else x.reshape(1, -1)
    return torch.linalg.vector_norm(rows, dim=1).double().square().sum()
