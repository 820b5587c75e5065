# Copyright (c) mmakd contributors. All rights reserved.
from typing import Optional

import torch
from torch import Tensor

from mmakd.registry import MODELS
from .base_perturbation import BaseAvatarPerturbation
from .functional import avatar_gaussian_noise, check_std

__all__ = ['AvatarGaussianNoise']


@MODELS.register_module()
class AvatarGaussianNoise(BaseAvatarPerturbation):
    """Additive Gaussian-noise Avatars (AKD, Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722).

    ``A_k = T + std * sigma_c * eps_k``, with ``sigma_c`` the standard
    deviation of the teacher's channel ``c``
    (:func:`~mmakd.models.perturbations.functional.avatar_gaussian_noise`).

    Args:
        std (float): Noise level relative to each channel's spread, >= 0.
            Defaults to 0.1.
        num_avatars (int): ``K``. Defaults to 1.
    """

    def __init__(self, std: float = 0.1, num_avatars: int = 1) -> None:
        super().__init__(num_avatars)
        self.std = check_std(std)

    @property
    def is_identity(self) -> bool:
        return self.std == 0.0

    def perturb(self, x: Tensor, num_avatars: int,
                generator: Optional[torch.Generator]) -> Tensor:
        return avatar_gaussian_noise(x, self.std, num_avatars, generator)

    def extra_repr(self) -> str:
        return f'std={self.std}, num_avatars={self.num_avatars}'
