# Copyright (c) mmakd contributors. All rights reserved.
import pytest
import torch

from mmakd.models.avatars import (AvatarChannelDropout, AvatarDropout,
                                  AvatarGaussianNoise, AvatarPerturbationMix,
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
    assert repr(AvatarDropout(0.25,
                              4)) == 'AvatarDropout(p=0.25, num_avatars=4)'
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


def test_per_avatar_strengths_fix_k():
    module = AvatarDropout(p=[0.05, 0.1, 0.2, 0.4])
    assert module.per_avatar and module.num_avatars == 4
    assert module.p == (0.05, 0.1, 0.2, 0.4)
    assert repr(module) == \
        'AvatarDropout(p=(0.05, 0.1, 0.2, 0.4), num_avatars=4)'
    assert module(torch.randn(2, 4, 8, 8)).shape[0] == 4
    with pytest.raises(ValueError, match='cannot draw 2'):
        module(torch.randn(2, 4, 8, 8), num_avatars=2)
    assert AvatarGaussianNoise(std=(0.0, 0.0)).is_identity
    assert not AvatarChannelDropout(p=(0.0, 0.1)).is_identity
    assert not AvatarDropout(0.1).per_avatar


def test_a_list_mixes_perturbation_types():
    """Two dropout and two noise Avatars: K = 4, each member one draw, in
    the order given."""
    module = build_perturbation([
        dict(type='AvatarDropout', p=0.5, num_avatars=2),
        dict(type='AvatarGaussianNoise', std=(0.1, 0.2)),
    ], 'model.distiller.avatars.perturbation')
    assert isinstance(module, AvatarPerturbationMix)
    assert module.num_avatars == 4 and module.per_avatar
    x = torch.rand(2, 8, 16, 16) + 1.0
    g = torch.Generator().manual_seed(0)
    out = module(x, generator=g)
    assert out.shape == (4, 2, 8, 16, 16)
    zeros = (out == 0).float().mean((1, 2, 3, 4))
    assert (zeros[:2] > 0.4).all() and (zeros[2:] == 0).all()
    g = torch.Generator().manual_seed(0)
    dropout = AvatarDropout(0.5, 2)(x, generator=g)
    noise = AvatarGaussianNoise((0.1, 0.2))(x, generator=g)
    assert torch.equal(out, torch.cat([dropout, noise]))
    assert MODELS.build(
        dict(
            type='AvatarPerturbationMix',
            perturbations=[dict(type='AvatarDropout')])).num_avatars == 1


@pytest.mark.parametrize('cfg,error,match', [
    ([], TypeError, r'key must be a non-empty list'),
    ([dict(type='AvatarDropout', p=2.0)
      ], ValueError, r'^key\[0\].p must be a number in \[0, 1\)'),
    ([dict(type='ChannelWiseDivergence')], TypeError,
     r'key\[0\]: ChannelWiseDivergence is not an Avatar perturbation'),
])
def test_mix_errors_name_the_member(cfg, error, match):
    with pytest.raises(error, match=match):
        build_perturbation(cfg, 'key')
