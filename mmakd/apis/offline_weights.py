# Copyright (c) mmakd contributors. All rights reserved.
"""The doctor's ``--offline``: every weight a config would download (or
read from a missing local file) left to the modules' own initialisers.

:func:`offline_model_config` rewrites a distillation config's model:
``teacher_ckpt`` / ``teacher_ckpts[i]``, ``checkpoint`` and ``pretrained``
keys, and every ``init_cfg`` of type ``Pretrained`` anywhere in the model
tree (``cfg_path`` configs included, which are then written inline), and
lists what it replaced so that the report can say which weights are random.
"""
import copy
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from mmengine.config import Config

__all__ = ['offline_model_config', 'offline_hint']
#: Keys whose value is a checkpoint an algorithm or module loads.
_CHECKPOINT_KEYS = ('teacher_ckpt', 'checkpoint', 'pretrained')


def _unavailable(value: Any) -> bool:
    """Whether a checkpoint value would be downloaded here (a URL such as
    ``https://``, ``torchvision://``, ``open-mmlab://``, or ``True``: the
    model-zoo checkpoint of a ``cfg_path``) or names a local file that is
    not there."""
    if value is True:
        return True
    if not isinstance(value, str) or not value:
        return False
    return '://' in value or not os.path.isfile(value)


def _describe(value: Any) -> str:
    if value is True:
        return "the model zoo's checkpoint of the config (pretrained=True)"
    if isinstance(value, str) and '://' not in value:
        return f'{value} (not found here)'
    return str(value)


def _module_of(key: str) -> str:
    """The algorithm's module a config key initialises, e.g.
    ``model.teacher.backbone.init_cfg[0]`` -> ``teacher.backbone`` and
    ``model.teacher_ckpts[2]`` -> ``other_teachers.1``."""
    parts = re.sub(r'\[(\d+)\]', r'.\1', key).split('.')[1:]
    if parts[:1] == ['teacher_ckpt']:
        parts = ['teacher']
    elif parts[:1] == ['teacher_ckpts']:
        parts = ['teachers'] + parts[1:2]
    elif len(parts) >= 2 and parts[-1].isdigit() and parts[-2] == 'init_cfg':
        parts = parts[:-2]
    elif parts and parts[-1] in ('init_cfg', ) + _CHECKPOINT_KEYS:
        parts = parts[:-1]
    if parts[:1] == ['teachers'] and len(parts) > 1 and parts[1].isdigit():
        index = int(parts[1])
        parts = (['teacher'] if index == 0 else
                 ['other_teachers', str(index - 1)]) + parts[2:]
    return '.'.join(parts)


class _OfflineRewriter:
    """Rewrite a model config so that building and initialising it loads
    no weight that would be downloaded (or is missing), recording each
    replaced key."""

    def __init__(self) -> None:
        self.replaced: List[Dict[str, Any]] = []

    def _record(self,
                key: str,
                was: Any,
                source: Optional[str],
                module: Optional[str] = None) -> None:
        self.replaced.append(
            dict(
                key=key,
                was=_describe(was),
                file=source,
                module=module or _module_of(key)))

    def rewrite(self,
                node: Any,
                key: str,
                source: Optional[str] = None) -> Any:
        if isinstance(node, (list, tuple)):
            items = [
                self.rewrite(v, f'{key}[{i}]', source)
                for i, v in enumerate(node)
            ]
            return type(node)(items) if isinstance(node, tuple) else items
        if not isinstance(node, dict):
            return node
        if 'cfg_path' in node and 'type' not in node:
            return self._spec(node, key, source)
        out = type(node)()
        skip = set()
        # a teacher loaded from a file that is here is never initialised
        # (its _is_init is set): what its config downloads does not run
        if node.get('teacher_ckpt') and not _unavailable(node['teacher_ckpt']):
            skip.add('teacher')
        kept = node.get('teacher_ckpts')
        for name, value in node.items():
            sub = f'{key}.{name}'
            if name == 'init_cfg':
                kept_init = self._init_cfg(value, sub, source)
                if kept_init is not None or value is None:
                    out[name] = kept_init
                # else: no init_cfg given, so the module's default one runs
                # (e.g. RetinaHead's bias prior, ResNet's Kaiming)
            elif name in _CHECKPOINT_KEYS and _unavailable(value):
                self._record(
                    sub, value, source,
                    _module_of(sub) + ('.backbone' if name == 'pretrained'
                                       and 'backbone' in node else ''))
                out[name] = False if value is True else None
            elif name == 'teacher_ckpts' and isinstance(value, (list, tuple)):
                out[name] = []
                for i, path in enumerate(value):
                    if _unavailable(path):
                        self._record(f'{sub}[{i}]', path, source)
                        path = None
                    out[name].append(path)
            elif name == 'teachers' and isinstance(value, (list, tuple)):
                out[name] = [
                    v if isinstance(kept, (list, tuple)) and i < len(kept)
                    and kept[i] and not _unavailable(kept[i]) else
                    self.rewrite(v, f'{sub}[{i}]', source)
                    for i, v in enumerate(value)
                ]
            elif name in skip:
                out[name] = value
            else:
                out[name] = self.rewrite(value, sub, source)
        return out

    def _init_cfg(self, value: Any, key: str, source: Optional[str]) -> Any:
        entries = value if isinstance(value, (list, tuple)) else [value]
        kept = []
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get('type') in (
                    'Pretrained', 'PretrainedInit') and _unavailable(
                        entry.get('checkpoint')):
                where = f'{key}[{i}]' if isinstance(value,
                                                    (list, tuple)) else key
                self._record(
                    where, f'Pretrained {_describe(entry.get("checkpoint"))}',
                    source)
            else:
                kept.append(entry)
        if not isinstance(value, (list, tuple)):
            return kept[0] if kept else None
        return kept or None

    def _spec(self, spec: Dict[str, Any], key: str,
              source: Optional[str]) -> Any:
        """A ``cfg_path`` model spec: its config's model, inline and
        rewritten, if anything in it had to go."""
        from mmakd.models.utils.model_spec import load_model_config
        pretrained = spec.get('pretrained', False)
        if pretrained and not _unavailable(pretrained):
            return spec  # loaded from a file that is here, never initialised
        cfg_path = spec['cfg_path']
        cfg = load_model_config(cfg_path, key)
        if spec.get('cfg_options'):
            cfg.merge_from_dict(dict(spec['cfg_options']))
        if 'model' not in cfg:
            return spec  # the build names the problem
        before = len(self.replaced)
        if pretrained:
            self._record(f'{key}.pretrained', pretrained, source)
        model = copy.deepcopy(cfg.model)
        model = self.rewrite(model, key, cfg_path)
        if len(self.replaced) == before:
            return spec
        if 'data_preprocessor' in cfg and 'data_preprocessor' not in model:
            model['data_preprocessor'] = cfg.data_preprocessor
        if '_scope_' not in model:
            scope = cfg_path.split('::', 1)[0] if '::' in cfg_path else \
                cfg.get('default_scope')
            if scope:
                model['_scope_'] = scope
        return model


def offline_model_config(cfg: Config) -> Tuple[Config, List[Dict[str, Any]]]:
    """``cfg`` with every weight that would be downloaded (or whose local
    file is missing) left out, and the list of what was left out.

    Teacher checkpoints (``model.teacher_ckpt``, ``model.teacher_ckpts[i]``),
    ``pretrained`` keys (``True``: a ``cfg_path``'s model-zoo checkpoint, or
    a path or URL), ``checkpoint`` keys (e.g. connectors') and every
    ``init_cfg`` of type ``Pretrained``, anywhere in the model tree (nested
    ``init_cfg`` lists and the models of ``cfg_path`` specs included, which
    are then given inline) are left out (checkpoints set to None,
    ``pretrained`` to False, an ``init_cfg`` left with nothing removed, so
    that the module's default ``init_cfg`` applies), so that the modules'
    own initialisers run instead: a backbone falls back to its default
    initialisation (e.g. Kaiming), a head whose config loaded it from a
    checkpoint to its own (e.g. RetinaNet's classifier bias prior), and
    every other initialiser is kept. Local
    files that exist still load, and a model loaded from one keeps its
    config as it is (it is never initialised).

    Args:
        cfg (Config): A distillation config.

    Returns:
        tuple[Config, list[dict]]: The rewritten config (a copy) and one
        ``dict(key, was, file, module)`` per replaced weight: the config
        key (for keys inside a ``cfg_path``'s config, as if it were
        inline), what it would have loaded, the ``cfg_path`` the key is in
        (None: the config itself) and the algorithm's module left with
        initialised (random) weights.
    """
    cfg = copy.deepcopy(cfg)
    rewriter = _OfflineRewriter()
    cfg.model = rewriter.rewrite(cfg.model, 'model')
    return cfg, rewriter.replaced


def _download_keys(cfg: Config) -> List[Dict[str, Any]]:
    """What ``offline_model_config`` would replace (empty if the config
    cannot even be read that far)."""
    try:
        return offline_model_config(cfg)[1]
    except Exception:  # noqa: B902 - only for a hint
        return []


def offline_hint(cfg: Config, only_init: bool = False) -> str:
    """The keys that load weights which may be downloaded, and --offline."""
    found = _download_keys(cfg)
    if only_init:
        found = [r for r in found if '.init_cfg' in r['key']]
    if not found:
        return ''
    keys = ', '.join(r['key'] + (f' (in {r["file"]})' if r['file'] else '')
                     for r in found)
    return (f' This config loads weights that are downloaded (or missing '
            f'here): {keys}. To analyse it without them, pass --offline '
            '(analyze_distill(offline=True)): every one of them is left to '
            "the modules' own initialisers, and the report lists them.")
