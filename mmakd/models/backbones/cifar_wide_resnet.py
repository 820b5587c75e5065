# Copyright (c) mmakd contributors. All rights reserved.
"""The CIFAR Wide ResNets (WRN-d-k) as an MMPretrain backbone."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.model import BaseModule
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import Tensor, nn

from mmakd.registry import MODELS

__all__ = ['CifarWideResNet']


class _WideBasicBlock(BaseModule):
    """Pre-activation block: BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3.

    When the shape changes, the shortcut is a 1x1 convolution of the
    *activated* input (the first BN-ReLU is shared by both branches).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int,
                 drop_rate: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(
            in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else \
            nn.Identity()
        self.conv2 = nn.Conv2d(
            out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.shortcut: Optional[nn.Conv2d] = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(
                in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv1(act)
        out = self.conv2(self.dropout(self.relu2(self.bn2(out))))
        identity = x if self.shortcut is None else self.shortcut(act)
        return out + identity


@MODELS.register_module()
class CifarWideResNet(BaseBackbone):
    """WRN-``d``-``k`` of "Wide Residual Networks" (Zagoruyko & Komodakis,
    BMVC 2016, https://arxiv.org/abs/1605.07146): the CIFAR networks of the
    multi-granularity distillation paper (Shao & Chen,
    https://arxiv.org/abs/2108.06681), e.g. WRN-40-2 -> WRN-16-2.

    A 3x3 stem of 16 channels, then three groups of ``n = (d - 4) / 6``
    pre-activation basic blocks with ``16k``, ``32k`` and ``64k`` channels
    at strides 1, 2, 2, then a final BN-ReLU. MMPretrain has no Wide ResNet
    for CIFAR (its ``WideResNet`` configs are ImageNet bottleneck ResNets).
    Use it from an MMPretrain config as
    ``backbone=dict(type='mmrazor.CifarWideResNet', depth=40,
    widen_factor=2)``, followed by ``GlobalAveragePooling`` and a
    ``LinearClsHead`` with ``in_channels=64 * widen_factor``.

    Note:
        The output of a stage is its last block's output; the last stage
        is followed by the network's final BN-ReLU, so the pooled feature
        is what the classifier of the original network sees. Convolutions
        are initialised with Kaiming normal (fan-out), BatchNorms with
        weight 1 and bias 0, as in RepDistiller's CIFAR models, on which
        the reference code builds.

    Args:
        depth (int): ``d``, with ``(d - 4) % 6 == 0`` (16, 22, 28, 40...).
        widen_factor (int): ``k``. Defaults to 1.
        drop_rate (float): Dropout between the two convolutions of a block.
            Defaults to 0 (the distillation papers' setting).
        out_indices (Sequence[int]): Stages whose outputs are returned.
            Defaults to ``(2, )``.
        in_channels (int): Input channels. Defaults to 3.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to Kaiming (fan-out) for convolutions and constant 1/0
            for BatchNorms.
    """

    def __init__(
        self,
        depth: int,
        widen_factor: int = 1,
        drop_rate: float = 0.0,
        out_indices: Sequence[int] = (2, ),
        in_channels: int = 3,
        init_cfg: Optional[Union[Dict, List[Dict]]] = [
            dict(
                type='Kaiming',
                layer='Conv2d',
                mode='fan_out',
                nonlinearity='relu',
                distribution='normal'),
            dict(type='Constant', val=1, bias=0, layer='_BatchNorm')
        ]
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(
                f'CifarWideResNet: backbone.depth={depth!r} must be 6n + 4 '
                '(16, 22, 28, 40, ...).')
        if not isinstance(widen_factor, int) or widen_factor < 1:
            raise ValueError('CifarWideResNet: backbone.widen_factor='
                             f'{widen_factor!r} must be an integer >= 1.')
        if not out_indices or min(out_indices) < 0 or max(out_indices) > 2:
            raise ValueError('CifarWideResNet: backbone.out_indices='
                             f'{out_indices!r} must name stages 0, 1, 2.')
        self.depth = depth
        self.widen_factor = widen_factor
        self.out_indices = tuple(out_indices)
        num_blocks = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, padding=1, bias=False)
        self.layers: List[str] = []
        channels = 16
        for i, (width, stride) in enumerate(zip(widths, (1, 2, 2))):
            blocks = [
                _WideBasicBlock(channels if j == 0 else width, width,
                                stride if j == 0 else 1, drop_rate)
                for j in range(num_blocks)
            ]
            channels = width
            name = f'layer{i + 1}'
            self.add_module(name, nn.Sequential(*blocks))
            self.layers.append(name)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.feat_dim = channels

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Return the outputs of the stages in ``out_indices``.

        Args:
            x (Tensor): Images, (N, 3, H, W).

        Returns:
            tuple[Tensor]: One (N, C_i, H_i, W_i) map per selected stage;
            the last stage's output is after the final BN-ReLU.
        """
        outs = []
        x = self.conv1(x)
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i == len(self.layers) - 1:
                x = self.relu(self.bn(x))
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
