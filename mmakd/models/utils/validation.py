# Copyright (c) mmakd contributors. All rights reserved.
"""Build-time checks of a distillation setup, with errors naming the config
key. MMRazor silently accepts a recorder whose source is not a module (it
simply never records, and the first iteration fails deep inside
``get_record``), and loads teacher checkpoints leniently."""
import difflib
import importlib
import os.path as osp
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

__all__ = [
    'check_recorder_sources', 'load_teacher_checkpoint',
    'check_checkpoint_exists', 'load_frozen_teacher', 'SHAPE_AGNOSTIC_LOSSES',
    'compare_record_shapes', 'close_module_hint'
]

_MODULE_RECORDERS = {'ModuleOutputs', 'ModuleInputs'}
_IMPORT_RECORDERS = {
    'MethodOutputs', 'MethodInputs', 'FunctionOutputs', 'FunctionInputs'
}
#: MMRazor losses that compare features of different sizes by design.
SHAPE_AGNOSTIC_LOSSES = {
    'ATLoss', 'ABLoss', 'DistanceWiseRKD', 'AngleWiseRKD', 'CRDLoss'
}


def _type_name(cfg: Mapping) -> str:
    return str(cfg.get('type', '')).split('.')[-1]


def _importable(path: str) -> bool:
    """Whether ``pkg.module.Class.method`` or ``pkg.module.func`` resolves."""
    parts = path.split('.')
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False
        return True
    return False


def close_module_hint(name: Any, modules: Iterable[str]) -> str:
    """``'; did you mean [...]?'`` naming up to three of ``modules`` (module
    names, the root ``''`` left out) close to ``name``; ``''`` if none."""
    close = difflib.get_close_matches(
        str(name), [m for m in modules if m], n=3, cutoff=0.5)
    return f'; did you mean {close}?' if close else ''


def check_recorder_sources(recorders: Optional[Mapping[str, Any]],
                           model: nn.Module, key: str) -> None:
    """Every recorder must point at something that exists.

    Args:
        recorders (Mapping): ``student_recorders`` or ``teacher_recorders``
            of a distiller config.
        model (nn.Module): The student or teacher it records from.
        key (str): Config key of ``recorders``, e.g.
            ``'model.distiller.teacher_recorders'``.

    Raises:
        ValueError: Naming ``<key>.<name>.source`` and, for module
            recorders, the closest module names of the model.
    """
    if not recorders:
        return
    modules = None
    for name, cfg in recorders.items():
        if not isinstance(cfg, Mapping):
            continue
        kind = _type_name(cfg)
        source = cfg.get('source')
        if kind in _MODULE_RECORDERS:
            if modules is None:
                modules = dict(model.named_modules())
            if source not in modules:
                hint = close_module_hint(source, modules)
                raise ValueError(
                    f'{key}.{name}.source={source!r} is not a module of '
                    f'{type(model).__name__}{hint} (a {kind} recorder hooks '
                    'a module by its name in model.named_modules()).')
        elif kind in _IMPORT_RECORDERS and not _importable(str(source)):
            raise ValueError(
                f'{key}.{name}.source={source!r} cannot be imported (a '
                f'{kind} recorder needs a dotted path such as '
                "'mmdet.models.RetinaHead.forward_single').")


def _short(keys: Sequence[str], limit: int = 12) -> str:
    keys = sorted(keys)
    more = f' ... and {len(keys) - limit} more' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def load_teacher_checkpoint(model: nn.Module,
                            path: str,
                            strict: bool = True,
                            key: str = 'model.teacher_ckpt') -> Dict:
    """Load a teacher checkpoint, with errors that name the file.

    Args:
        model (nn.Module): The teacher.
        path (str): Checkpoint path or URL.
        strict (bool): Refuse missing, unexpected or mis-shaped keys.
            Defaults to True.
        key (str): Config key of ``path``.

    Returns:
        dict: ``missing``, ``unexpected`` and ``mismatched`` key lists (all
        empty when strict).

    Raises:
        FileNotFoundError: The file does not exist.
        RuntimeError: The file cannot be read (truncated, not a checkpoint)
            or, when strict, does not match the teacher; the message lists
            the missing and unexpected keys.
    """
    if '://' not in path and not osp.isfile(path):
        raise FileNotFoundError(f'{key}={path!r} does not exist (looked for '
                                f'{osp.abspath(path)}).')
    try:
        checkpoint = _load_checkpoint(path, map_location='cpu')
    except Exception as err:  # noqa: B902 - any reading failure
        if isinstance(err, FileNotFoundError):
            raise
        from mmakd.compat import apply
        hint = apply().checkpoint_error
        raise RuntimeError(
            f'{key}={path!r} cannot be read as a checkpoint (truncated or '
            f'not a PyTorch file?): {type(err).__name__}: {err}' +
            (f' Note: {hint}' if hint else '')) from err
    state = checkpoint.get('state_dict', checkpoint) if isinstance(
        checkpoint, dict) else None
    if not isinstance(state, Mapping):
        raise RuntimeError(f'{key}={path!r} holds no state_dict.')
    state = {
        (k[len('module.'):] if k.startswith('module.') else k): v
        for k, v in state.items()
    }
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f'{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}' for k in own
        if k in state and hasattr(state[k], 'shape')
        and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        message = (f'{key}={path!r} does not match {type(model).__name__}: '
                   f'{len(missing)} missing keys [{_short(missing)}], '
                   f'{len(unexpected)} unexpected keys '
                   f'[{_short(unexpected)}], {len(mismatched)} with another '
                   f'shape [{_short(mismatched)}].')
        if strict:
            raise RuntimeError(message + ' Set model.teacher_ckpt_strict='
                               'False to load the matching keys only.')
        print_log(
            message + ' Loading the matching keys only '
            '(teacher_ckpt_strict=False).',
            logger='current',
            level=30)
    bad = {m.split(' ', 1)[0] for m in mismatched}
    model.load_state_dict(
        {
            k: v
            for k, v in state.items() if k in own and k not in bad
        },
        strict=False)
    return dict(missing=missing, unexpected=unexpected, mismatched=mismatched)


def check_checkpoint_exists(path: Optional[str],
                            key: str = 'model.teacher_ckpt',
                            hint: str = '') -> None:
    """Fail early, before any model is built, if a local checkpoint is
    missing (URLs are checked when they are loaded).

    Args:
        path (str, optional): Checkpoint path or URL; None passes.
        key (str): Its config key, for the message.
        hint (str): Appended to the message, e.g. ``'; train the teacher
            first'``.
    """
    if path and '://' not in path and not osp.isfile(path):
        raise FileNotFoundError(f'{key}={path!r} does not exist (looked for '
                                f'{osp.abspath(path)}){hint}.')


def load_frozen_teacher(teacher: nn.Module,
                        path: Optional[str],
                        strict: bool = True,
                        key: str = 'model.teacher_ckpt') -> None:
    """Load a first stage's teacher (if ``path``) and freeze it: no
    gradient, and marked initialised so that the runner's
    ``init_weights()`` cannot overwrite the loaded weights.

    Args:
        teacher (nn.Module): The teacher.
        path (str, optional): Checkpoint path or URL.
        strict (bool): See :func:`load_teacher_checkpoint`.
        key (str): Config key of ``path``.
    """
    if path:
        load_teacher_checkpoint(teacher, path, strict=strict, key=key)
        teacher._is_init = True
    teacher.requires_grad_(False)


def compare_record_shapes(
        loss_name: str, loss_type: str, student: Tuple[str, Any,
                                                       Optional[str]],
        teacher: Tuple[str, Any, Optional[str]]) -> Optional[str]:
    """A message if a student and a teacher input cannot be compared.

    Args:
        loss_name (str): Name in ``distill_losses``.
        loss_type (str): The loss class name.
        student (tuple): ``(argument, value, connector)`` of the student.
        teacher (tuple): ``(argument, value, connector)`` of the teacher.

    Returns:
        str | None: The problem, naming the mapping; None if fine.
    """
    if loss_type in SHAPE_AGNOSTIC_LOSSES:
        return None
    (s_key, s_val, s_conn), (t_key, t_val, t_conn) = student, teacher

    def shapes(value):
        if isinstance(value, torch.Tensor):
            return [tuple(value.shape[1:])]
        if isinstance(value, (list, tuple)) and all(
                isinstance(v, torch.Tensor) for v in value):
            return [tuple(v.shape[1:]) for v in value]
        return None

    s_shapes, t_shapes = shapes(s_val), shapes(t_val)
    if s_shapes is None or t_shapes is None or s_shapes == t_shapes:
        return None
    where = f'model.distiller.loss_forward_mappings.{loss_name}'
    if s_conn or t_conn:
        return (f'{where}: after the connectors '
                f'({s_conn or "-"} / {t_conn or "-"}) the student input '
                f'{s_key!r} has per-sample shape(s) {s_shapes} and the '
                f'teacher input {t_key!r} {t_shapes}: the connector does not '
                'align them.')
    return (f'{where}: the student input {s_key!r} has per-sample shape(s) '
            f'{s_shapes} and the teacher input {t_key!r} {t_shapes}, and no '
            f'connector aligns them: add one (e.g. connectors=dict('
            f"{loss_name}_s=dict(type='ConvModuleConnector', in_channel=..., "
            f"out_channel=...)) and connector='{loss_name}_s' in the student "
            'mapping).')
