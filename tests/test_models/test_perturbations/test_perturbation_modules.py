# Copyright (c) mmakd contributors. All rights reserved.
import pytest
import torch

from mmakd.models.perturbations import (AvatarChannelDropout, AvatarDropout,
                                        AvatarGaussianNoise,
                                        build_perturbation)
from mmakd.registry import MODELS


@pytest.mark.parametrize('cfg,cls', [
    (dict(type='AvatarDropout', p=0.2, num_avatars=3), AvatarDropout),
    (dict(type='AvatarChannelDropout', p=0.2), AvatarChannelDropout),
    (dict(type='AvatarGaussianNoise', std=0.5), AvatarGaussianNoise),
    (dict(type='mmrazor.AvatarDropout'), AvatarDropout),
])
def test_build_from_registry(cfg, cls):
    module = MODELS.build(cfg)
    assert isinstance(module, cls)
    x = torch.randn(2, 4, 8, 8)
    out = module(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == (module.num_avatars, 2, 4, 8, 8)
    assert module(x, num_avatars=5).shape[0] == 5


def test_extra_repr_shows_strength_and_k():
    assert repr(AvatarDropout(0.25, 4)) == 'AvatarDropout(p=0.25, num_avatars=4)'
    assert 'std=0.3, num_avatars=2' in repr(AvatarGaussianNoise(0.3, 2))
    assert AvatarDropout(0.0).is_identity
    assert not AvatarChannelDropout(0.1).is_identity


@pytest.mark.parametrize('cfg,error,match', [
    (dict(type='AvatarDropout', p=1.0), ValueError,
     r'^model.distiller.avatars.perturbation.p must be a number in \[0, 1\)'),
    (dict(type='AvatarGaussianNoise', std=-1), ValueError,
     r'^model.distiller.avatars.perturbation.std must be'),
    (dict(type='AvatarDropout', num_avatars=0), ValueError,
     r'perturbation.num_avatars must be an integer >= 1'),
    (dict(type='ChannelWiseDivergence'), TypeError,
     r'ChannelWiseDivergence is not an Avatar perturbation'),
    (dict(p=0.1), TypeError, r'must be a dict with a `type`'),
])
def test_build_errors_name_the_key(cfg, error, match):
    with pytest.raises(error, match=match):
        build_perturbation(cfg, 'model.distiller.avatars.perturbation')


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_builds_under_another_default_scope(scope):
    """Inside a detection or segmentation runner the default scope is not
    mmrazor; mmakd's modules must still resolve."""
    from mmengine.registry import DefaultScope, init_default_scope
    init_default_scope(scope)
    assert DefaultScope.get_current_instance().scope_name == scope
    module = build_perturbation(dict(type='AvatarDropout', p=0.3), 'key')
    assert isinstance(module, AvatarDropout) and module.p == 0.3
