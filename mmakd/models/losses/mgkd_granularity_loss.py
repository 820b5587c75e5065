# Copyright (c) mmakd contributors. All rights reserved.
"""Multi-granularity distillation: temperature-scaled KL, position-wise."""
from numbers import Real
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from mmakd.registry import MODELS

__all__ = ['MGKDGranularityLoss', 'mgkd_kl_divergence', 'check_temperature']


def check_temperature(tau: Any, key: str) -> float:
    """Return ``tau`` as a float, or raise naming the config ``key``."""
    if isinstance(tau, bool) or not isinstance(tau, Real) or not tau > 0:
        raise ValueError(f'{key} must be a number > 0, got {tau!r}')
    return float(tau)


def mgkd_kl_divergence(preds_S: Tensor, preds_T: Tensor, tau: float) -> Tensor:
    """``tau^2 * mean_positions KL(softmax(T / tau) || softmax(S / tau))``.

    The distributions are over dimension 1 (classes, or the units of an
    encoder code); every other position -- the sample, and for dense inputs
    each pixel -- is one distribution, and the KL divergences are averaged
    over positions. For ``(N, C)`` inputs this is PyTorch's
    ``kl_div(..., reduction='batchmean') * tau**2``, the reference code's
    formula. The teacher side is detached and both sides are computed in
    float32.

    Args:
        preds_S (Tensor): Student scores ``(N, C, *spatial)``.
        preds_T (Tensor): Teacher scores, same shape.
        tau (float): Temperature ``> 0``.

    Returns:
        Tensor: Scalar loss.
    """
    if preds_S.shape != preds_T.shape or preds_S.dim() < 2:
        raise ValueError(
            'the student and teacher inputs of a multi-granularity KL must '
            'have the same shape (N, C, *spatial); got '
            f'{tuple(preds_S.shape)} and {tuple(preds_T.shape)}')
    log_p_s = F.log_softmax(preds_S.float() / tau, dim=1)
    log_p_t = F.log_softmax(preds_T.detach().float() / tau, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    return kl.mean() * tau**2


@MODELS.register_module()
class MGKDGranularityLoss(nn.Module):
    """Granularity-wise distillation of "Multi-granularity for knowledge
    distillation" (Shao & Chen, Image and Vision Computing 2021,
    https://arxiv.org/abs/2108.06681).

    Temperature-scaled KL divergence between a student and a teacher
    output of one granularity::

        L = loss_weight * tau^2 * mean_positions
            KL(softmax(T / tau) || softmax(S / tau))

    In the distillation stage ``S`` and ``T`` are the codes of the student's
    and the teacher's encoders of one tube (outputs of
    :class:`~mmakd.models.MGKDAnalyser` ``connector_idx=0`` for the narrow
    tube, ``1`` for the wide one), with ``tau = 2`` for the narrow (64-d)
    tube and ``tau = 8`` for the wide (256-d) tube. In the analyser stage
    (:class:`~mmakd.models.MGKDAnalyserTrainer`) the same loss matches each
    tube decoder's class logits to the teacher's logits at the tube's
    temperature. Reference code (one distillation script):
    https://github.com/shaoeric/multi-granularity-distillation/blob/88916d801a5b7a8ceb92137a4681667c91bdc706/student.py

    Note:
        Choices the paper leaves open:

        - Distributions are taken over dimension 1 at every other position,
          so ``(N, C)`` codes and logits give the reference's
          ``batchmean`` KL and dense ``(N, C, H, W)`` inputs give a
          per-pixel KL averaged over the batch and the pixels (the dense
          variant; it does not grow with the resolution).
        - The teacher input is detached: no gradient reaches a teacher or
          its tubes through this loss, even if they were left trainable.
        - Computed in float32 (softmaxes of codes at ``tau = 2`` are
          sensitive to half precision).

    Args:
        tau (float): Temperature. Defaults to 2.0 (the narrow tube's).
        loss_weight (float): Weight of the loss. Defaults to 1.0 (the
            reference's weight of each tube's term).
    """

    def __init__(self, tau: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.tau = check_temperature(tau, 'MGKDGranularityLoss.tau')
        self.loss_weight = float(loss_weight)

    def forward(self, preds_S: Tensor, preds_T: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            preds_S (Tensor): Student code or logits ``(N, C, *spatial)``.
            preds_T (Tensor): Teacher code or logits, same shape.

        Returns:
            Tensor: Scalar loss.
        """
        return self.loss_weight * mgkd_kl_divergence(preds_S, preds_T,
                                                     self.tau)

    def extra_repr(self) -> str:
        return f'tau={self.tau}, loss_weight={self.loss_weight}'
