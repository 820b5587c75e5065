# Copyright (c) mmakd contributors. All rights reserved.
"""The CIFAR ResNets (ResNet-8/14/20/32/44/56/110) as an MMPretrain
backbone."""
from typing import Any, Dict, Sequence, Tuple

from mmpretrain.models.backbones import ResNet_CIFAR
from mmpretrain.models.backbones.resnet import BasicBlock

from mmakd.registry import MODELS

__all__ = ['CifarResNet']


@MODELS.register_module()
class CifarResNet(ResNet_CIFAR):
    """The ResNet-``6n+2`` of "Deep Residual Learning for Image Recognition"
    (He et al., CVPR 2016, https://arxiv.org/abs/1512.03385), Sec. 4.2:
    the CIFAR networks of the multi-granularity distillation paper
    (Shao & Chen, https://arxiv.org/abs/2108.06681), e.g. ResNet-56 ->
    ResNet-20.

    A 3x3 stem of 16 channels, then three stages of ``n`` basic blocks with
    16, 32 and 64 channels at strides 1, 2, 2; ``depth = 6n + 2``. MMPretrain
    ships ``ResNet_CIFAR`` only with the four ImageNet stages (64 to 512
    channels, depth 18 to 152); this class reuses its stem, blocks and
    initialisation and adds the CIFAR depths. Use it from an MMPretrain
    config as ``backbone=dict(type='mmrazor.CifarResNet', depth=56)``,
    followed by ``GlobalAveragePooling`` and a ``LinearClsHead`` with
    ``in_channels=64``.

    Note:
        Shortcuts that change shape are a strided 1x1 convolution with
        BatchNorm (He et al.'s option B), as in MMPretrain's ``ResLayer``
        and in RepDistiller's CIFAR models, on which the reference code
        builds; He et al.'s CIFAR experiments used option A (zero
        padding), which has no parameters.

    Args:
        depth (int): One of 8, 14, 20, 32, 44, 56, 110.
        stem_channels (int): Channels of the stem. Defaults to 16.
        base_channels (int): Channels of the first stage; they double at
            each stage. Defaults to 16.
        num_stages (int): Defaults to 3.
        strides (Sequence[int]): Stride of each stage. Defaults to
            ``(1, 2, 2)``.
        dilations (Sequence[int]): Dilation of each stage. Defaults to
            ``(1, 1, 1)``.
        out_indices (Sequence[int]): Stages whose outputs are returned.
            Defaults to ``(2, )``.
        **kwargs: Other arguments of MMPretrain's ``ResNet`` (``norm_cfg``,
            ``frozen_stages``, ``zero_init_residual``, ``init_cfg``...).
    """

    arch_settings: Dict[int, Tuple[Any, Tuple[int, ...]]] = {
        depth: (BasicBlock, ((depth - 2) // 6, ) * 3)
        for depth in (8, 14, 20, 32, 44, 56, 110)
    }

    def __init__(self,
                 depth: int,
                 stem_channels: int = 16,
                 base_channels: int = 16,
                 num_stages: int = 3,
                 strides: Sequence[int] = (1, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1),
                 out_indices: Sequence[int] = (2, ),
                 **kwargs: Any) -> None:
        if depth not in self.arch_settings:
            raise KeyError(
                f'CifarResNet: depth={depth!r} is not a CIFAR ResNet depth '
                f'(backbone.depth must be one of '
                f'{sorted(self.arch_settings)}).')
        if num_stages != 3:
            raise ValueError('CifarResNet has 3 stages; backbone.num_stages='
                             f'{num_stages!r}.')
        super().__init__(
            depth=depth,
            stem_channels=stem_channels,
            base_channels=base_channels,
            num_stages=num_stages,
            strides=strides,
            dilations=dilations,
            out_indices=out_indices,
            **kwargs)
