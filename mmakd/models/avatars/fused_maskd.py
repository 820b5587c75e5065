# Copyright (c) mmakd contributors. All rights reserved.
"""Fused target of :class:`~mmakd.models.MasKDLoss` with frozen tokens.

With frozen tokens MasKD is a squared error whose per-position weight
depends on the Avatar (its masks and mask weights)::

    L(S, A_k) = sum_{n,c,p} omega_k(n, p) (S - A_k)^2,
    omega_k(n, p) = lw / (N C) * sum_t prob_k(n, t) m_k(n, t, p)^2
                    / area_k(n, t)

(``prob = 1 / T`` without ``weight_mask``), so ``sum_k w_k L(S, A_k) =
sum Omega (S - Abar)^2 + [sum_k w_k sum omega_k A_k^2 - sum Omega Abar^2]``
with ``Omega = sum_k w_k omega_k`` and ``Abar = sum_k w_k omega_k A_k /
Omega``, a per-position weighted mean of the Avatars.
"""
from typing import Iterable

import torch
from torch import Tensor

from ..losses.maskd_loss import MasKDLoss
from .fusion import LossFusion, register_fusion, sum64

__all__ = ['MasKDFusion']


@register_fusion(MasKDLoss)
class MasKDFusion(LossFusion):
    """MasKD with frozen tokens (``freeze_masks``); trainable tokens learn
    from each Avatar's masks (and their diversity term), so they keep the
    per-Avatar loop.

    Note:
        ``MasKDLoss`` counts its calls for ``custom_mask_warmup`` when no
        runner gives the iteration; the fused call advances that count by
        ``K``, as the loop's ``K`` calls do, and uses the count of the
        first call for all Avatars (the loop switches the student mask on
        at the call that crosses the warmup, possibly mid-step).
    """

    def blocker(self) -> str:
        if not self.loss.freeze_masks:
            return ('MasKDLoss(freeze_masks=False) trains its tokens on '
                    "each Avatar's masks")
        return super().blocker()

    def _omega(self, avatar: Tensor, mask_s) -> Tensor:
        loss = self.loss
        mask = loss.masks(avatar)  # (N, T, H, W)
        if mask_s is not None:
            mask = mask * mask_s
        area = mask.sum((2, 3)).clamp_min(1e-6)  # (N, T)
        n, c = avatar.shape[:2]
        if loss.weight_mask:
            probs = loss.mask_weights(avatar)  # (N, T)
            norm = n * c
        else:
            probs = torch.ones_like(area)
            norm = n * c * loss.num_tokens
        coef = (probs / area)[..., None, None]
        return loss.loss_weight / norm * (coef * mask.square()).sum(
            1, keepdim=True)  # (N, 1, H, W)

    def fused_loss(self, student: Tensor, avatars: Iterable[Tensor],
                   weights: Tensor) -> Tensor:
        loss = self.loss
        iteration = loss._iteration()
        loss._calls += len(weights)
        mask_s = None
        with torch.no_grad():
            if loss.custom_mask and iteration >= loss.custom_mask_warmup:
                mask_s = loss.masks(student)
            omega_sum = numerator = None
            g_sum = weights.new_zeros((), dtype=torch.float64)
            draws = iter(avatars)
            for w in weights:
                avatar = next(draws)
                if student.shape != avatar.shape or avatar.dim() != 4 \
                        or avatar.shape[1] != loss.channels:
                    loss(student, avatar)  # its own error
                omega = self._omega(avatar, mask_s) * w
                weighted = omega * avatar
                g_sum += sum64(weighted * avatar)
                if omega_sum is None:
                    omega_sum, numerator = omega, weighted
                else:
                    omega_sum.add_(omega)
                    numerator.add_(weighted)
            del avatar, omega, weighted
            avatars = draws = None  # noqa: F841  (they may hold the stack)
            fused = numerator / omega_sum.clamp_min(
                torch.finfo(numerator.dtype).tiny)
            gap = g_sum - sum64(omega_sum * fused.square())
        value = (omega_sum * (student - fused).square()).sum()
        return value + gap.to(value.dtype)
