# Copyright (c) mmakd contributors. All rights reserved.
"""Fused targets of the squared-error losses (MGD, L2, PKD, AT): the
target is the weighted mean of the Avatars after the loss's own transform
of its teacher input (see :mod:`.fusion`)."""
from typing import List, Tuple

import torch.nn.functional as F
from mmrazor.models.losses import ATLoss, L2Loss, MGDLoss, PKDLoss
from torch import Tensor

from .fusion import LossFusion, levels_of, register_fusion, sum_squares64

__all__ = ['SquaredErrorFusion']


class SquaredErrorFusion(LossFusion):
    """``L(S, A) = sum_l c_l ||s_l - t_l||^2``: ``t_l`` the loss's transform
    of level ``l`` of the Avatar (:meth:`teacher_levels`), ``s_l`` of the
    student's (:meth:`student_levels`); ``G(t) = sum_l c_l ||t_l||^2``."""

    def teacher_levels(self, student, avatar) -> List[Tensor]:
        """The transformed teacher levels ``t_l``."""
        return [avatar]

    def student_levels(self, student, targets: List[Tensor]) -> List[Tensor]:
        """The transformed student levels ``s_l`` (with gradient)."""
        return [student]

    def scale(self, level: Tensor) -> float:
        """``c_l`` for a transformed level."""
        raise NotImplementedError

    def self_term(self, student, targets: List[Tensor]):
        return sum(self.scale(t) * sum_squares64(t) for t in targets)

    def targets(self, student, avatar) -> Tuple[List[Tensor], Tensor]:
        targets = self.teacher_levels(student, avatar)
        return targets, self.self_term(student, targets)

    def student_loss(self, student, targets: List[Tensor]) -> Tensor:
        loss = 0.
        for s, t in zip(self.student_levels(student, targets), targets):
            assert s.shape == t.shape, (tuple(s.shape), tuple(t.shape))
            loss = loss + self.scale(s) * (s - t).square().sum()
        return loss


@register_fusion(MGDLoss)
class MGDFusion(SquaredErrorFusion):
    """MMRazor's ``MGDLoss``: ``alpha_mgd * ||S - T||^2 / N``."""

    def teacher_levels(self, student, avatar) -> List[Tensor]:
        assert student.shape == avatar.shape
        return [avatar]

    def scale(self, level: Tensor) -> float:
        return self.loss.alpha_mgd / level.shape[0]


@register_fusion(L2Loss)
class L2Fusion(SquaredErrorFusion):
    """MMRazor's ``L2Loss`` (rows scaled to norm ``mult`` when
    ``normalize``); ``dist=True`` (a square root of the sum) is not
    fused."""

    def blocker(self) -> str:
        if self.loss.dist:
            return ('L2Loss(dist=True) takes the square root of the squared '
                    'error, which is not a weighted sum over Avatars')
        return super().blocker()

    def _transform(self, x: Tensor) -> Tensor:
        return self.loss.normalize_feature(x) if self.loss.normalize else x

    def teacher_levels(self, student, avatar) -> List[Tensor]:
        return [self._transform(avatar)]

    def student_levels(self, student, targets: List[Tensor]) -> List[Tensor]:
        return [self._transform(student)]

    def scale(self, level: Tensor) -> float:
        denom = level.numel() if self.loss.div_element else level.size(0)
        return self.loss.loss_weight / denom


@register_fusion(PKDLoss)
class PKDFusion(SquaredErrorFusion):
    """MMRazor's ``PKDLoss``: per level, both sides standardised per channel
    (``norm``) after the smaller one is resized, ``c_l = loss_weight /
    (2 numel_l)``. The target averages the *standardised* Avatars."""

    def teacher_levels(self, student, avatar) -> List[Tensor]:
        out = []
        for s, t in zip(levels_of(student), levels_of(avatar)):
            if s.shape[2] != t.shape[2] and not self.loss.resize_stu:
                t = F.interpolate(t, s.shape[2:], mode='bilinear')
            out.append(self.loss.norm(t))
        return out

    def student_levels(self, student, targets: List[Tensor]) -> List[Tensor]:
        out = []
        for s, t in zip(levels_of(student), targets):
            if s.shape[2] != t.shape[2]:  # resize_stu: the student to T
                s = F.interpolate(s, t.shape[2:], mode='bilinear')
            out.append(self.loss.norm(s))
        return out

    def scale(self, level: Tensor) -> float:
        return self.loss.loss_weight / (2 * level.numel())


@register_fusion(ATLoss)
class ATFusion(SquaredErrorFusion):
    """MMRazor's ``ATLoss``: unit-norm attention maps, ``c = loss_weight /
    numel``. The target averages the Avatars' attention maps."""

    def teacher_levels(self, student, avatar) -> List[Tensor]:
        return [self.loss.calc_attention_matrix(avatar)]

    def student_levels(self, student, targets: List[Tensor]) -> List[Tensor]:
        return [self.loss.calc_attention_matrix(student)]

    def scale(self, level: Tensor) -> float:
        return self.loss.loss_weight / level.numel()
