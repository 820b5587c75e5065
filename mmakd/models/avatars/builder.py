# Copyright (c) mmakd contributors. All rights reserved.
import inspect
import re
from typing import Any, Dict, List, Optional, Union

from mmakd.registry import MODELS
from .base_perturbation import BaseAvatarPerturbation

__all__ = ['build_perturbation', 'registered_perturbations']

_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


def registered_perturbations() -> List[str]:
    """Names of the Avatar perturbations in mmakd's (MMRazor's) model
    registry, sorted."""
    return sorted(
        name for name, cls in MODELS.module_dict.items()
        if inspect.isclass(cls) and issubclass(cls, BaseAvatarPerturbation))


def _arguments(cls: Any) -> List[str]:
    """Keyword arguments of ``cls``'s constructor."""
    try:
        params = inspect.signature(cls.__init__).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return []
    return [
        p.name for p in params
        if p.name != 'self' and p.kind in (p.POSITIONAL_OR_KEYWORD,
                                           p.KEYWORD_ONLY)
    ]


def _unknown_type(cfg: Dict, key: str) -> KeyError:
    return KeyError(
        f'{key}.type={cfg["type"]!r} is not a registered Avatar '
        f'perturbation; registered: {", ".join(registered_perturbations())} '
        '(a list of perturbation dicts mixes types).')


def _stale_argument(cfg: Dict, key: str, arg: str) -> str:
    cls = cfg['type'] if inspect.isclass(cfg['type']) else MODELS.get(
        cfg['type'])
    name = getattr(cls, '__name__', str(cfg['type']))
    message = (f'{key}: {name} takes no argument {arg!r} (its arguments: '
               f'{", ".join(_arguments(cls))}). If the type was changed '
               "over a perturbation dict, the old type's arguments stay "
               '(MMEngine merges config dicts key by key)')
    if key.endswith(']'):  # an item of a list of perturbations
        return message + (': write the item with its own arguments only, in '
                          'a config file (--cfg-options KEY.N.type=... '
                          'merges into the item and keeps the old ones).')
    return message + (
        f': replace the whole dict, in a config file '
        f"{key}=dict(_delete_=True, type='{name}', ...), on the command "
        f'line --cfg-options {key}._delete_=True {key}.type={name} '
        f'{key}.ARGUMENT=VALUE.')


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

    Raises:
        KeyError: ``type`` is not registered (``{key}.type=...``; the
            message lists :func:`registered_perturbations`).
        TypeError: ``cfg`` is not such a dict, or holds an argument its
            type does not take (typically left over from the type a
            ``--cfg-options {key}.type=...`` replaced; the message says how
            to replace the whole dict with ``_delete_=True``).
        ValueError: A strength is out of range (``{key}.p must be ...``).
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
    except KeyError as err:
        if isinstance(cfg['type'], str) and MODELS.get(cfg['type']) is None:
            raise _unknown_type(cfg, key) from err
        raise
    except (ValueError, TypeError) as err:
        # mmengine re-raises with the class location prepended; the
        # perturbation's own message ("p must be ...") is the context.
        original = err.__context__ or err
        stale = _UNEXPECTED.search(str(original))
        if isinstance(original, TypeError) and stale:
            raise TypeError(_stale_argument(cfg, key, stale.group(1))) from err
        raise type(err)(f'{key}.{original}') from err
    if not isinstance(module, BaseAvatarPerturbation):
        raise TypeError(f'{key}: {type(module).__name__} is not an Avatar '
                        'perturbation (AvatarDropout, AvatarChannelDropout, '
                        'AvatarGaussianNoise or a BaseAvatarPerturbation).')
    return module
