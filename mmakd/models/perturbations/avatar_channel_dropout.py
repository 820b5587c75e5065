# Copyright (c) mmakd contributors. All rights reserved.
from typing import Optional

import torch
from torch import Tensor

from mmakd.registry import MODELS
from .base_perturbation import BaseAvatarPerturbation
from .functional import avatar_channel_dropout, check_probability

__all__ = ['AvatarChannelDropout']


@MODELS.register_module()
class AvatarChannelDropout(BaseAvatarPerturbation):
    """Channel dropout Avatars (AKD, Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722).

    For each Avatar and sample, whole channels are zeroed with probability
    ``p`` and the kept ones divided by ``1 - p``
    (:func:`~mmakd.models.perturbations.functional.avatar_channel_dropout`).

    Args:
        p (float): Drop probability in [0, 1). Defaults to 0.1.
        num_avatars (int): ``K``. Defaults to 1.
    """

    def __init__(self, p: float = 0.1, num_avatars: int = 1) -> None:
        super().__init__(num_avatars)
        self.p = check_probability(p)

    @property
    def is_identity(self) -> bool:
        return self.p == 0.0

    def perturb(self, x: Tensor, num_avatars: int,
                generator: Optional[torch.Generator]) -> Tensor:
        return avatar_channel_dropout(x, self.p, num_avatars, generator)

    def extra_repr(self) -> str:
        return f'p={self.p}, num_avatars={self.num_avatars}'
