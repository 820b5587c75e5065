# Copyright (c) mmakd contributors. All rights reserved.
"""MasKD, stage 1: learn the receptive tokens on a frozen teacher."""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import Tensor, nn

from mmakd.registry import MODELS
from ..losses.maskd_loss import MasKDLoss, mask_diversity
from ..utils.validation import close_module_hint
from .frozen_teacher_algorithm import FrozenTeacherAlgorithm

__all__ = ['MasKDMaskLearner']

ModelSpec = Union[BaseModel, Dict[str, Any]]


def masked_feature(module: MasKDLoss,
                   x: Tensor) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """One level of MasKD's first stage.

    ``x' = sum_t p_t * m_t * x`` with the soft masks ``m_t`` of the tokens
    and, with ``weight_mask``, their predicted weights ``p_t`` (without,
    the plain sum over tokens, as the reference).

    Args:
        module (MasKDLoss): The level's tokens and mask-weight predictor.
        x (Tensor): Teacher feature ``(N, C, H, W)``.

    Returns:
        tuple[Tensor, Tensor, Tensor | None]: The masked feature
        ``(N, C, H, W)``, the masks ``(N, T, H, W)`` and the mask weights
        ``(N, T)`` (None without ``weight_mask``).
    """
    masks = module.masks(x)  # (N, T, H, W)
    out = x.unsqueeze(1) * masks.unsqueeze(2)  # (N, T, C, H, W)
    weights = None
    if module.weight_mask:
        weights = module.mask_weights(x)
        out = out * weights[:, :, None, None, None]
    return out.sum(1), masks, weights


@MODELS.register_module()
class MasKDMaskLearner(FrozenTeacherAlgorithm):
    """Stage 1 of MasKD ("Masked Distillation with Receptive Tokens", Huang
    et al., ICLR 2023, https://arxiv.org/abs/2205.14589): learn the
    receptive tokens of each feature level on a frozen, trained detector.

    The teacher is frozen entirely (no gradient, eval mode: BN statistics
    fixed). A forward hook on ``mask_source`` (the FPN) replaces each output
    level ``x`` by the masked feature ``sum_t p_t m_t x`` (see
    :func:`masked_feature`), and the teacher's own detection loss on the
    masked features, plus ``diversity_weight`` times the Dice coefficient
    of each level's masks, trains the tokens ``m_t = sigmoid(token_t . x)``
    and the mask-weight predictor ``p``::

        L = L_task(head(sum_t p_t m_t x)) + diversity_weight * sum_l Dice_l

    Tokens that keep the task loss low cover what the detector needs;
    the Dice term keeps them apart. Only ``mask_modules`` learn. Each level
    is a :class:`~mmakd.models.MasKDLoss` (its ``mask_token`` and
    ``prob``), so the runner's checkpoints hold ``mask_modules.<level>.*``,
    exactly what the distillation stage loads with
    ``MasKDLoss(pretrained=CKPT, pretrained_prefix='mask_modules.<level>.')``
    (the same keys as the reference's published mask checkpoints).
    Validation and test evaluate the teacher on masked features (how much
    of the detector the masks keep), as the reference did.

    Reference code (mmcv 1.x hook):
    https://github.com/hunto/MasKD/blob/01a5c8e38bc316acab1f828ed6f63d47a427bb8c/mmdetection/maskd_hook.py
    and
    https://github.com/hunto/MasKD/blob/01a5c8e38bc316acab1f828ed6f63d47a427bb8c/mmdetection/maskd.py#L55

    Logged: the teacher's task losses (``loss_cls``, ``loss_bbox``, ...) on
    masked features, ``loss_mask_div<level>`` (weighted Dice) and, not
    part of the loss, ``mask_area<level>`` (mean mask value) and
    ``mask_weight_max<level>`` (mean over images of the largest mask
    weight). The objective has a trivial optimum: masks of ones (and of
    zeros) with one-hot weights give ``x' = x`` and keep the task loss at
    the teacher's. An area near 1 and a largest weight near 1 mean the
    masks have gone there.

    Note:
        Differences from the reference, all deliberate:

        - A registered algorithm with the teacher as a submodule instead of
          a hook that patches the runner's model and optimizer (which kept
          the masks only). The optimizer may hold the teacher's parameters
          too (MMEngine passes them all without a ``paramwise_cfg``), but
          they never get a gradient, and PyTorch's optimizers skip
          parameters without one, weight decay included.
        - The teacher runs in eval mode (the reference: train mode with
          BatchNorm layers in eval), so dropout, if any, is off too.
        - ``mask_source`` must run once per forward and return one tensor
          per entry of ``channels``; checked at build time where the
          module says (``num_outs``, ``out_channels``) and at every call.

    Args:
        teacher (dict | BaseModel): The trained detector (config key
            ``model.teacher``): an inline model dict, a
            ``dict(cfg_path=...)`` package or local config, or a model.
        channels (Sequence[int]): Channels of each output level of
            ``mask_source`` (``model.channels``), e.g. ``[256] * 5`` for
            an FPN with five outputs.
        teacher_ckpt (str, optional): Teacher checkpoint path or URL
            (``model.teacher_ckpt``). Defaults to None.
        teacher_ckpt_strict (bool): Strict loading. Defaults to True.
        mask_source (str): The teacher module whose outputs are masked
            (``model.mask_source``). Defaults to ``'neck'``.
        num_tokens (int): Receptive tokens per level. Defaults to 6.
        weight_mask (bool): Learn a mask-weight predictor. Defaults to True.
        diversity_weight (float): Weight of each level's Dice term.
            Defaults to 1.0 (the reference).
        data_preprocessor (dict | nn.Module, optional): Defaults to None,
            the teacher's own.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 teacher: ModelSpec,
                 channels: Sequence[int],
                 teacher_ckpt: Optional[str] = None,
                 teacher_ckpt_strict: bool = True,
                 mask_source: str = 'neck',
                 num_tokens: int = 6,
                 weight_mask: bool = True,
                 diversity_weight: float = 1.0,
                 data_preprocessor: Optional[Union[Dict, nn.Module]] = None,
                 init_cfg: Optional[Dict] = None) -> None:
        if isinstance(channels, int) or not isinstance(
                channels, Sequence) or not channels or not all(
                    isinstance(c, int) and c > 0 for c in channels):
            raise ValueError(
                'model.channels must list the channels of each level of '
                f'model.mask_source, e.g. [256] * 5; got {channels!r}.')
        if not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError('model.num_tokens must be a positive int, got '
                             f'{num_tokens!r}.')
        if not diversity_weight >= 0:
            raise ValueError('model.diversity_weight must be >= 0, got '
                             f'{diversity_weight!r}.')
        super().__init__(teacher, teacher_ckpt, teacher_ckpt_strict,
                         data_preprocessor, init_cfg)

        self.channels = list(channels)
        self.mask_source = mask_source
        self.diversity_weight = float(diversity_weight)
        self._check_source(self._find_source(mask_source))
        self.mask_modules = nn.ModuleList([
            MasKDLoss(
                channels=c,
                num_tokens=num_tokens,
                weight_mask=weight_mask,
                custom_mask=False,
                freeze_masks=False,
                diversity_weight=0.0) for c in self.channels
        ])
        self._dice: List[List[Tensor]] = []
        self._stats: Dict[str, Tensor] = {}
        self._find_source(mask_source).register_forward_hook(
            self._mask_outputs)

    def _find_source(self, name: str) -> nn.Module:
        modules = dict(self.teacher.named_modules())
        if name not in modules or not name:
            hint = close_module_hint(name, modules)
            raise ValueError(
                f'model.mask_source={name!r} is not a module of '
                f'{type(self.teacher).__name__}{hint} (its outputs, one '
                'tensor per level, are masked).')
        return modules[name]

    def _check_source(self, module: nn.Module) -> None:
        """What the module declares (MMDetection's FPN: ``num_outs``,
        ``out_channels``) must match ``channels``."""
        num_outs = getattr(module, 'num_outs', None)
        out_channels = getattr(module, 'out_channels', None)
        if isinstance(num_outs, int) and num_outs != len(self.channels):
            raise ValueError(
                f'model.channels lists {len(self.channels)} levels but '
                f'model.mask_source={self.mask_source!r} has {num_outs} '
                f'outputs (num_outs); give one entry per output.')
        if isinstance(out_channels, int) and any(c != out_channels
                                                 for c in self.channels):
            raise ValueError(
                f'model.channels={self.channels} but model.mask_source='
                f'{self.mask_source!r} outputs {out_channels} channels '
                '(out_channels).')

    def _mask_outputs(self, module: nn.Module, args: Any,
                      outputs: Any) -> Tuple[Tensor, ...]:
        """Forward hook: replace each level by its masked feature."""
        if isinstance(outputs, Tensor):
            outputs = (outputs, )
        levels = len(outputs) if isinstance(outputs, (tuple, list)) else None
        if levels != len(self.channels):
            got = type(outputs).__name__ if levels is None else levels
            raise ValueError(
                f'model.channels lists {len(self.channels)} levels but '
                f'model.mask_source={self.mask_source!r} returned {got}.')
        masked, dice, stats = [], [], {}
        for level, x in enumerate(outputs):
            mask_module = self.mask_modules[level]
            if not isinstance(x, Tensor) or x.dim() != 4 or \
                    x.shape[1] != mask_module.channels:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x)
                raise ValueError(
                    f'model.channels[{level}]={mask_module.channels} but '
                    f'level {level} of model.mask_source='
                    f'{self.mask_source!r} is {shape}; expected (N, '
                    f'{mask_module.channels}, H, W).')
            out, masks, weights = masked_feature(mask_module, x)
            masked.append(out)
            dice.append(mask_diversity(masks.flatten(2)))
            with torch.no_grad():
                stats[f'mask_area{level}'] = masks.mean()
                if weights is not None:
                    stats[f'mask_weight_max{level}'] = weights.max(1)[0].mean()
        self._dice.append(dice)
        self._stats = stats
        return tuple(masked)

    def loss(
        self,
        inputs: Tensor,
        data_samples: Optional[List[BaseDataElement]] = None
    ) -> Dict[str, Tensor]:
        """The frozen teacher's task losses on masked features, and the
        weighted Dice term of each level.

        Args:
            inputs (Tensor): Preprocessed images.
            data_samples (list): Samples with ground truth.

        Returns:
            dict[str, Tensor]: The teacher's losses and
            ``loss_mask_div<level>``.
        """
        self._dice = []
        losses = dict(self.teacher(inputs, data_samples, mode='loss'))
        dice, self._dice = self._dice, []
        if len(dice) != 1:
            raise RuntimeError(
                f'model.mask_source={self.mask_source!r} ran {len(dice)} '
                'times in one forward of the teacher; MasKDMaskLearner '
                'masks a module that runs once (the neck).')
        for level, d in enumerate(dice[0]):
            losses[f'loss_mask_div{level}'] = self.diversity_weight * d
        losses.update(self._stats)
        return losses

    def _forward(self,
                 inputs: Tensor,
                 data_samples: Optional[List[BaseDataElement]] = None) -> Any:
        """The teacher's raw outputs on masked features."""
        self._dice = []
        try:
            return self.teacher(inputs, data_samples, mode='tensor')
        finally:
            self._dice = []

    def _predict(
        self,
        inputs: Tensor,
        data_samples: Optional[List[BaseDataElement]] = None
    ) -> List[BaseDataElement]:
        """The teacher's predictions on masked features."""
        self._dice = []
        try:
            return self.teacher(inputs, data_samples, mode='predict')
        finally:
            self._dice = []
