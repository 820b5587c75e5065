# Copyright (c) mmakd contributors. All rights reserved.
from typing import Optional

from mmakd.registry import MODELS
from .functional import Strength, avatar_channel_dropout, check_probability
from .strength_perturbation import StrengthPerturbation

__all__ = ['AvatarChannelDropout']


@MODELS.register_module()
class AvatarChannelDropout(StrengthPerturbation):
    """Channel dropout Avatars (AKD, Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722).

    For each Avatar and sample, whole channels are zeroed with probability
    ``p`` and the kept ones divided by ``1 - p``
    (:func:`~mmakd.models.avatars.functional.avatar_channel_dropout`).

    Args:
        p (float | Sequence[float]): Drop probability in [0, 1), or one per
            Avatar. Defaults to 0.1.
        num_avatars (int, optional): ``K``. Defaults to None: ``len(p)``
            for a sequence, else 1.
    """

    strength_name = 'p'
    mask_channel = True
    check = staticmethod(check_probability)
    function = staticmethod(avatar_channel_dropout)

    def __init__(self,
                 p: Strength = 0.1,
                 num_avatars: Optional[int] = None) -> None:
        super().__init__(p, num_avatars)
