# Copyright (c) mmakd contributors. All rights reserved.
"""Building the algorithm to analyse and loading its checkpoints."""
import contextlib
import copy
import logging
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch import nn

from ..offline_weights import offline_hint


def _teacher_ckpt_key(cfg: Config) -> str:
    """The key that gives the teacher its checkpoint: ``model.teacher_ckpt``,
    or ``model.teacher_ckpts[i]`` for ``MultiTeacherDistill``."""
    if cfg.model.get('teachers') is not None or \
            cfg.model.get('type') == 'MultiTeacherDistill':
        return 'model.teacher_ckpts[i]'
    return 'model.teacher_ckpt'


def _build(cfg: Config,
           checkpoint: Optional[str],
           init_weights: bool,
           offline: bool = False) -> Tuple[nn.Module, bool, List[str]]:
    """The algorithm with its weights, whether the teacher's came from a
    checkpoint, and the teacher tensors that checkpoint lacked."""
    from mmakd.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmrazor'))
    ckpt_key = _teacher_ckpt_key(cfg)
    try:
        model = MODELS.build(copy.deepcopy(cfg.model))
    except Exception as err:  # noqa: B902 - any model may refuse
        hint = '' if offline else offline_hint(cfg)
        raise RuntimeError(
            f'building cfg.model ({cfg.model.get("type")}) failed: '
            f'{type(err).__name__}: {str(err).rstrip(".")}. If the teacher '
            'checkpoint cannot be read or downloaded here, pass '
            f'--cfg-options {ckpt_key}=LOCAL_FILE (or {ckpt_key}=None: the '
            'report then warns that the teacher is untrained).' +
            hint) from err
    if getattr(model, 'distiller', None) is None or not hasattr(
            model.distiller, 'loss_forward_mappings'):
        raise TypeError(
            f'cfg.model ({type(model).__name__}) has no distiller with '
            'distill_losses and loss_forward_mappings; the doctor analyses '
            'distillation algorithms (SingleTeacherDistill, '
            'FpnTeacherDistill, FlexibleTeacherDistill...).')
    if not hasattr(model, 'teacher') or not hasattr(model, 'student'):
        raise TypeError(f'cfg.model ({type(model).__name__}) has no '
                        'teacher and student to analyse.')
    if init_weights:
        try:
            with _quiet():  # MMEngine logs every parameter's initialiser
                model.init_weights()
        except Exception as err:  # noqa: B902 - e.g. a download
            hint = '' if offline else offline_hint(cfg, only_init=True)
            raise RuntimeError(
                f'model.init_weights() failed ({type(err).__name__}: {err}); '
                'a pretrained init_cfg could not be loaded.' +
                (hint or ' Run where it can be downloaded, or pass '
                 '--offline to leave downloaded weights to the modules\' '
                 'own initialisers.')) from err
    teacher_ckpt = cfg.model.get('teacher_ckpt')
    teacher_ckpts = cfg.model.get('teacher_ckpts')  # MultiTeacherDistill
    teacher_loaded = bool(
        teacher_ckpt) or bool(teacher_ckpts) and all(teacher_ckpts)
    missing: List[str] = []
    # mmakd's algorithms load strictly by default: nothing can be missing,
    # and the checkpoint need not be read a second time
    strict = type(model).__name__ in (
        'FlexibleTeacherDistill', 'MultiTeacherDistill') and \
        cfg.model.get('teacher_ckpt_strict', True)
    if not strict and not getattr(model, 'fused_teacher_convs', None):
        if teacher_ckpts:
            for i, (teacher, path) in enumerate(
                    zip(
                        getattr(model, 'teachers', [model.teacher]),
                        teacher_ckpts)):
                if path:
                    missing += [
                        f'model.teachers[{i}].{k}'
                        for k in _missing_teacher_keys(teacher, path)
                    ]
        elif teacher_ckpt:
            missing = _missing_teacher_keys(model.teacher, teacher_ckpt)
    teacher_spec = cfg.model.get('teacher')
    if isinstance(teacher_spec, dict) and teacher_spec.get('pretrained'):
        teacher_loaded = True  # from the model's metafile (MMRazor)
    if checkpoint and _load_algorithm_checkpoint(model, checkpoint, ckpt_key):
        teacher_loaded, missing = True, []
    return model, teacher_loaded, missing


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _missing_teacher_keys(teacher: nn.Module, path: str) -> List[str]:
    """Teacher tensors that ``path`` does not hold with the same shape
    (MMRazor loads teacher checkpoints non-strictly: those stay as
    initialised)."""
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    return [
        key for key, value in teacher.state_dict().items() if key not in state
        or getattr(state[key], 'shape', None) != value.shape
    ]


def _load_algorithm_checkpoint(model: nn.Module,
                               path: str,
                               ckpt_key: str = 'model.teacher_ckpt') -> bool:
    """Load a checkpoint of the whole algorithm (what training writes);
    return whether it held teacher weights."""
    from mmengine.runner.checkpoint import _load_checkpoint
    ckpt = _load_checkpoint(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    roots = sorted({k.split('.', 1)[0] for k in state})
    if not any(r in ('architecture', 'teacher') for r in roots):
        raise KeyError(
            f'--checkpoint {path}: no key starts with "architecture." or '
            f'"teacher." (top-level keys: {roots[:8]}); it is not a '
            'checkpoint of a distillation algorithm. For a teacher '
            f'checkpoint use --cfg-options {ckpt_key}=' + path)
    missing = [
        k for k in model.load_state_dict(state, strict=False).missing_keys
        if k.startswith('architecture.')
    ]
    if missing:
        raise KeyError(
            f'--checkpoint {path} lacks {len(missing)} of the student\'s '
            f'tensors (e.g. {missing[0]}): it is not a checkpoint of this '
            'config\'s algorithm.')
    return 'teacher' in roots


def _unset_teacher_ckpts(cfg: Config) -> List[str]:
    """The ``model.teacher_ckpts[i]`` of a ``MultiTeacherDistill`` that are
    not set (empty for other algorithms)."""
    teachers = cfg.model.get('teachers')
    if not isinstance(teachers, (list, tuple)):
        return []
    paths = cfg.model.get('teacher_ckpts') or [None] * len(teachers)
    return [f'model.teacher_ckpts[{i}]' for i, p in enumerate(paths) if not p]


def _check_modules(model: nn.Module, replaced: List[Dict[str, Any]]) -> None:
    """Name, for each replaced weight, the nearest module the algorithm
    really has (a config key may name a module only its builder knows)."""
    names = {name for name, _ in model.named_modules()}
    for entry in replaced:
        module = entry['module']
        while module and module not in names:
            module = module.rpartition('.')[0]
        entry['module'] = module or None
