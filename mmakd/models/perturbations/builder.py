# Copyright (c) mmakd contributors. All rights reserved.
from typing import Dict, List, Optional, Union

from mmakd.registry import MODELS
from .base_perturbation import BaseAvatarPerturbation

__all__ = ['build_perturbation']


def build_perturbation(cfg: Optional[Union[Dict, List[Dict],
                                           BaseAvatarPerturbation]],
                       key: str) -> Optional[BaseAvatarPerturbation]:
    """Build an Avatar perturbation, naming the config key on error.

    Args:
        cfg (dict | list[dict] | BaseAvatarPerturbation, optional): E.g.
            ``dict(type='AvatarDropout', p=0.1)``; a list of such dicts
            builds an :class:`AvatarPerturbationMix` (Avatars of several
            types); None gives None.
        key (str): Config key of ``cfg``, e.g.
            ``'model.distiller.avatars.perturbation'``.

    Returns:
        BaseAvatarPerturbation | None: The module.
    """
    if cfg is None or isinstance(cfg, BaseAvatarPerturbation):
        return cfg
    if isinstance(cfg, (list, tuple)):
        from .avatar_perturbation_mix import AvatarPerturbationMix
        return AvatarPerturbationMix(cfg, key=key)
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'{key} must be a dict with a `type` such as '
                        f"dict(type='AvatarDropout', p=0.1), got {cfg!r}")
    cfg = dict(cfg)
    # mmakd's modules live in MMRazor's registry: resolve there whatever
    # the caller's default scope (e.g. 'mmdet' in a detection runner).
    cfg.setdefault('_scope_', 'mmrazor')
    try:
        module = MODELS.build(cfg)
    except (ValueError, TypeError) as err:
        # mmengine re-raises with the class location prepended; the
        # perturbation's own message ("p must be ...") is the context.
        original = err.__context__ or err
        raise type(err)(f'{key}.{original}') from err
    if not isinstance(module, BaseAvatarPerturbation):
        raise TypeError(f'{key}: {type(module).__name__} is not an Avatar '
                        'perturbation (AvatarDropout, AvatarChannelDropout, '
                        'AvatarGaussianNoise or a BaseAvatarPerturbation).')
    return module
