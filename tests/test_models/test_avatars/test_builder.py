# Copyright (c) mmakd contributors. All rights reserved.
"""Errors of ``build_perturbation`` name the config key and say how to fix
it: an unknown type lists the registered perturbations; a type changed over
an inherited dict names the stale argument and ``_delete_=True``."""
import pytest

from mmakd.models.avatars import (AvatarDropout, AvatarGaussianNoise,
                                  build_perturbation)

KEY = 'model.distiller.avatars.perturbation'


def test_registered_perturbations_lists_the_avatar_types_only():
    from mmakd.models.avatars.builder import registered_perturbations
    names = registered_perturbations()
    for name in ('AvatarChannelDropout', 'AvatarDropout',
                 'AvatarGaussianNoise', 'AvatarPerturbationMix'):
        assert name in names
    assert 'ChannelWiseDivergence' not in names  # a loss, same registry
    assert names == sorted(names)


def test_unknown_type_names_the_key_and_lists_the_registered_ones():
    with pytest.raises(KeyError) as info:
        build_perturbation(dict(type='AvatarDropuot', p=0.1), KEY)
    message = info.value.args[0]
    assert message.startswith(f"{KEY}.type='AvatarDropuot' is not a "
                              'registered Avatar perturbation')
    assert 'AvatarChannelDropout, AvatarDropout, AvatarGaussianNoise' in \
        message


def test_unknown_type_in_a_list_names_its_index():
    with pytest.raises(KeyError) as info:
        build_perturbation([
            dict(type='AvatarDropout', p=0.1),
            dict(type='AvatarGausianNoise', std=0.1)
        ], KEY)
    assert info.value.args[0].startswith(
        f"{KEY}[1].type='AvatarGausianNoise' is not a registered Avatar "
        'perturbation')


def test_scoped_type_still_builds():
    module = build_perturbation(dict(type='mmrazor.AvatarGaussianNoise'), KEY)
    assert isinstance(module, AvatarGaussianNoise)


def test_argument_of_another_type_says_how_to_replace_the_dict():
    """What ``--cfg-options KEY.type=AvatarGaussianNoise`` over
    ``dict(type='AvatarDropout', p=0.1)`` gives."""
    with pytest.raises(TypeError) as info:
        build_perturbation(dict(type='AvatarGaussianNoise', p=0.1), KEY)
    message = str(info.value)
    assert message.startswith(
        f"{KEY}: AvatarGaussianNoise takes no argument 'p' (its arguments: "
        'std, num_avatars).')
    assert f'{KEY}=dict(_delete_=True, ' \
        "type='AvatarGaussianNoise', ...)" in message
    assert f'--cfg-options {KEY}._delete_=True {KEY}.type=' \
        'AvatarGaussianNoise' in message


def test_argument_of_another_type_in_a_list_names_its_index():
    with pytest.raises(
            TypeError,
            match=r"perturbation\[0\]: AvatarDropout "
            r"takes no argument 'std'"):
        build_perturbation([dict(type='AvatarDropout', std=0.1)], KEY)


def test_value_errors_keep_their_message():
    with pytest.raises(ValueError, match=rf'^{KEY}.p must be a number'):
        build_perturbation(dict(type='AvatarDropout', p=2.0), KEY)
    assert isinstance(
        build_perturbation(dict(type='AvatarDropout'), KEY), AvatarDropout)
