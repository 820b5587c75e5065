# Copyright (c) mmakd contributors. All rights reserved.
from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor

from .avatar_draw import AvatarDraw
from .base_perturbation import BaseAvatarPerturbation
from .functional import (Strength, check_strengths, dropout_mask_shape,
                         keep_masks)

__all__ = ['StrengthPerturbation']


class StrengthPerturbation(BaseAvatarPerturbation):
    """An Avatar perturbation set by one strength, for all Avatars or one
    per Avatar (AKD, Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722).

    A subclass names its strength (``strength_name``, e.g. ``'p'``, which is
    also its constructor argument and attribute), the check of one value
    and the batched function of :mod:`.functional` that draws the Avatars.
    A strength given as a sequence makes the Avatars heterogeneous and fixes
    ``K`` (:attr:`per_avatar`).

    Args:
        strength (float | Sequence[float]): The strength, or one per Avatar.
        num_avatars (int, optional): ``K``. Defaults to None: the length of
            a sequence, else 1.
    """
    #: The strength's argument and attribute name.
    strength_name: str = ''
    #: Validates one value: ``check(value, name) -> float``.
    check: Callable[[float, str], float]
    #: Draws the Avatars: ``function(x, strength, K, generator)``.
    function: Callable[..., Tensor]
    #: For a dropout, whether it drops whole channels (its Avatars are then
    #: drawn as boolean masks by :meth:`draw`); None for other kinds.
    mask_channel: Optional[bool] = None

    def __init__(self,
                 strength: Strength,
                 num_avatars: Optional[int] = None) -> None:
        value, num_avatars = check_strengths(strength,
                                             type(self).check,
                                             self.strength_name, num_avatars)
        super().__init__(num_avatars)
        setattr(self, self.strength_name, value)

    @property
    def strength(self) -> Union[float, Tuple[float, ...]]:
        """The strength: one float, or one per Avatar."""
        return getattr(self, self.strength_name)

    @property
    def is_identity(self) -> bool:
        values = self.strength if self.per_avatar else (self.strength, )
        return all(v == 0.0 for v in values)

    @property
    def per_avatar(self) -> bool:
        return isinstance(self.strength, tuple)

    def perturb(self, x: Tensor, num_avatars: int,
                generator: Optional[torch.Generator]) -> Tensor:
        return type(self).function(x, self.strength, num_avatars, generator)

    def extra_repr(self) -> str:
        return (f'{self.strength_name}={self.strength}, '
                f'num_avatars={self.num_avatars}')

    def draw(self,
             x: Tensor,
             num_avatars: Optional[int] = None,
             generator: Optional[torch.Generator] = None) -> AvatarDraw:
        own_perturb = 'perturb' not in vars(self) and \
            type(self).perturb is StrengthPerturbation.perturb
        if self.mask_channel is None or self.is_identity or not own_perturb:
            # the masks reproduce only the class's own perturb
            return super().draw(x, num_avatars, generator)
        if num_avatars is None:
            num_avatars = self.num_avatars
        elif self.per_avatar and num_avatars != self.num_avatars:
            return super().draw(x, num_avatars, generator)  # its error
        shape = dropout_mask_shape(x, num_avatars, self.mask_channel)
        masks, keep = keep_masks(x, self.strength, shape, generator)
        return AvatarDraw(x, masks=masks, keep=keep)
