# Copyright (c) mmakd contributors. All rights reserved.
"""AKD's Avatar machinery: perturbations, standardisation, drift and
weights, and the fused targets of the losses that allow one."""
from .avatar_channel_dropout import AvatarChannelDropout
from .avatar_draw import AvatarDraw
from .avatar_dropout import AvatarDropout
from .avatar_gaussian_noise import AvatarGaussianNoise
from .avatar_perturbation_mix import AvatarPerturbationMix
from .base_perturbation import BaseAvatarPerturbation
from .base_teacher_avatars import AvatarGroup, BaseTeacherAvatars
from .builder import build_perturbation, registered_perturbations
from .functional import (avatar_channel_dropout, avatar_dropout,
                         avatar_gaussian_noise)
from .standardize import channel_moments, standardize
from .strength_perturbation import StrengthPerturbation
from .teacher_avatars import record_teacher_avatars, teacher_avatar_draws
from .teacher_dropout import TeacherDropout, default_dropout_modules
from .teacher_views import TeacherViews
from .uncertainty import (DEFAULT_TAU, avatar_uncertainty, avatar_weights,
                          combine_uncertainty)

__all__ = [
    'BaseAvatarPerturbation', 'StrengthPerturbation', 'AvatarDraw',
    'AvatarDropout', 'AvatarChannelDropout', 'AvatarGaussianNoise',
    'AvatarPerturbationMix', 'avatar_dropout', 'avatar_channel_dropout',
    'avatar_gaussian_noise', 'build_perturbation', 'registered_perturbations',
    'channel_moments', 'standardize', 'avatar_uncertainty',
    'combine_uncertainty', 'avatar_weights', 'DEFAULT_TAU',
    'BaseTeacherAvatars', 'AvatarGroup', 'TeacherViews', 'TeacherDropout',
    'default_dropout_modules', 'record_teacher_avatars', 'teacher_avatar_draws'
]
