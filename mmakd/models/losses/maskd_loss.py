# Copyright (c) mmakd contributors. All rights reserved.
"""MasKD: masked distillation with learnable receptive tokens."""
import math
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import _load_checkpoint
from torch import Tensor, nn

from mmakd.registry import MODELS

__all__ = ['MasKDLoss', 'mask_diversity']


def mask_diversity(masks: Tensor) -> Tensor:
    """Mean pairwise Dice coefficient between the masks of each sample.

    ``mean over n and t != u of 2 <m_nt, m_nu> / (|m_nt|^2 + |m_nu|^2)``:
    MasKD's diversity term (``dice_coeff`` of
    https://github.com/hunto/MasKD/blob/01a5c8e38bc316acab1f828ed6f63d47a427bb8c/mmdetection/maskd.py#L6),
    which its mask-learning stage adds to the task loss.

    Args:
        masks (Tensor): ``(N, T, H*W)`` soft masks.

    Returns:
        Tensor: Scalar in [0, 1]; lower means more diverse tokens.
    """
    n, t, _ = masks.shape
    inter = torch.einsum('nap,nbp->nab', masks, masks)
    sq = (masks * masks).sum(-1)
    dice = 2 * inter / (sq[:, :, None] + sq[:, None, :] + 1e-12)
    off_diagonal = 1 - torch.eye(t, device=masks.device, dtype=masks.dtype)
    return (dice * off_diagonal).sum() / (off_diagonal.sum() * n)


@MODELS.register_module()
class MasKDLoss(nn.Module):
    """MasKD loss ("Masked Distillation with Receptive Tokens", Huang et al.,
    ICLR 2023, https://arxiv.org/abs/2205.14589), the loss AKD was paired
    with for RetinaNet X101 -> R50 (Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722).

    ``T`` learnable receptive tokens (each a ``C``-vector) produce soft
    spatial masks ``m_t = sigmoid(token_t . x)`` from the teacher feature;
    the student and teacher features are compared inside each mask, each
    mask's squared error normalised by its area, and the masks weighted by
    a small predictor (``weight_mask``)::

        L = mean_n sum_t p_t * mean_c sum_hw (m_t * (S - T))^2 / sum_hw m_t

    After ``custom_mask_warmup`` iterations the teacher masks are multiplied
    by the masks the same tokens produce on the student (no gradient).

    Reference code: MasKD with Avatars,
    https://github.com/Gumpest/AvatarKD/blob/36b104f7c852ed26440105f22e40391fc5cdc0a3/mmrazor/models/losses/akd_maskd.py

    Note:
        Differences from the reference, all deliberate:

        - One loss per feature level (``channels`` is an int); the configs
          build the per-level losses with a comprehension. ``pretrained``
          reads the level's tokens from a MasKD checkpoint by
          ``pretrained_prefix`` (``'mask_modules.<level>.'``).
        - The iteration for ``custom_mask_warmup`` comes from MMEngine's
          message hub, not from a counter in the loss, so it is right when
          the loss is called several times per iteration (K Avatars) and
          after a resume; outside a runner the loss counts its calls.
        - Pretrained tokens are frozen by default (``freeze_masks``), as the
          reference config froze every loss parameter with ``lr_mult=0``;
          the zoo configs do both. Masks are made beforehand on the
          teacher by MasKD's first stage,
          :class:`~mmakd.models.MasKDMaskLearner`, whose checkpoints hold
          ``mask_modules.<level>.*``. Trainable tokens (no ``pretrained``,
          ``freeze_masks=False``) get the Dice diversity term of that stage
          (``diversity_weight``), taken on the tokens' own (teacher) masks
          before the student refinement. Trained with the distillation loss
          they still drift to the mask that is easiest to match (reported
          against a fixed student: the loss fell 1.493 -> 1.080 in 300 SGD
          steps while the largest mask weight rose 0.23 -> 0.99), so this
          is not the recipe.
        - Avatar perturbation and standardisation are not in the loss: they
          belong to :class:`~mmakd.models.AvatarDistiller`.

    Args:
        channels (int): Feature channels ``C``.
        num_tokens (int): Receptive tokens ``T``. Defaults to 6.
        weight_mask (bool): Weight the masks by a predicted distribution.
            Defaults to True.
        custom_mask (bool): Multiply teacher masks by student masks after
            the warm-up. Defaults to True.
        custom_mask_warmup (int): Iterations before that. Defaults to 1000.
        pretrained (str, optional): MasKD mask checkpoint (path or URL),
            e.g. a :class:`~mmakd.models.MasKDMaskLearner` checkpoint or
            the reference's published masks. Defaults to None.
        pretrained_prefix (str): Key prefix of this level's tokens in it:
            the checkpoint keys containing it, with everything up to and
            including it removed, must be exactly this loss's
            ``state_dict`` keys. Defaults to ``'mask_modules.0.'``.
        freeze_masks (bool, optional): Keep tokens and mask weights fixed.
            Defaults to None, i.e. True when ``pretrained`` is given.
        diversity_weight (float): Weight of the Dice term for trainable
            tokens. Defaults to 1.0.
        loss_weight (float): Weight of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 channels: int,
                 num_tokens: int = 6,
                 weight_mask: bool = True,
                 custom_mask: bool = True,
                 custom_mask_warmup: int = 1000,
                 pretrained: Optional[str] = None,
                 pretrained_prefix: str = 'mask_modules.0.',
                 freeze_masks: Optional[bool] = None,
                 diversity_weight: float = 1.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__()
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(f'channels must be a positive int, got '
                             f'{channels!r}')
        if not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f'num_tokens must be a positive int, got '
                             f'{num_tokens!r}')
        self.channels = channels
        self.num_tokens = num_tokens
        self.weight_mask = weight_mask
        self.custom_mask = custom_mask
        self.custom_mask_warmup = custom_mask_warmup
        self.diversity_weight = diversity_weight
        self.loss_weight = loss_weight
        self.mask_token = nn.Parameter(
            torch.randn(num_tokens, channels) * 0.01)
        if weight_mask:
            self.prob = nn.Sequential(
                nn.Conv2d(channels, channels, kernel_size=3, padding=1),
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(channels, num_tokens, kernel_size=1))
            for m in self.prob.modules():
                if isinstance(m, nn.Conv2d):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * \
                        m.out_channels
                    nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                    nn.init.zeros_(m.bias)
        if pretrained:
            self.load_pretrained(pretrained, pretrained_prefix)
        if freeze_masks is None:
            freeze_masks = pretrained is not None
        self.freeze_masks = freeze_masks
        if freeze_masks:
            for param in self.parameters():
                param.requires_grad_(False)
        self._calls = 0

    def load_pretrained(self, checkpoint: str, prefix: str) -> None:
        """Load this level's tokens from a MasKD mask checkpoint.

        The checkpoint's ``state_dict`` (or top level) holds keys
        ``...<prefix>mask_token`` and ``...<prefix>prob.*``.

        Raises:
            FileNotFoundError: A local ``checkpoint`` does not exist.
            KeyError: No key contains ``prefix``.
            RuntimeError: The keys or shapes do not match this loss
                (``channels``, ``num_tokens``, ``weight_mask``).
        """
        if '://' not in checkpoint and not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'MasKDLoss.pretrained={checkpoint!r} does not exist (looked '
                f'for {osp.abspath(checkpoint)}); learn the masks on the '
                'teacher first with a MasKDMaskLearner config (see '
                'configs/akd/mmdet/maskd/README.md).')
        ckpt = _load_checkpoint(checkpoint, map_location='cpu')
        state = ckpt.get('state_dict', ckpt)
        mine: Dict[str, Tensor] = {}
        for key, value in state.items():
            at = key.find(prefix)
            if at >= 0:
                mine[key[at + len(prefix):]] = value
        if not mine:
            raise KeyError(f'MasKDLoss.pretrained={checkpoint!r} has no keys '
                           f'containing {prefix!r} (pretrained_prefix).')
        try:
            self.load_state_dict(mine, strict=True)
        except RuntimeError as err:
            raise RuntimeError(
                f'MasKDLoss.pretrained={checkpoint!r} (pretrained_prefix='
                f'{prefix!r}) does not match MasKDLoss(channels='
                f'{self.channels}, num_tokens={self.num_tokens}, '
                f'weight_mask={self.weight_mask}): {err}') from err

    def masks(self, x: Tensor) -> Tensor:
        """Soft masks ``(N, T, H, W)`` of feature ``x`` ``(N, C, H, W)``."""
        n, c, h, w = x.shape
        attn = torch.einsum('tc,ncp->ntp', self.mask_token,
                            x.reshape(n, c, h * w))
        return attn.sigmoid().reshape(n, self.num_tokens, h, w)

    def mask_weights(self, x: Tensor) -> Tensor:
        """Mask weights ``(N, T)`` (softmax over tokens) of feature ``x``.

        Needs ``weight_mask=True``.
        """
        return self.prob(x).flatten(1).softmax(1)

    def _iteration(self) -> int:
        info = MessageHub.get_current_instance().get_info('iter')
        return self._calls if info is None else int(info)

    def forward(self, preds_S: Tensor, preds_T: Tensor) -> Tensor:
        """Masked feature distillation.

        Args:
            preds_S (Tensor): Student feature ``(N, C, H, W)``.
            preds_T (Tensor): Teacher feature (or Avatar), same shape.

        Returns:
            Tensor: Scalar loss.
        """
        if preds_S.shape != preds_T.shape or preds_T.dim() != 4 \
                or preds_T.shape[1] != self.channels:
            raise ValueError(
                f'MasKDLoss(channels={self.channels}) needs student and '
                f'teacher features (N, {self.channels}, H, W); got '
                f'{tuple(preds_S.shape)} and {tuple(preds_T.shape)}')
        iteration = self._iteration()
        self._calls += 1
        mask_T = self.masks(preds_T)
        mask = mask_T
        if self.custom_mask and iteration >= self.custom_mask_warmup:
            with torch.no_grad():
                mask_S = self.masks(preds_S)
            mask = mask_T * mask_S
        diff = (preds_S - preds_T).unsqueeze(1) * mask.unsqueeze(2)
        per_mask = diff.pow(2).sum((3, 4))  # (N, T, C)
        per_mask = per_mask / mask.sum((2, 3)).clamp_min(1e-6).unsqueeze(-1)
        per_mask = per_mask.mean(-1)  # (N, T)
        if self.weight_mask:
            probs = self.mask_weights(preds_T)  # (N, T)
            loss = (per_mask * probs).sum(1).mean()
        else:
            loss = per_mask.mean()
        if not self.freeze_masks and self.diversity_weight:
            loss = loss + self.diversity_weight * mask_diversity(
                mask_T.flatten(2))
        return self.loss_weight * loss
