# Copyright (c) mmakd contributors. All rights reserved.
"""Multi-granularity distillation: stable excitation."""
from typing import Optional

import torch
from torch import Tensor, nn

from mmakd.registry import MODELS
from .mgkd_granularity_loss import check_temperature, mgkd_kl_divergence

__all__ = ['MGKDStableExcitationLoss']


@MODELS.register_module()
class MGKDStableExcitationLoss(nn.Module):
    """Stable excitation of "Multi-granularity for knowledge distillation"
    (Shao & Chen, Image and Vision Computing 2021,
    https://arxiv.org/abs/2108.06681).

    The student's logits are distilled from the average of the teacher's
    logits and the class logits of the teacher's two tube decoders, with
    the temperature-scaled KL divergence of KD::

        E = (T + D_narrow + D_wide) / 3
        L = loss_weight * tau^2 * mean_positions
            KL(softmax(E / tau) || softmax(S / tau))

    The target ``E`` averages three views of the same teacher at different
    granularities, which steadies the supervision. With a KD base this loss
    *replaces* KD's term (KD's target becomes ``E``); the reference code's
    stable-excitation script does exactly that:
    https://github.com/shaoeric/multi-granularity-distillation/blob/88916d801a5b7a8ceb92137a4681667c91bdc706/student_stable.py

    Wiring (``loss_forward_mappings``): ``preds_S`` the student's logits
    (``head.fc`` outputs), ``preds_T`` the teacher's logits, and
    ``preds_T_narrow`` / ``preds_T_wide`` the teacher-side
    :class:`~mmakd.models.MGKDAnalyser` outputs ``connector_idx=2`` and
    ``3``. All three teacher inputs are detached.

    Note:
        Choices the paper leaves open:

        - Logits are averaged (not probabilities), as in the reference code.
        - This loss takes three teacher inputs instead of the usual
          ``(preds_S, preds_T)`` pair: the average needs the teacher's
          logits and both tube decoders, which MMRazor records separately,
          and a connector sees only one record. For the same reason it
          cannot be one of :class:`~mmakd.models.AvatarDistiller`'s
          ``avatars.losses`` (AKD perturbs a loss's single teacher input);
          it is computed beside them unchanged.
        - Distributions are over dimension 1 at every other position, so
          dense ``(N, K, H, W)`` logits give a per-pixel KL averaged over
          the batch and the pixels, like
          :class:`~mmakd.models.MGKDGranularityLoss`.

    Args:
        tau (float): Temperature. Defaults to 4.0 (the reference's KD
            temperature on CIFAR-100).
        loss_weight (float): Weight of the loss. Defaults to 1.0; the
            reference's CIFAR-100 KD setting is 0.8 with 0.2 on the
            student's cross-entropy.
    """

    def __init__(self, tau: float = 4.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.tau = check_temperature(tau, 'MGKDStableExcitationLoss.tau')
        self.loss_weight = float(loss_weight)

    @staticmethod
    def target(preds_T: Tensor, preds_T_narrow: Tensor,
               preds_T_wide: Tensor) -> Tensor:
        """The stable-excitation target: the mean of the three logits.

        Args:
            preds_T (Tensor): Teacher logits ``(N, K, *spatial)``.
            preds_T_narrow (Tensor): Narrow tube decoder logits, same shape.
            preds_T_wide (Tensor): Wide tube decoder logits, same shape.

        Returns:
            Tensor: Detached float32 mean, same shape.
        """
        shapes = {
            tuple(t.shape)
            for t in (preds_T, preds_T_narrow, preds_T_wide)
        }
        if len(shapes) != 1:
            raise ValueError(
                'MGKDStableExcitationLoss: preds_T, preds_T_narrow and '
                'preds_T_wide must have one shape (the teacher analyser '
                'needs num_classes equal to the teacher head\'s); got '
                f'{tuple(preds_T.shape)}, {tuple(preds_T_narrow.shape)} and '
                f'{tuple(preds_T_wide.shape)}')
        with torch.no_grad():
            return (preds_T.float() + preds_T_narrow.float() +
                    preds_T_wide.float()) / 3

    def forward(self,
                preds_S: Tensor,
                preds_T: Tensor,
                preds_T_narrow: Optional[Tensor] = None,
                preds_T_wide: Optional[Tensor] = None) -> Tensor:
        """Compute the loss.

        Args:
            preds_S (Tensor): Student logits ``(N, K, *spatial)``.
            preds_T (Tensor): Teacher logits, same shape.
            preds_T_narrow (Tensor): Teacher narrow tube decoder logits.
            preds_T_wide (Tensor): Teacher wide tube decoder logits.

        Returns:
            Tensor: Scalar loss.
        """
        if preds_T_narrow is None or preds_T_wide is None:
            raise ValueError(
                'MGKDStableExcitationLoss needs preds_T_narrow and '
                'preds_T_wide in its loss_forward_mappings entry (the '
                "teacher MGKDAnalyser's outputs connector_idx=2 and 3).")
        target = self.target(preds_T, preds_T_narrow, preds_T_wide)
        return self.loss_weight * mgkd_kl_divergence(preds_S, target, self.tau)

    def extra_repr(self) -> str:
        return f'tau={self.tau}, loss_weight={self.loss_weight}'
