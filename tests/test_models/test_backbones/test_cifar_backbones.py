# Copyright (c) mmakd contributors. All rights reserved.
"""CifarResNet and CifarWideResNet: shapes, sizes of the paper's networks,
use from MMPretrain configs, validation."""
import pytest
import torch
from mmpretrain.registry import MODELS as PRETRAIN_MODELS

from mmakd.models import CifarResNet, CifarWideResNet


def classifier(backbone, channels, num_classes=100):
    return PRETRAIN_MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=backbone,
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=num_classes,
                in_channels=channels)))


@pytest.mark.parametrize(
    'backbone, channels, params',
    [
        # Parameter counts of the CIFAR-100 classifiers as the distillation
        # literature lists them (CRD, Tian et al. 2020): ResNet-20 0.28M,
        # ResNet-56 0.86M, WRN-16-2 0.70M, WRN-40-2 2.26M.
        (dict(type='mmrazor.CifarResNet', depth=20), 64, 0.28e6),
        (dict(type='mmrazor.CifarResNet', depth=56), 64, 0.86e6),
        (dict(type='mmrazor.CifarWideResNet', depth=16,
              widen_factor=2), 128, 0.70e6),
        (dict(type='mmrazor.CifarWideResNet', depth=40,
              widen_factor=2), 128, 2.26e6),
    ])
def test_paper_networks_from_an_mmpretrain_config(backbone, channels, params):
    model = classifier(backbone, channels)
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(params, rel=0.02)
    model.eval()
    with torch.no_grad():
        feats = model.backbone(torch.randn(2, 3, 32, 32))
        logits = model.head(model.neck(feats))
    assert feats[-1].shape == (2, channels, 8, 8)
    assert logits.shape == (2, 100)


def test_cifar_resnet_stages():
    net = CifarResNet(depth=20, out_indices=(0, 1, 2))
    outs = net(torch.randn(1, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 32, 32), (1, 32, 16, 16),
                                              (1, 64, 8, 8)]
    assert [len(getattr(net, f'layer{i}')) for i in (1, 2, 3)] == [3, 3, 3]


def test_wide_resnet_stages_and_final_activation():
    net = CifarWideResNet(depth=16, widen_factor=2, out_indices=(0, 1, 2))
    net.init_weights()
    outs = net(torch.randn(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 32, 32), (2, 64, 16, 16),
                                              (2, 128, 8, 8)]
    assert (outs[-1] >= 0).all()  # after the final BN-ReLU
    assert [len(getattr(net, f'layer{i}')) for i in (1, 2, 3)] == [2, 2, 2]
    assert net.feat_dim == 128


@pytest.mark.parametrize('cls, kwargs, match', [
    (CifarResNet, dict(depth=18), 'backbone.depth'),
    (CifarResNet, dict(depth=20, num_stages=4), 'backbone.num_stages'),
    (CifarWideResNet, dict(depth=18), 'backbone.depth'),
    (CifarWideResNet, dict(depth=16, widen_factor=0), 'backbone.widen_factor'),
    (CifarWideResNet, dict(depth=16, out_indices=(3, )), 'out_indices'),
])
def test_bad_settings_name_the_key(cls, kwargs, match):
    with pytest.raises((KeyError, ValueError), match=match):
        cls(**kwargs)
