# Copyright (c) mmakd contributors. All rights reserved.
"""Fused targets of the forward-KL losses on softmaxes (CWD, logit KD,
multi-granularity KL): the target is the weighted mean of the Avatars'
softmaxes (see :mod:`.fusion`)."""
from typing import List, Tuple

import torch
import torch.nn.functional as F
from mmrazor.models.losses import ChannelWiseDivergence, KLDivergence
from torch import Tensor

from ..losses.mgkd_granularity_loss import MGKDGranularityLoss
from .fusion import LossFusion, register_fusion, sum64

__all__ = ['SoftmaxKLFusion']


class SoftmaxKLFusion(LossFusion):
    """``L(S, A) = c * sum p_A (log p_A - log q_S)``, ``p = softmax(x / tau)``
    over :meth:`distributions`; ``t = p_A``, ``G(t) = c sum t log t``."""

    def distributions(self, x: Tensor) -> Tuple[Tensor, int]:
        """``x`` scaled by the temperature, laid out for the softmax, and
        the softmax dimension."""
        return _over_tau(x, self.loss.tau), 1

    def scale(self, student: Tensor) -> float:
        """``c``: the loss's constant factor, for this student input."""
        raise NotImplementedError

    def check(self, student: Tensor, avatar: Tensor) -> None:
        """Raise as the loss does on inputs it does not take."""

    def targets(self, student: Tensor,
                avatar: Tensor) -> Tuple[List[Tensor], Tensor]:
        self.check(student, avatar)
        logits, dim = self.distributions(avatar)
        del avatar  # the Avatar may go once its softmax is taken
        log_p = F.log_softmax(logits, dim=dim)
        del logits
        p = log_p.exp()
        return [p], self.scale(student) * sum64(log_p.mul_(p))

    def self_term(self, student: Tensor, targets: List[Tensor]) -> Tensor:
        return self.scale(student) * sum64(torch.xlogy(targets[0], targets[0]))

    def student_loss(self, student: Tensor, targets: List[Tensor]) -> Tensor:
        logits, dim = self.distributions(student)
        p = targets[0]
        log_q = F.log_softmax(logits, dim=dim)
        return self.scale(student) * (torch.xlogy(p, p) - p * log_q).sum()


@register_fusion(ChannelWiseDivergence)
class CWDFusion(SoftmaxKLFusion):
    """MMRazor's ``ChannelWiseDivergence``: a softmax over the positions of
    each channel, ``c = loss_weight * tau^2 / (N C)``."""

    def check(self, student: Tensor, avatar: Tensor) -> None:
        assert student.shape[-2:] == avatar.shape[-2:]

    def distributions(self, x: Tensor) -> Tuple[Tensor, int]:
        h, w = x.shape[-2:]
        return _over_tau(x.reshape(-1, w * h), self.loss.tau), 1

    def scale(self, student: Tensor) -> float:
        n, c = student.shape[:2]
        return self.loss.loss_weight * self.loss.tau**2 / (c * n)


@register_fusion(KLDivergence)
class KLDivergenceFusion(SoftmaxKLFusion):
    """MMRazor's ``KLDivergence`` (softmax over dim 1); ``c`` follows its
    ``reduction``; ``reduction='none'`` (a tensor per element) is not
    fused."""

    def blocker(self) -> str:
        if self.loss.reduction == 'none':
            return ("KLDivergence(reduction='none') returns a tensor, not a "
                    'sum over Avatars of scalars')
        return super().blocker()

    def scale(self, student: Tensor) -> float:
        norm = {
            'batchmean': student.size(0),
            'mean': student.numel(),
            'sum': 1
        }[self.loss.reduction]
        return self.loss.loss_weight * self.loss.tau**2 / norm


@register_fusion(MGKDGranularityLoss)
class MGKDGranularityFusion(SoftmaxKLFusion):
    """mmakd's ``MGKDGranularityLoss``: KL over dim 1, averaged over the
    other positions, ``c = loss_weight * tau^2 C / numel``."""

    def check(self, student: Tensor, avatar: Tensor) -> None:
        if student.shape != avatar.shape or student.dim() < 2:
            # the loss's own message
            self.loss(student, avatar)

    def distributions(self, x: Tensor) -> Tuple[Tensor, int]:
        return _over_tau(x.float(), self.loss.tau), 1

    def scale(self, student: Tensor) -> float:
        positions = student.numel() // student.shape[1]
        return self.loss.loss_weight * self.loss.tau**2 / positions


def _over_tau(x: Tensor, tau: float) -> Tensor:
    """``x / tau``; ``x`` itself at ``tau = 1`` (no copy)."""
    return x if tau == 1 else x / tau
