# Copyright (c) mmakd contributors. All rights reserved.
"""Build a teacher or student from whatever a config gives.

MMRazor's ``SingleTeacherDistill`` accepts ``cfg_path`` only as a
``package::relative/path.py`` of an installed package (through
``mmengine.hub.get_model``). :func:`build_model_from_spec` accepts that and
also a local config file, an inline model dict and an already built model,
so a user's own detector can be a teacher without being packaged.
"""
from typing import Any, Dict, Optional, Tuple, Union

from mmengine.config import Config, ConfigDict
from mmengine.hub import get_config
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from torch import nn

from mmakd.registry import MODELS
from mmakd.utils.config import CONFIG_SCOPE, resolve_config_path

__all__ = ['build_model_from_spec', 'load_model_config']

ModelSpec = Union[nn.Module, Dict[str, Any], ConfigDict]
_SPEC_KEYS = {'cfg_path', 'pretrained', 'cfg_options'}


def load_model_config(cfg_path: str,
                      key: str,
                      pretrained: bool = False) -> Config:
    """Load the full config a model spec points to.

    Args:
        cfg_path (str): ``'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'``
            (a config shipped by an installed package) or a path to a local
            config file (absolute, or relative to the working directory; use
            ``'{{fileDirname}}/...'`` in a config to be relative to it).
        key (str): The config key being built, for error messages, e.g.
            ``'model.teacher'``.
        pretrained (bool): With a package path, also look up the model-zoo
            checkpoint of the config (``cfg.model_path``). Defaults to False.

    Returns:
        Config: The loaded config.
    """
    if pretrained is True:
        if '::' not in cfg_path:
            raise ValueError(
                f'{key}.pretrained=True needs a "package::path" cfg_path '
                'whose metafile lists weights; for a local config give the '
                f'checkpoint itself: {key}.pretrained="path/or/url.pth".')
        resolve_config_path(cfg_path)  # clear error if missing
        return get_config(cfg_path, pretrained=True)
    try:
        return Config.fromfile(resolve_config_path(cfg_path))
    except FileNotFoundError as err:
        raise FileNotFoundError(f'{key}.cfg_path: {err}') from err


def _model_cfg_from_file(spec: Dict[str, Any],
                         key: str) -> Tuple[ConfigDict, Optional[str]]:
    """The model dict a ``cfg_path`` spec points to, and its checkpoint."""
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise ValueError(
            f'{key} has cfg_path, so it may only also set '
            f'{sorted(_SPEC_KEYS - {"cfg_path"})}; got {sorted(unknown)}. '
            'Override model fields with cfg_options='
            '{"model.backbone.depth": 18, ...}.')
    cfg_path, pretrained = spec['cfg_path'], spec.get('pretrained', False)
    cfg = load_model_config(cfg_path, key, pretrained=pretrained is True)
    if spec.get('cfg_options'):
        cfg.merge_from_dict(dict(spec['cfg_options']))
    if 'model' not in cfg:
        raise KeyError(f'{key}.cfg_path={cfg_path!r} defines no `model`.')
    model_cfg = cfg.model
    if 'data_preprocessor' in cfg and 'data_preprocessor' not in model_cfg:
        model_cfg.data_preprocessor = cfg.data_preprocessor
    if '_scope_' not in model_cfg:
        scope = cfg_path.split('::', 1)[0] if '::' in cfg_path else None
        if scope in (None, CONFIG_SCOPE):  # mmakd:: has no registries
            scope = cfg.get('default_scope')
        if scope:
            model_cfg['_scope_'] = scope
    if pretrained is True:
        return model_cfg, cfg.model_path
    return model_cfg, (pretrained or None)


def build_model_from_spec(spec: ModelSpec, key: str) -> nn.Module:
    """Build a model from a built module, a model dict or a config pointer.

    Args:
        spec (nn.Module | dict): One of

            - a built ``nn.Module``: returned unchanged;
            - ``dict(cfg_path=..., pretrained=False, cfg_options=None)``:
              the ``model`` of a package config (``'mmdet::...'``) or of a
              local config file. ``cfg_options`` are dotted overrides
              applied to that config before building, like
              ``--cfg-options`` (e.g. ``{'model.backbone.init_cfg': None}``).
              ``pretrained`` is ``True`` (the package metafile's weights) or
              a checkpoint path or URL;
            - an inline model dict with ``type`` (give ``_scope_='mmdet'``
              or ``type='mmdet.RetinaNet'`` for a model of another package).
        key (str): The config key being built, used in error messages.

    Returns:
        nn.Module: The built model.
    """
    if isinstance(spec, nn.Module):
        return spec
    if not isinstance(spec, dict):
        raise TypeError(f'{key} must be a model dict or an nn.Module, '
                        f'got {type(spec).__name__}.')
    spec = ConfigDict(spec)
    if 'cfg_path' in spec and 'type' not in spec:
        model_cfg, checkpoint = _model_cfg_from_file(spec, key)
    elif 'type' in spec:
        model_cfg, checkpoint = spec, None
    else:
        raise KeyError(
            f'{key} needs either `type` (an inline model) or `cfg_path` (a '
            f'package or local config), got keys {sorted(spec)}.')

    scope = model_cfg.get('_scope_')
    try:
        model = MODELS.build(model_cfg)
    except KeyError as err:
        if 'registry' not in str(err):
            raise
        current = DefaultScope.get_current_instance()
        raise KeyError(
            f'{key}: cannot build type={model_cfg.get("type")!r} in scope '
            f'{scope or (current.scope_name if current else "mmrazor")!r} '
            f'({err}). For a model of another package give '
            "_scope_='mmdet' (or mmseg, mmpretrain) or type='mmdet.Name'."
        ) from err
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
        # Keep the runner's init_weights() from overwriting these weights.
        model._is_init = True
    if not isinstance(model, BaseModel):
        raise TypeError(f'{key} built a {type(model).__name__}, which is not '
                        'an mmengine BaseModel.')
    return model
