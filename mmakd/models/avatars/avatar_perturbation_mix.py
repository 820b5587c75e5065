# Copyright (c) mmakd contributors. All rights reserved.
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from mmakd.registry import MODELS
from .base_perturbation import BaseAvatarPerturbation

__all__ = ['AvatarPerturbationMix']


@MODELS.register_module()
class AvatarPerturbationMix(BaseAvatarPerturbation):
    """Avatars of several perturbation types (AKD, Zhang et al., ACM MM
    2023, https://arxiv.org/abs/2305.02722: "various Avatars are generated
    by a perturbation transformation").

    The Avatars of each member perturbation are drawn in one batched
    operation and stacked in the order given, so ``K`` is the sum of the
    members' ``num_avatars``. A list of perturbation dicts in a config
    (``avatars.perturbation=[dict(...), dict(...)]``) builds this module::

        perturbation=[
            dict(type='AvatarDropout', p=0.1, num_avatars=2),
            dict(type='AvatarGaussianNoise', std=(0.1, 0.2)),
        ]   # K = 4: two dropout Avatars, then two noise Avatars

    Args:
        perturbations (Sequence[dict | BaseAvatarPerturbation]): The member
            perturbations; a dict without ``num_avatars`` and with a single
            strength gives one Avatar.
        key (str): Config key of ``perturbations``, for errors. Defaults to
            ``'perturbations'``.
    """

    def __init__(self,
                 perturbations: Sequence[Union[Dict, BaseAvatarPerturbation]],
                 key: str = 'perturbations') -> None:
        from .builder import build_perturbation
        is_list = isinstance(perturbations, (list, tuple))
        if not is_list or not perturbations:
            raise TypeError(f'{key} must be a non-empty list of '
                            f'perturbation dicts, got {perturbations!r}')
        members: List[BaseAvatarPerturbation] = []
        for i, cfg in enumerate(perturbations):
            if isinstance(cfg, (list, tuple)):
                raise TypeError(f'{key}[{i}] is a list; give one flat list '
                                'of perturbation dicts.')
            member = build_perturbation(cfg, f'{key}[{i}]')
            if member.runs_teacher:
                raise TypeError(
                    f'{key}[{i}]: {type(member).__name__} draws Avatars by '
                    'running the teacher and cannot be mixed with '
                    'perturbations of its records; give it alone.')
            members.append(member)
        super().__init__(sum(m.num_avatars for m in members))
        self.perturbations = nn.ModuleList(members)

    @property
    def is_identity(self) -> bool:
        return all(m.is_identity for m in self.perturbations)

    @property
    def per_avatar(self) -> bool:
        return True

    def perturb(self, x: Tensor, num_avatars: int,
                generator: Optional[torch.Generator]) -> Tensor:
        return torch.cat(
            [m(x, generator=generator) for m in self.perturbations])

    def extra_repr(self) -> str:
        return f'num_avatars={self.num_avatars}'
