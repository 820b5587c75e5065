# Copyright (c) mmakd contributors. All rights reserved.
from typing import Optional

from mmakd.registry import MODELS
from .functional import Strength, avatar_dropout, check_probability
from .strength_perturbation import StrengthPerturbation

__all__ = ['AvatarDropout']


@MODELS.register_module()
class AvatarDropout(StrengthPerturbation):
    """Element-wise dropout Avatars (AKD, Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722), the reference perturbation.

    Each element of each Avatar is zeroed with probability ``p``; the rest
    are divided by ``1 - p`` so that ``E[A_k] = T``
    (:func:`~mmakd.models.avatars.functional.avatar_dropout`).

    Args:
        p (float | Sequence[float]): Drop probability in [0, 1), or one per
            Avatar for heterogeneous Avatars, e.g. ``(0.05, 0.1, 0.2, 0.4)``.
            Defaults to 0.1 (the reference setting).
        num_avatars (int, optional): ``K``. Defaults to None: ``len(p)``
            for a sequence, else 1.
    """

    strength_name = 'p'
    mask_channel = False
    check = staticmethod(check_probability)
    function = staticmethod(avatar_dropout)

    def __init__(self,
                 p: Strength = 0.1,
                 num_avatars: Optional[int] = None) -> None:
        super().__init__(p, num_avatars)
