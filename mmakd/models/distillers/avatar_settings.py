# Copyright (c) mmakd contributors. All rights reserved.
"""``model.distiller.avatars``: AKD's settings, checked at build time with
errors that name the config key."""
import logging
from typing import Any, Dict, List, Optional, Tuple

from mmengine.logging import print_log
from torch import nn

from ..avatars import DEFAULT_TAU, BaseAvatarPerturbation, build_perturbation
from ..avatars.fusion import LossFusion, fusion_blocker, fusion_for

__all__ = [
    'KEY', 'AVATAR_KEYS', 'parse_normalize', 'build_avatar_perturbation',
    'parse_uncertainty', 'select_losses', 'choose_fusions'
]

KEY = 'model.distiller.avatars'
AVATAR_KEYS = {
    'num_avatars', 'perturbation', 'normalize', 'normalize_at', 'uncertainty',
    'losses', 'check_finite', 'fuse'
}
NORMALIZE_AT = ('auto', 'loss', 'record')
_NORMALIZE = {
    True: 'both',
    False: 'none',
    None: 'none',
    'both': 'both',
    'student': 'student',
    'teacher': 'teacher',
    'none': 'none'
}


def parse_normalize(normalize: Any, normalize_at: Any) -> Tuple[str, str]:
    """``normalize`` as ``'both'``/``'student'``/``'teacher'``/``'none'``,
    and ``normalize_at``, checked."""
    if not isinstance(normalize, (bool, str, type(None))) \
            or normalize not in _NORMALIZE:
        raise ValueError(
            f"{KEY}.normalize must be True/'both', 'student', 'teacher' "
            f"or False/'none', got {normalize!r}")
    if normalize_at not in NORMALIZE_AT:
        raise ValueError(f'{KEY}.normalize_at must be one of '
                         f'{NORMALIZE_AT}, got {normalize_at!r}')
    return _NORMALIZE[normalize], normalize_at


def build_avatar_perturbation(
        cfg: Any, num_avatars: Optional[int]) -> BaseAvatarPerturbation:
    key = f'{KEY}.perturbation'
    if cfg is None:
        raise ValueError(
            f'{key} must be set; use '
            "dict(type='AvatarDropout', p=0.0) for Avatars equal to the "
            'teacher.')
    if isinstance(cfg, dict):
        # ``--cfg-options model.distiller.avatars.perturbation.p=0.2``
        # gives a dict without a type: keep the default perturbation.
        cfg = dict(cfg)
        cfg.setdefault('type', 'AvatarDropout')
        given = cfg.get('num_avatars')
        if given is not None and num_avatars is not None \
                and given != num_avatars:
            raise ValueError(f'{key}.num_avatars={given!r} contradicts '
                             f'{KEY}.num_avatars={num_avatars}; set only the '
                             'latter.')
    module = build_perturbation(cfg, key)
    if module.per_avatar:
        if num_avatars is not None and module.num_avatars != num_avatars:
            raise ValueError(
                f'{key} defines {module.num_avatars} Avatars (one '
                f'strength or member per Avatar: {module!r}) but '
                f'{KEY}.num_avatars={num_avatars}; make them agree or '
                f'leave {KEY}.num_avatars out.')
    elif num_avatars is not None:
        module.num_avatars = num_avatars
    return module


def parse_uncertainty(cfg: Any) -> Optional[float]:
    if cfg is None:
        return None
    if not isinstance(cfg, dict) or set(cfg) - {'tau'}:
        raise ValueError(f'{KEY}.uncertainty must be None or '
                         f'dict(tau=...), got {cfg!r}')
    tau = cfg.get('tau', DEFAULT_TAU)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) \
            or not tau > 0:
        raise ValueError(
            f'{KEY}.uncertainty.tau must be a number > 0, got {tau!r}')
    return float(tau)


def select_losses(names: Optional[List[str]], distill_losses: Dict[str, Any],
                  loss_forward_mappings: Dict[str, Dict]) -> Dict[str, str]:
    """Map each selected loss to the argument that takes the teacher."""
    if names is None:
        names = list(distill_losses)
    elif isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise TypeError(f'{KEY}.losses must be a list of loss names or '
                        f'None, got {names!r}')
    if not names:
        raise ValueError(f'{KEY}.losses selects no loss; give None for '
                         'all losses, or leave AvatarDistiller out.')
    teacher_keys = {}
    for name in names:
        if name not in distill_losses:
            raise KeyError(f'{KEY}.losses: {name!r} is not in distill_losses '
                           f'{sorted(distill_losses)}')
        mapping = loss_forward_mappings.get(name)
        if not mapping:
            raise KeyError(
                f'{KEY}.losses: {name!r} has no entry in '
                'loss_forward_mappings, so its teacher input is unknown')
        keys = [
            key for key, record in mapping.items()
            if isinstance(record, dict) and record.get('from_student') is False
        ]
        if len(keys) != 1:
            loss_type = type(distill_losses[name]).__name__
            raise ValueError(
                f'{KEY}.losses: {loss_type} {name!r} has '
                f'{len(keys)} teacher inputs (from_student=False in '
                f'loss_forward_mappings.{name}: {keys}); AKD perturbs '
                'exactly one. Leave it out of avatars.losses.')
        teacher_keys[name] = keys[0]
    return teacher_keys


def choose_fusions(fuse: Any, num_avatars: int,
                   teacher_keys: Dict[str, str],
                   distill_losses: Dict[str, nn.Module],
                   loss_forward_mappings: Dict[str, Dict],
                   connectors: Dict[str, nn.Module]
                   ) -> Dict[str, Optional[LossFusion]]:  # yapf: disable
    """The fused target of each AKD loss, or None for the per-Avatar loop.

    ``fuse='auto'`` fuses every loss that has an exact fused form (see
    :mod:`mmakd.models.avatars.fusion`) when ``K > 1`` (with one Avatar the
    loss runs once anyway, and the fused form only adds work), ``False``
    none, ``True`` all and fails naming the loss that has none. The choice
    is logged once.
    """
    if not (isinstance(fuse, bool) or fuse == 'auto'):
        raise ValueError(f"{KEY}.fuse must be 'auto', True or False, got "
                         f'{fuse!r}')
    fusions: Dict[str, Optional[LossFusion]] = {}
    lines = []
    for name, teacher_key in teacher_keys.items():
        loss = distill_losses[name]
        mapping = loss_forward_mappings[name]
        fusion, why = fusion_for(loss)
        students = [k for k in mapping if k != teacher_key]
        if fusion is not None and len(students) != 1:
            fusion, why = None, (f'it takes {len(students)} student inputs '
                                 f'({students}), not one')
        connector = mapping[teacher_key].get('connector')
        blocker = fusion_blocker(connectors[connector] if connector
                                 and connector in connectors else None)
        if fusion is not None and blocker:
            fusion, why = None, blocker
        if fuse is True and fusion is None:
            raise ValueError(
                f'model.distiller.distill_losses.{name} '
                f'({type(loss).__name__}) cannot take a fused Avatar target '
                f"({KEY}.fuse=True): {why}. Set {KEY}.fuse='auto' to keep "
                'the per-Avatar loop for it.')
        if fuse is False:
            fusion, why = None, f'{KEY}.fuse=False'
        elif fuse == 'auto' and num_avatars == 1 and fusion is not None:
            fusion, why = None, 'K = 1: one loss call either way'
        fusions[name] = fusion
        how = 'fused target, one loss call per step' if fusion else \
            f'per-Avatar loop ({why})'
        lines.append(f'{name} ({type(loss).__name__}): {how}')
    print_log(
        f'{KEY}.fuse={fuse!r}: ' + '; '.join(lines),
        logger='current',
        level=logging.INFO)
    return fusions
