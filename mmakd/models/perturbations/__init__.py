# Copyright (c) mmakd contributors. All rights reserved.
from .avatar_channel_dropout import AvatarChannelDropout
from .avatar_dropout import AvatarDropout
from .avatar_gaussian_noise import AvatarGaussianNoise
from .avatar_perturbation_mix import AvatarPerturbationMix
from .base_perturbation import BaseAvatarPerturbation
from .functional import (avatar_channel_dropout, avatar_dropout,
                         avatar_gaussian_noise)

__all__ = [
    'BaseAvatarPerturbation', 'AvatarDropout', 'AvatarChannelDropout',
    'AvatarGaussianNoise', 'AvatarPerturbationMix', 'avatar_dropout',
    'avatar_channel_dropout', 'avatar_gaussian_noise'
]
from .builder import build_perturbation  # noqa: E402

__all__ += ['build_perturbation']
