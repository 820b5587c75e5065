# Copyright (c) mmakd contributors. All rights reserved.
from typing import Optional

import torch
from torch import Tensor

from mmakd.registry import MODELS
from .base_perturbation import BaseAvatarPerturbation
from .functional import (Strength, avatar_channel_dropout, check_probability,
                         check_strengths)

__all__ = ['AvatarChannelDropout']


@MODELS.register_module()
class AvatarChannelDropout(BaseAvatarPerturbation):
    """Channel dropout Avatars (AKD, Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722).

    For each Avatar and sample, whole channels are zeroed with probability
    ``p`` and the kept ones divided by ``1 - p``
    (:func:`~mmakd.models.perturbations.functional.avatar_channel_dropout`).

    Args:
        p (float | Sequence[float]): Drop probability in [0, 1), or one per
            Avatar. Defaults to 0.1.
        num_avatars (int, optional): ``K``. Defaults to None: ``len(p)``
            for a sequence, else 1.
    """

    def __init__(self,
                 p: Strength = 0.1,
                 num_avatars: Optional[int] = None) -> None:
        value, num_avatars = check_strengths(p, check_probability, 'p',
                                             num_avatars)
        super().__init__(num_avatars)
        self.p = value

    @property
    def is_identity(self) -> bool:
        values = self.p if self.per_avatar else (self.p, )
        return all(v == 0.0 for v in values)

    @property
    def per_avatar(self) -> bool:
        return isinstance(self.p, tuple)

    def perturb(self, x: Tensor, num_avatars: int,
                generator: Optional[torch.Generator]) -> Tensor:
        return avatar_channel_dropout(x, self.p, num_avatars, generator)

    def extra_repr(self) -> str:
        return f'p={self.p}, num_avatars={self.num_avatars}'
