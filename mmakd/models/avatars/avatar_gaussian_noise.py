# Copyright (c) mmakd contributors. All rights reserved.
from typing import Optional

from mmakd.registry import MODELS
from .functional import Strength, avatar_gaussian_noise, check_std
from .strength_perturbation import StrengthPerturbation

__all__ = ['AvatarGaussianNoise']


@MODELS.register_module()
class AvatarGaussianNoise(StrengthPerturbation):
    """Additive Gaussian-noise Avatars (AKD, Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722).

    ``A_k = T + std * sigma_c * eps_k``, with ``sigma_c`` the standard
    deviation of the teacher's channel ``c``
    (:func:`~mmakd.models.avatars.functional.avatar_gaussian_noise`).

    Args:
        std (float | Sequence[float]): Noise level relative to each
            channel's spread, >= 0, or one per Avatar. Defaults to 0.1.
        num_avatars (int, optional): ``K``. Defaults to None: ``len(std)``
            for a sequence, else 1.
    """

    strength_name = 'std'
    check = staticmethod(check_std)
    function = staticmethod(avatar_gaussian_noise)

    def __init__(self,
                 std: Strength = 0.1,
                 num_avatars: Optional[int] = None) -> None:
        super().__init__(std, num_avatars)
