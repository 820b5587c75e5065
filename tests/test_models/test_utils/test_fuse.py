# Copyright (c) mmakd contributors. All rights reserved.
"""fuse_frozen_conv_bn: folded modules compute what the unfolded ones did."""
import copy

import pytest
import torch
from mmcv.cnn import ConvModule
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmakd.models.utils import fuse_frozen_conv_bn


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, eval mode."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) * 3 + 0.2)
            if m.affine:
                m.weight.data.copy_(torch.randn(c, generator=g))
                m.bias.data.copy_(torch.randn(c, generator=g))
    model.eval()  # (mmseg's ResNet.train returns None)
    model.requires_grad_(False)
    return model


class Block(nn.Module):
    """ResNet-like: numbered conv/bn children, forward by attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(6, affine=False)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Crossed(nn.Module):
    """Adjacent conv and BN children that the forward does not chain."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.conv(x) + self.norm(x)


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        Block(), ConvModule(6, 4, 1, norm_cfg=dict(type='BN')),
        ConvModule(
            4, 4, 1, norm_cfg=dict(type='BN'), order=('conv', 'act', 'norm')),
        Crossed())


def test_folded_model_computes_the_same():
    model = _randomise_bn(_model())
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = model(x)
    fused = fuse_frozen_conv_bn(model)
    assert fused == ['0.0', '1.conv1', '1.conv2', '2.conv']
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    # folded BNs are Identity; the activation-before-norm ConvModule and the
    # unchained pair keep theirs
    assert isinstance(model[0][1], nn.Identity)
    assert isinstance(model[1].bn1, nn.Identity)
    assert isinstance(model[2].bn, nn.Identity)
    assert isinstance(model[3].bn, nn.BatchNorm2d)
    assert isinstance(model[4].norm, nn.BatchNorm2d)
    assert model[1].conv1.bias is not None
    assert not any(p.requires_grad for p in model.parameters())


def test_keep_leaves_recorded_pairs_alone():
    model = _randomise_bn(_model())
    x = torch.randn(2, 3, 8, 8)
    conv_out = model[1].conv1(model[0](x))  # what a recorder on conv1 sees
    fused = fuse_frozen_conv_bn(model, keep=['1.conv1', '0.1'])
    assert fused == ['1.conv2', '2.conv']
    assert isinstance(model[1].bn1, nn.BatchNorm2d)
    torch.testing.assert_close(model[1].conv1(model[0](x)), conv_out)


def test_real_resnet_backbone():
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        backbone = MODELS.build(
            dict(
                type='ResNetV1c',
                depth=18,
                base_channels=16,
                norm_cfg=dict(type='BN'),
                strides=(1, 2, 1, 1),
                dilations=(1, 1, 2, 4),
                contract_dilation=True))
    backbone = _randomise_bn(backbone)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    expected = backbone(x)
    before = copy.deepcopy(backbone)
    fused = fuse_frozen_conv_bn(backbone)
    # 3 stem convs, 2 per basic block x 8 blocks, 4 downsample convs (the
    # 64-channel stem feeds 16-channel layer1 too)
    assert len(fused) == 3 + 16 + 4
    assert sum('downsample' in name for name in fused) == 4
    assert not any(isinstance(m, _BatchNorm) for m in backbone.modules())
    for a, b in zip(backbone(x), expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert sum(isinstance(m, _BatchNorm) for m in before.modules()) == 23


@pytest.mark.parametrize(
    'bn', [nn.BatchNorm2d(4, track_running_stats=False),
           nn.BatchNorm2d(5)])
def test_unfoldable_pairs_are_skipped(bn):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), bn)
    assert fuse_frozen_conv_bn(model) == []
    assert model[1] is bn
