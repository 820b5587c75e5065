# Copyright (c) mmakd contributors. All rights reserved.
from abc import ABCMeta, abstractmethod
from typing import Optional

import torch
from torch import Tensor, nn

from .avatar_draw import AvatarDraw
from .functional import check_num_avatars

__all__ = ['BaseAvatarPerturbation']


class BaseAvatarPerturbation(nn.Module, metaclass=ABCMeta):
    """Base of AKD's perturbation transformations (Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722).

    A perturbation maps a teacher tensor ``T`` to ``K`` Avatars stacked on a
    new leading dimension, ``(K, *T.shape)``, in one batched operation.

    Note:
        Avatars are drawn whenever the module is called, in training and in
        evaluation mode alike (the reference applies dropout with
        ``training=True``): they only exist to compute distillation losses.

    A perturbation whose strength is given per Avatar (e.g.
    ``AvatarDropout(p=(0.05, 0.1, 0.2, 0.4))``) draws *heterogeneous*
    Avatars, still in one batched operation; its ``K`` is then fixed
    (:attr:`per_avatar`).

    Args:
        num_avatars (int): ``K``, the Avatars drawn per call unless
            ``forward`` is given another count. Defaults to 1.
    """

    #: Whether the Avatars come from running the teacher itself (views of
    #: the input, dropout inside it) rather than from its recorded tensors
    #: (:class:`~mmakd.models.avatars.BaseTeacherAvatars`).
    runs_teacher = False

    def __init__(self, num_avatars: int = 1) -> None:
        super().__init__()
        self.num_avatars = check_num_avatars(num_avatars)

    @property
    def per_avatar(self) -> bool:
        """Whether strengths are given per Avatar, which fixes ``K``."""
        return False

    @property
    @abstractmethod
    def is_identity(self) -> bool:
        """Whether the Avatars equal the teacher (strength 0)."""

    @abstractmethod
    def perturb(self, x: Tensor, num_avatars: int,
                generator: Optional[torch.Generator]) -> Tensor:
        """Return ``(num_avatars, *x.shape)`` Avatars of ``x``."""

    def forward(self,
                x: Tensor,
                num_avatars: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Draw Avatars of ``x``.

        Args:
            x (Tensor): Teacher tensor, ``(N, C, *spatial)``.
            num_avatars (int, optional): Overrides ``self.num_avatars``.
            generator (torch.Generator, optional): Source of randomness;
                None uses PyTorch's global generator.

        Returns:
            Tensor: ``(K, *x.shape)`` Avatars.
        """
        if num_avatars is None:
            num_avatars = self.num_avatars
        elif self.per_avatar and num_avatars != self.num_avatars:
            raise ValueError(
                f'{type(self).__name__} has one strength per Avatar for '
                f'{self.num_avatars} Avatars; cannot draw {num_avatars}.')
        return self.perturb(x, num_avatars, generator)

    def draw(self,
             x: Tensor,
             num_avatars: Optional[int] = None,
             generator: Optional[torch.Generator] = None) -> AvatarDraw:
        """Draw Avatars of ``x`` as an :class:`AvatarDraw`, which a dropout
        keeps as boolean masks: the same Avatars as :meth:`forward` from the
        same generator, a quarter of the memory until each is used.

        Args:
            x (Tensor): Teacher tensor, ``(N, C, *spatial)``.
            num_avatars (int, optional): Overrides ``self.num_avatars``.
            generator (torch.Generator, optional): Source of randomness.
        """
        return AvatarDraw(x, stack=self(x, num_avatars, generator))
