# Copyright (c) mmakd contributors. All rights reserved.
from typing import Dict, Optional, Union

import torch
from mmrazor.models.architectures.connectors.base_connector import \
    BaseConnector

from mmakd.registry import MODELS
from ..avatars import BaseAvatarPerturbation, build_perturbation, standardize

__all__ = ['AvatarConnector']

_DEFAULT_PERTURBATION = dict(type='AvatarDropout', p=0.1)
PerturbationCfg = Optional[Union[Dict, BaseAvatarPerturbation]]


@MODELS.register_module()
class AvatarConnector(BaseConnector):
    """One Avatar per iteration inside an unchanged ``ConfigurableDistiller``
    (AKD with ``K = 1``; Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722).

    As a teacher-side connector it replaces the teacher record ``T`` by a
    perturbed, optionally standardised Avatar ``norm(P(T))``, which is what
    the reference implementation does inside each of its losses. With
    ``perturbation=None`` it only standardises, which is how a student-side
    connector reproduces the reference's student normalisation::

        connectors=dict(
            s_norm=dict(type='AvatarConnector', perturbation=None),
            t_avatar=dict(type='AvatarConnector',
                          perturbation=dict(type='AvatarDropout', p=0.1))),

    For ``K > 1`` Avatars, uncertainty weights and logging use
    :class:`~mmakd.models.AvatarDistiller` instead.

    Note:
        The Avatar is computed from ``T.detach()``: no gradient reaches the
        teacher even if it is trainable. Without a perturbation the input is
        not detached (a student-side normaliser must pass gradients).

    Args:
        perturbation (dict, optional): Perturbation config, e.g.
            ``dict(type='AvatarDropout', p=0.1)`` (the default); None for no
            perturbation. Its ``num_avatars`` must be 1.
        normalize (bool): Standardise per channel with batch statistics (no
            affine), as ``BatchNorm2d(affine=False)`` in training mode.
            Defaults to True.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 perturbation: PerturbationCfg = _DEFAULT_PERTURBATION,
                 normalize: bool = True,
                 init_cfg: Optional[Dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.perturbation = build_perturbation(perturbation,
                                               'AvatarConnector.perturbation')
        if self.perturbation is not None and self.perturbation.runs_teacher:
            raise TypeError(
                f'AvatarConnector.perturbation: '
                f'{type(self.perturbation).__name__} runs the teacher, which '
                'a connector cannot; use AvatarDistiller with '
                'avatars.perturbation set to it.')
        if self.perturbation is not None \
                and self.perturbation.num_avatars != 1:
            raise ValueError(
                'AvatarConnector.perturbation.num_avatars must be 1 (a '
                'connector passes one tensor on); use AvatarDistiller with '
                'avatars.num_avatars=K for several Avatars.')
        if not isinstance(normalize, bool):
            raise TypeError('AvatarConnector.normalize must be a bool, got '
                            f'{normalize!r}')
        self.normalize = normalize

    def forward_train(self, feature: torch.Tensor) -> torch.Tensor:
        """Return ``norm(P(feature))`` of the same shape.

        Args:
            feature (Tensor): A record ``(N, C, *spatial)``.

        Returns:
            Tensor: The Avatar (float32 when normalised).
        """
        if not isinstance(feature, torch.Tensor):
            raise TypeError(
                'AvatarConnector expects one tensor; for a tuple of FPN '
                'levels select one with data_idx in loss_forward_mappings '
                f'(got {type(feature).__name__}).')
        if self.perturbation is not None:
            feature = self.perturbation(feature.detach(), num_avatars=1)[0]
        if self.normalize:
            feature = standardize(feature)
        return feature

    def extra_repr(self) -> str:
        return f'normalize={self.normalize}'
