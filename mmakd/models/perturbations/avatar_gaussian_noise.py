# Copyright (c) mmakd contributors. All rights reserved.
from typing import Optional

import torch
from torch import Tensor

from mmakd.registry import MODELS
from .base_perturbation import BaseAvatarPerturbation
from .functional import (Strength, avatar_gaussian_noise, check_std,
                         check_strengths)

__all__ = ['AvatarGaussianNoise']


@MODELS.register_module()
class AvatarGaussianNoise(BaseAvatarPerturbation):
    """Additive Gaussian-noise Avatars (AKD, Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722).

    ``A_k = T + std * sigma_c * eps_k``, with ``sigma_c`` the standard
    deviation of the teacher's channel ``c``
    (:func:`~mmakd.models.perturbations.functional.avatar_gaussian_noise`).

    Args:
        std (float | Sequence[float]): Noise level relative to each
            channel's spread, >= 0, or one per Avatar. Defaults to 0.1.
        num_avatars (int, optional): ``K``. Defaults to None: ``len(std)``
            for a sequence, else 1.
    """

    def __init__(self,
                 std: Strength = 0.1,
                 num_avatars: Optional[int] = None) -> None:
        value, num_avatars = check_strengths(std, check_std, 'std',
                                             num_avatars)
        super().__init__(num_avatars)
        self.std = value

    @property
    def is_identity(self) -> bool:
        values = self.std if self.per_avatar else (self.std, )
        return all(v == 0.0 for v in values)

    @property
    def per_avatar(self) -> bool:
        return isinstance(self.std, tuple)

    def perturb(self, x: Tensor, num_avatars: int,
                generator: Optional[torch.Generator]) -> Tensor:
        return avatar_gaussian_noise(x, self.std, num_avatars, generator)

    def extra_repr(self) -> str:
        return f'std={self.std}, num_avatars={self.num_avatars}'
