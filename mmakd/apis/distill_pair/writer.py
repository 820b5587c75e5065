# Copyright (c) mmakd contributors. All rights reserved.
"""Write a :class:`PairPlan` as a readable MMRazor config built on the
student's own config, and show it as a short table."""
import inspect
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

from mmengine.config import Config, ConfigDict

from mmakd.models.utils.model_spec import load_model_config
from .plan import PairPlan

__all__ = [
    'split_options', 'pair_config_dict', 'pair_config_text', 'format_table',
    'STUDENT_HOOK'
]

#: Writes the student-only checkpoint next to the last one.
STUDENT_HOOK = dict(type='mmrazor.StudentCheckpointHook')


def _algorithm_keys() -> frozenset:
    """``model.*`` keys of the distillation algorithm itself (the rest of
    ``model.*`` addresses the student's model)."""
    from mmrazor.models import SingleTeacherDistill

    from mmakd.models.algorithms import FlexibleTeacherDistill
    keys = set()
    for cls in (FlexibleTeacherDistill, SingleTeacherDistill):
        keys |= set(inspect.signature(cls.__init__).parameters)
    return frozenset(keys - {'self', 'kwargs', 'data_preprocessor'})


def split_options(
    options: Optional[Dict[str, Any]]
) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """Split ``--cfg-options`` into the student model's (``model.*`` keys
    the algorithm does not have, e.g. ``model.bbox_head.num_classes``, and
    the top-level ``data_preprocessor.*`` the student's model takes), the
    algorithm's (``model.distiller...``, ``model.teacher_eval``...) and the
    rest of the config's (data, schedule, hooks)."""
    student, algorithm, rest = {}, {}, {}
    own = _algorithm_keys()
    for key, value in (options or {}).items():
        parts = key.split('.')
        if parts[0] == 'data_preprocessor':
            student[key] = value
        elif parts[0] != 'model' or len(parts) == 1:
            rest[key] = value
        elif parts[1] in own:
            algorithm[key] = value
        else:
            student[key] = value
    return student, algorithm, rest


def _ref(path: str) -> str:
    """A config path that still points to the file from the work dir."""
    return path if '::' in path else osp.abspath(path)


def _ckpt_ref(path: str) -> str:
    return path if '://' in path else osp.abspath(path)


def _plain(value: Any) -> Any:
    return value.to_dict() if isinstance(value, ConfigDict) else value


def pair_config_dict(
        plan: PairPlan,
        algorithm_options: Optional[Dict[str, Any]] = None,
        options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The generated config: the student's config as ``_base_``, its
    ``model`` replaced by ``FlexibleTeacherDistill``, every other key of
    ``options`` written out whole.

    Args:
        plan (PairPlan): What to write.
        algorithm_options (dict, optional): ``model.*`` overrides of the
            algorithm (see :func:`split_options`).
        options (dict, optional): Overrides of the rest of the config.

    Returns:
        dict: Keys and values of the config file.
    """
    student_ref = _ref(plan.student)
    base = load_model_config(plan.student, 'student')
    if options:
        base.merge_from_dict(options)
    architecture: Dict[str, Any] = dict(cfg_path=student_ref, pretrained=False)
    student_options = dict(plan.student_options)
    if base.get('load_from'):
        # MMEngine's Runner would load it into the algorithm, whose keys
        # are the student's with an `architecture.` prefix: nothing would
        # match. As the student's own Pretrained init_cfg it loads the
        # same way (after the other initialisers, not strictly).
        init_cfg = student_options.get('model.init_cfg',
                                       base.model.get('init_cfg'))
        init_cfg = [] if init_cfg is None else [
            _plain(c)
            for c in (init_cfg if isinstance(init_cfg, list) else [init_cfg])
        ]
        student_options['model.init_cfg'] = init_cfg + [
            dict(type='Pretrained', checkpoint=base.load_from)
        ]
    if student_options:
        architecture['cfg_options'] = student_options
    model = dict(
        _delete_=True,
        _scope_='mmrazor',
        type='FlexibleTeacherDistill',
        architecture=architecture,
        teacher=dict(cfg_path=_ref(plan.teacher), pretrained=False),
        teacher_ckpt=_ckpt_ref(plan.teacher_ckpt),
        distiller=plan.distiller)
    if algorithm_options:
        merged = Config(dict(model=model))
        merged.merge_from_dict(algorithm_options)
        model = merged.model.to_dict()
    imports = list((base.get('custom_imports') or {}).get('imports', []))
    hooks = [_plain(h) for h in base.get('custom_hooks') or []]
    if not any(h.get('type') == STUDENT_HOOK['type'] for h in hooks):
        hooks.append(dict(STUDENT_HOOK))
    cfg: Dict[str, Any] = dict(
        _base_=[student_ref],
        custom_imports=dict(
            imports=imports + [i for i in ['mmakd'] if i not in imports],
            allow_failed_imports=False),
        model=model,
        find_unused_parameters=True,
        custom_hooks=hooks)
    if base.get('load_from'):
        cfg['load_from'] = None
    if base.get('data_preprocessor') is not None:
        # the Runner would give it to the algorithm, which runs the
        # student's own (built from model.architecture)
        cfg['data_preprocessor'] = None
    if base.get('val_cfg') is not None:
        cfg['val_cfg'] = dict(
            _delete_=True, type='mmrazor.SingleTeacherDistillValLoop')
    for top in dict.fromkeys(key.split('.')[0] for key in options or {}):
        if top in ('custom_hooks', 'custom_imports', 'load_from'):
            continue  # written above
        value = _plain(base.get(top))
        if isinstance(value, dict):
            value = dict(_delete_=True, **value)
        cfg[top] = value
    return cfg


def _command(plan: PairPlan) -> str:
    words = [
        'python tools/train.py', plan.student, '--teacher', plan.teacher,
        '--teacher-ckpt', plan.teacher_ckpt, '--distill', plan.distill
    ]
    if plan.num_avatars:
        words += ['--avatars', str(plan.num_avatars)]
    if any(p.student.startswith('auxiliary_head') for p in plan.pairs):
        words.append('--aux-head')
    return ' '.join(words)


def pair_config_text(plan: PairPlan, cfg: Dict[str, Any]) -> str:
    """The config file: a header saying what it is, then ``cfg``."""
    what = {
        'det': f'the {len(plan.pairs)} neck levels',
        'seg': "the decode head's logits",
        'cls': 'the logits'
    }[plan.kind]
    if plan.kind == 'seg' and len(plan.pairs) > 1:
        what += " and the auxiliary heads'"
    akd = f'AKD ({plan.num_avatars} Avatars) + ' if plan.num_avatars else ''
    header = [
        f'# {akd}{plan.distill.upper()} on {what}: teacher {plan.teacher}',
        f'# -> student {plan.student}. Generated by mmakd\'s one-command',
        '# distillation; train it again with `python tools/train.py '
        'THIS_FILE`.',
        f'#   {_command(plan)}',
        f'# Loss defaults: {plan.recipe.source}.',
        '# Data, schedule, optimizer and hooks are the student\'s config '
        '(_base_).',
    ]
    if cfg.get('load_from', 0) is None:
        header.append('# The student\'s load_from is its model.init_cfg '
                      '(Pretrained) here: the runner would load it into the '
                      'algorithm.')
    return '\n'.join(header) + '\n' + Config(cfg).pretty_text


def _shape(shape: Tuple[int, ...]) -> str:
    return 'x'.join(str(s) for s in shape[1:])


def _loss(cfg: Dict[str, Any]) -> str:
    args = ', '.join(f'{k}={v}' for k, v in cfg.items()
                     if k not in ('type', 'loss_weight'))
    return f'{cfg["type"]}({args})'


def _weight(cfg: Dict[str, Any]) -> str:
    # MGDLoss has no loss_weight: its alpha_mgd scales it
    return f'{cfg["loss_weight"]:g}' if 'loss_weight' in cfg else '-'


def _connector(cfg: Optional[Dict[str, Any]]) -> str:
    if not cfg:
        return '-'
    if cfg['type'] == 'MGDConnector':
        return (f'MGDConnector {cfg["student_channels"]}->'
                f'{cfg["teacher_channels"]}')
    return f'1x1 conv {cfg["in_channel"]}->{cfg["out_channel"]}'


def format_table(plan: PairPlan, path: Optional[str] = None) -> str:
    """What the generated config pairs, one row per loss."""
    rows: List[List[str]] = [[
        'loss', 'student record', 'teacher record', 'student shape',
        'teacher shape', 'stride', 'connector', 'loss', 'weight'
    ]]
    for pair in plan.pairs:
        rows.append([
            pair.loss, pair.student, pair.teacher,
            _shape(pair.student_shape),
            _shape(pair.teacher_shape),
            f'{pair.stride:g}' if pair.stride else '-',
            _connector(pair.connector),
            _loss(pair.loss_cfg),
            _weight(pair.loss_cfg)
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        f'One-command distillation ({plan.distill}), defaults from '
        f'{plan.recipe.source}',
        f'  student  {plan.student}',
        f'  teacher  {plan.teacher}  checkpoint {plan.teacher_ckpt}',
    ]
    if plan.num_avatars:
        avatars = plan.distiller['avatars']
        lines.append(f'  avatars  {plan.num_avatars} x '
                     f'{_loss(avatars["perturbation"])}, uncertainty-'
                     f'weighted (tau {avatars["uncertainty"]["tau"]:g})')
    lines.append(f'  shapes   C x H x W of a 1x3x{plan.probe[0]}x'
                 f'{plan.probe[1]} random batch through the models as built')
    for i, row in enumerate(rows):
        lines.append('  ' + '  '.join(c.ljust(w)
                                      for c, w in zip(row, widths)).rstrip())
        if i == 0:
            lines.append('  ' + '  '.join('-' * w for w in widths))
    if path:
        lines.append(f'  config   {path}')
    return '\n'.join(lines)
