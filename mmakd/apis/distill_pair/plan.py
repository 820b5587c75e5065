# Copyright (c) mmakd contributors. All rights reserved.
"""Pair a student and a teacher: which outputs, which loss, which
connector (one-command distillation, ``tools/train.py STUDENT --teacher
T --teacher-ckpt C``)."""
import copy
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from mmengine.config import Config
from torch import nn

from mmakd.models.utils.model_spec import (build_model_from_spec,
                                           load_model_config)
from .probe import (PairingError, is_two_stage, logit_sources, model_kind,
                    probe_records, probe_size)
from .recipes import (DEFAULT_DISTILL, WHERE, Recipe, avatar_block,
                      loss_config, recipe_for)

__all__ = ['Pair', 'PairPlan', 'plan_pair', 'config_stem']


@dataclass
class Pair:
    """One distillation loss: what it compares and how."""
    loss: str
    student: str
    teacher: str
    student_shape: Tuple[int, ...]
    teacher_shape: Tuple[int, ...]
    stride: Optional[float]
    loss_cfg: Dict[str, Any]
    connector: Optional[Dict[str, Any]] = None


@dataclass
class PairPlan:
    """Everything one-command distillation decided, before it is written.

    Attributes:
        student (str): The student's config, as given.
        teacher (str): The teacher's config, as given.
        teacher_ckpt (str): The teacher's checkpoint, as given.
        kind (str): ``'det'``, ``'seg'`` or ``'cls'``.
        distill (str): ``'cwd'``, ``'pkd'``, ``'mgd'`` or ``'kd'``.
        recipe (Recipe): Where the defaults come from.
        num_avatars (int, optional): K, or None without Avatars.
        probe (tuple): (H, W) of the probe batch.
        pairs (list[Pair]): One per loss.
        distiller (dict): The distiller's config.
        student_options (dict): ``model.*`` overrides of the student.
    """
    student: str
    teacher: str
    teacher_ckpt: str
    kind: str
    distill: str
    recipe: Recipe
    num_avatars: Optional[int]
    probe: Tuple[int, int]
    pairs: List[Pair] = field(default_factory=list)
    distiller: Dict[str, Any] = field(default_factory=dict)
    student_options: Dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """File name of the generated config, in the house's naming:
        ``[akd_]{loss}_{where}_{teacher}_{student}.py``."""
        prefix = 'akd_' if self.num_avatars else ''
        return (f'{prefix}{self.distill}_{WHERE[self.kind]}_'
                f'{config_stem(self.teacher)}_{config_stem(self.student)}.py')


def config_stem(path: str) -> str:
    """``'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'`` ->
    ``'retinanet_r50_fpn_2x_coco'``."""
    return osp.splitext(osp.basename(path.split('::')[-1]))[0]


def _build(path: str, key: str,
           options: Dict[str, Any]) -> Tuple[nn.Module, Config]:
    """Build the ``model`` of a plain model config, with random weights;
    also return the config."""
    try:
        cfg = load_model_config(path, key)
    except Exception as err:
        raise PairingError(f'{key} {path}: the config does not load: '
                           f'{type(err).__name__}: {err}') from err
    model = cfg.get('model') or {}
    if 'architecture' in model or 'teachers' in model:
        raise PairingError(
            f'{key} {path} is already a distillation config (model.type='
            f'{model.get("type")!r}); give the plain config of the model '
            'itself.')
    spec = dict(cfg_path=path, pretrained=False, cfg_options=options)
    try:
        return build_model_from_spec(spec, key), cfg
    except Exception as err:
        raise PairingError(f'{key} {path}: the model (model.type='
                           f'{model.get("type")!r}) does not build: '
                           f'{type(err).__name__}: {err}') from err


def _check_spatial(name: str, size: Tuple[int, int], s_shape: Tuple[int, ...],
                   t_shape: Tuple[int, ...], keys: Tuple[str, str]) -> None:
    if s_shape[2:] != t_shape[2:]:
        raise PairingError(
            f'{name}: the student\'s {keys[0]} is {_hw(s_shape, size)} and '
            f'the teacher\'s {keys[1]} {_hw(t_shape, size)} on a '
            f'{size[0]}x{size[1]} input; the pair needs the same resolution '
            '(give the student the teacher\'s strides, or write a full '
            'MMRazor config with a connector that resizes).')


def _hw(shape: Tuple[int, ...], size: Tuple[int, int]) -> str:
    text = 'x'.join(str(s) for s in shape[2:])
    if len(shape) == 4:
        text += f' (stride {size[0] / shape[2]:g})'
    return text


def _det_pairs(plan: PairPlan, s_levels: List[Tuple[int, ...]],
               t_levels: List[Tuple[int, ...]], indexed: Tuple[bool, bool],
               two_stage: bool, keys: Tuple[str, str]) -> None:
    """Pair the neck levels in order (``indexed``, student and teacher:
    whether the neck returns a sequence of levels, from which a mapping
    takes one by ``data_idx``, rather than one tensor)."""
    if len(s_levels) != len(t_levels):
        raise PairingError(
            f'the student\'s neck gives {len(s_levels)} levels ({keys[0]}: '
            f'model.neck.num_outs) and the teacher\'s {len(t_levels)} '
            f'({keys[1]}: model.neck.num_outs); levels are paired in order, '
            'so the counts must match.')
    count = len(s_levels)
    if plan.recipe.max_levels:
        count = min(count, plan.recipe.max_levels)
    fpn = dict(type='ModuleOutputs', source='neck')
    distiller = dict(
        type='ConfigurableDistiller',
        student_recorders=dict(fpn=fpn),
        teacher_recorders=dict(fpn=copy.deepcopy(fpn)),
        distill_losses={},
        loss_forward_mappings={})
    for i in range(count):
        s_shape, t_shape = s_levels[i], t_levels[i]
        name = f'loss_{plan.distill}_fpn{i}'
        _check_spatial(name, plan.probe, s_shape, t_shape,
                       (f'neck level {i}', f'neck level {i}'))
        connector = None
        if plan.recipe.connector is not None:
            connector = dict(
                plan.recipe.connector,
                student_channels=s_shape[1],
                teacher_channels=t_shape[1])
        elif s_shape[1] != t_shape[1]:
            connector = dict(
                type='ConvModuleConnector',
                in_channel=s_shape[1],
                out_channel=t_shape[1],
                kernel_size=1,
                norm_cfg=None,
                act_cfg=None)
        s_index, t_index = ({'data_idx': i} if seq else {} for seq in indexed)
        preds_s = dict(from_student=True, recorder='fpn', **s_index)
        if connector is not None:
            distiller.setdefault('connectors',
                                 {})[f's_fpn{i}_connector'] = connector
            preds_s['connector'] = f's_fpn{i}_connector'
        loss = loss_config(plan.recipe, two_stage)
        distiller['distill_losses'][name] = loss
        distiller['loss_forward_mappings'][name] = dict(
            preds_S=preds_s,
            preds_T=dict(from_student=False, recorder='fpn', **t_index))
        plan.pairs.append(
            Pair(name, *(f'neck[{i}]' if seq else 'neck' for seq in indexed),
                 s_shape, t_shape, plan.probe[0] / s_shape[2], loss,
                 connector))
    plan.distiller = distiller


def _aux_weight(model: nn.Module) -> float:
    """The student's auxiliary loss weight relative to its decode head's
    (0.4 in MMSegmentation's PSPNet and DeepLabV3 configs)."""

    def weight(head) -> Optional[float]:
        loss = getattr(head, 'loss_decode', None)
        if isinstance(loss, nn.ModuleList):
            loss = loss[0] if len(loss) else None
        return getattr(loss, 'loss_weight', None)

    aux = model.auxiliary_head
    aux = aux[0] if isinstance(aux, nn.ModuleList) else aux
    main = model.decode_head
    main = main[-1] if isinstance(main, nn.ModuleList) else main
    aux_w, main_w = weight(aux), weight(main)
    return aux_w / main_w if aux_w and main_w else 0.4


def _logit_pairs(plan: PairPlan, s_sources: List[str], t_sources: List[str],
                 s_shapes, t_shapes, aux_ratio: float,
                 keys: Tuple[str, str]) -> None:
    what = 'model.head.num_classes' if plan.kind == 'cls' else \
        'model.decode_head.num_classes'
    recorder = 'fc' if plan.kind == 'cls' else 'logits'
    loss_base = 'loss_kl' if plan.distill == 'kd' else f'loss_{plan.distill}'
    distiller = dict(
        type='ConfigurableDistiller',
        student_recorders={},
        teacher_recorders={},
        distill_losses={},
        loss_forward_mappings={})
    for i, (s_src, t_src) in enumerate(zip(s_sources, t_sources)):
        aux = s_src.startswith('auxiliary_head')
        rec = recorder if i == 0 else f'aux_{recorder}{i - 1}'
        name = loss_base if i == 0 else f'{loss_base}_aux{i - 1}'
        s_shape, t_shape = s_shapes[s_src][0], t_shapes[t_src][0]
        if s_shape[1] != t_shape[1]:
            raise PairingError(
                f'{name}: the student predicts {s_shape[1]} classes '
                f'({keys[0]}: {what}) and the teacher {t_shape[1]} '
                f'({keys[1]}: {what}); logits are compared class by class, '
                'so both must have the same classes.')
        if plan.kind == 'seg':
            _check_spatial(name, plan.probe, s_shape, t_shape,
                           (f'{s_src} output', f'{t_src} output'))
        distiller['student_recorders'][rec] = dict(
            type='ModuleOutputs', source=s_src)
        distiller['teacher_recorders'][rec] = dict(
            type='ModuleOutputs', source=t_src)
        loss = loss_config(plan.recipe, False)
        if aux:
            loss['loss_weight'] = round(loss['loss_weight'] * aux_ratio, 6)
        distiller['distill_losses'][name] = loss
        distiller['loss_forward_mappings'][name] = dict(
            preds_S=dict(from_student=True, recorder=rec),
            preds_T=dict(from_student=False, recorder=rec))
        stride = plan.probe[0] / s_shape[2] if len(s_shape) == 4 else None
        plan.pairs.append(
            Pair(name, s_src, t_src, s_shape, t_shape, stride, loss))
    plan.distiller = distiller


def plan_pair(
    student: str,
    teacher: str,
    teacher_ckpt: str,
    distill: Optional[str] = None,
    num_avatars: Optional[int] = None,
    aux_head: bool = False,
    student_options: Optional[Dict[str, Any]] = None
) -> Tuple[PairPlan, nn.Module, nn.Module]:
    """Decide how ``student`` learns from ``teacher``.

    Both models are built from their configs with random weights (nothing
    is read or downloaded) and run once on a random batch; the shapes they
    record decide the pairs, connectors and errors.

    Args:
        student (str): The student's plain model config (a file or
            ``package::path``).
        teacher (str): The teacher's plain model config.
        teacher_ckpt (str): The teacher's checkpoint (not read here).
        distill (str, optional): ``'cwd'``, ``'pkd'``, ``'mgd'`` or
            ``'kd'``. Defaults to None: CWD for detectors and segmentors,
            KD for classifiers.
        num_avatars (int, optional): K Avatars (AKD); None for none.
        aux_head (bool): Segmentors: also pair the auxiliary heads' logits.
        student_options (dict, optional): ``model.*`` overrides of the
            student's config (from ``--cfg-options``).

    Returns:
        tuple: The plan, and the built student and teacher.

    Raises:
        PairingError: What cannot be paired, naming the option or key.
    """
    keys = (f'student {student}', f'--teacher {teacher}')
    s_model, s_cfg = _build(student, 'student', student_options or {})
    t_model, _ = _build(teacher, '--teacher', {})
    kind = model_kind(s_model, keys[0])
    t_kind = model_kind(t_model, keys[1])
    if kind != t_kind:
        names = dict(det='a detector', seg='a segmentor', cls='a classifier')
        raise PairingError(f'the student is {names[kind]} and the teacher '
                           f'{names[t_kind]} ({keys[0]}, {keys[1]}).')
    distill = distill or DEFAULT_DISTILL[kind]
    if num_avatars is not None:
        avatars = avatar_block(kind, num_avatars)
    plan = PairPlan(student, teacher, teacher_ckpt, kind, distill,
                    recipe_for(kind, distill), num_avatars, probe_size(s_cfg))
    plan.student_options = dict(student_options or {})
    if kind == 'det':
        s_shapes = probe_records(s_model, kind, ['neck'], plan.probe)
        t_shapes = probe_records(t_model, kind, ['neck'], plan.probe)
        indexed = tuple('neck' not in shapes.get('__tensor__', [])
                        for shapes in (s_shapes, t_shapes))
        _det_pairs(plan, s_shapes['neck'], t_shapes['neck'], indexed,
                   is_two_stage(s_model), keys)
    else:
        s_sources = logit_sources(s_model, kind, keys[0], aux_head)
        t_sources = logit_sources(t_model, kind, keys[1], aux_head)
        if len(s_sources) != len(t_sources):
            raise PairingError(
                f'--aux-head: the student has {len(s_sources) - 1} auxiliary '
                f'heads and the teacher {len(t_sources) - 1} '
                '(model.auxiliary_head); they are paired in order.')
        s_shapes = probe_records(s_model, kind, s_sources, plan.probe)
        t_shapes = probe_records(t_model, kind, t_sources, plan.probe)
        ratio = _aux_weight(s_model) if aux_head else 1.0
        _logit_pairs(plan, s_sources, t_sources, s_shapes, t_shapes, ratio,
                     keys)
    if num_avatars is not None:
        plan.distiller['type'] = 'AvatarDistiller'
        plan.distiller['avatars'] = avatars
    return plan, s_model, t_model
