# Copyright (c) mmakd contributors. All rights reserved.
from abc import abstractmethod
from contextlib import contextmanager
from typing import Iterator, List, NamedTuple, Optional, Sequence

import torch
from torch import Tensor, nn

from .base_perturbation import BaseAvatarPerturbation

__all__ = ['BaseTeacherAvatars', 'AvatarGroup']


class AvatarGroup(NamedTuple):
    """Avatars drawn by one teacher forward: their indices and the batch
    the teacher runs on, ``len(avatars)`` copies of the ``N`` images
    concatenated on the batch dimension, Avatar ``avatars[j]`` in rows
    ``j * N`` to ``(j + 1) * N``."""
    avatars: List[int]
    inputs: Tensor


class BaseTeacherAvatars(BaseAvatarPerturbation):
    """Avatars that are inference ensembles of the teacher: the teacher
    itself runs ``K`` times, on views of the input or with dropout inside
    it, and each run's records are an Avatar.

    "Avatar Knowledge Distillation: Self-ensemble Teacher Paradigm with
    Uncertainty" (Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722) calls Avatars "inference ensemble
    models derived from the teacher"; its code perturbs the recorded
    tensors instead. These sources run the teacher, so they cost teacher
    forwards (batched into as few as ``samples_per_forward`` allows) and
    need an algorithm that runs the teacher for them: mmakd's
    ``FlexibleTeacherDistill`` or ``MultiTeacherDistill``, through
    :func:`~mmakd.models.avatars.teacher_avatars.record_teacher_avatars`.

    Args:
        num_avatars (int): ``K``.
        samples_per_forward (int, optional): The most images (``N`` per
            Avatar) one teacher forward may take; at least one Avatar runs
            per forward. Defaults to None: as many as the grouping allows.
    """

    runs_teacher = True

    def __init__(self,
                 num_avatars: int,
                 samples_per_forward: Optional[int] = None) -> None:
        super().__init__(num_avatars)
        if samples_per_forward is not None and (
                isinstance(samples_per_forward, bool)
                or not isinstance(samples_per_forward, int)
                or samples_per_forward < 1):
            raise ValueError('samples_per_forward must be an int >= 1 or '
                             f'None, got {samples_per_forward!r}')
        self.samples_per_forward = samples_per_forward

    @property
    def is_identity(self) -> bool:
        return False

    @property
    def reference_index(self) -> Optional[int]:
        """The Avatar that is the teacher itself (its records stay in the
        teacher recorders for the losses without Avatars), or None: the
        recorders then hold the mean of the Avatars."""
        return None

    def perturb(self, x: Tensor, num_avatars: int,
                generator: Optional[torch.Generator]) -> Tensor:
        raise TypeError(
            f'{type(self).__name__} draws Avatars by running the teacher, '
            'not by perturbing a recorded tensor: it needs an algorithm '
            "that runs the teacher for it (model.type='FlexibleTeacherDistill'"
            " or 'MultiTeacherDistill' of mmakd).")

    def chunks(self, avatars: Sequence[int], batch: int) -> List[List[int]]:
        """``avatars`` split into groups of at most ``samples_per_forward``
        images (``batch`` per Avatar; one Avatar at least)."""
        per = len(avatars) if self.samples_per_forward is None else max(
            1, self.samples_per_forward // max(batch, 1))
        return [list(avatars[i:i + per]) for i in range(0, len(avatars), per)]

    @abstractmethod
    def groups(self, inputs: Tensor,
               generator: Optional[torch.Generator]) -> List[AvatarGroup]:
        """The teacher forwards that draw the ``K`` Avatars of ``inputs``
        ``(N, C, H, W)``, every Avatar in exactly one group."""

    def attach(self, models: Sequence[nn.Module], key: str) -> None:
        """Prepare the teachers (e.g. hook modules); ``key`` is the config
        key of this source, for errors. Nothing by default."""

    @contextmanager
    def active(self, generator: Optional[torch.Generator]) -> Iterator[None]:
        """The context of a teacher forward that draws Avatars."""
        yield

    def map_back(self, record: Tensor, k: int, reference: Tensor,
                 where: str) -> Tensor:
        """Avatar ``k``'s recorded tensor mapped onto the frame of the
        original input (``reference``: the same record of the reference
        Avatar, or of Avatar 0); ``where`` names it for errors. The
        identity by default."""
        return record
