# Copyright (c) mmakd contributors. All rights reserved.
"""The warnings: one rule per kind, its thresholds, and :func:`diagnose`."""
import math
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from torch import nn

#: A distillation loss with more of the student's gradient than this
#: drowns the task losses.
SHARE_MAX = 0.9
#: A distillation loss with less than this is drowned by them.
SHARE_MIN = 0.01
#: Student and teacher tensors whose standard deviations differ by more
#: than this factor, compared without normalisation.
SCALE_RATIO = 10.0
#: Values this close to zero count as zero.
ZERO = 1e-12
#: Relative spread under which a loss counts as constant across batches.
CONSTANT_RTOL = 1e-6
#: Steps a loss needs before it can be called constant.
CONSTANT_MIN_STEPS = 2
#: Active teacher dropout layers a warning names (the first ones).
DROPOUT_NAMED = 3

#: Losses that standardise or L2-normalise both inputs themselves, so the
#: scale of the raw tensors does not matter.
_NORMALISING_LOSSES = ('PKDLoss', 'ATLoss')

#: What a rule finds: the loss it names (None for the teacher) and the
#: message.
Finding = Tuple[Optional[str], str]
#: A rule: the findings of one warning kind in a report, given the
#: algorithm (or None).
Rule = Callable[[Dict[str, Any], Optional[nn.Module]], List[Finding]]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _normalised(module: nn.Module) -> bool:
    """Whether a loss normalises both inputs itself."""
    name = type(module).__name__
    return name in _NORMALISING_LOSSES or (name == 'L2Loss' and bool(
        getattr(module, 'normalize', False)))


def _one_by_one(stats: Optional[Dict[str, Any]]) -> bool:
    shapes = (stats or {}).get('shape') or []
    shapes = shapes if shapes and isinstance(shapes[0], list) else [shapes]
    return any(len(s) == 4 and s[2] * s[3] == 1 for s in shapes)


def _key(name: str) -> str:
    """The config key of a distillation loss."""
    return f'model.distiller.distill_losses.{name}'


def _mapping(name: str) -> str:
    """The config key of a distillation loss's inputs."""
    return f'model.distiller.loss_forward_mappings.{name}'


def _constant(values: List[float]) -> bool:
    """Whether values spread by at most :data:`CONSTANT_RTOL` of the
    largest magnitude."""
    return max(values) - min(values) <= CONSTANT_RTOL * max(
        abs(v) for v in values)


def _finite(r: Dict[str, Any]) -> bool:
    """Whether a loss and its gradient norm are finite at every step."""
    return all(map(math.isfinite, r['values'] + r['grad_norms']))


def _zero(r: Dict[str, Any]) -> bool:
    """Whether a loss is (within :data:`ZERO`) 0 at every step."""
    return all(abs(v) <= ZERO for v in r['values'])


def _finite_losses(
        report: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """The finite distillation losses, by name: the rules after
    ``nonfinite`` look at these only."""
    return ((name, r) for name, r in report['losses'].items() if _finite(r))


def _eval_hint(report: Dict[str, Any]) -> str:
    """How to put the teacher in evaluation mode with this algorithm."""
    if report.get('algorithm',
                  '') in ('FlexibleTeacherDistill', 'MultiTeacherDistill'):
        return 'model.teacher_eval=True'
    return ("model.type='FlexibleTeacherDistill' (mmakd) with "
            'model.teacher_eval=True')


# ---------------------------------------------------------------------------
# the rules, one per warning kind
# ---------------------------------------------------------------------------
def rule_not_summed(report: Dict[str, Any],
                    model: Optional[nn.Module] = None) -> List[Finding]:
    """Losses that MMEngine never adds to the total: no "loss" in the
    name."""
    return [(name, f'{name} is logged but never trained: MMEngine adds to '
             'the total loss only the logged values whose name contains '
             f'"loss"; rename {_key(name)} and {_mapping(name)} (e.g. to '
             f'loss_{name}).') for name in report['losses']
            if 'loss' not in name]


def _nonfinite_where(r: Dict[str, Any]) -> str:
    """At which steps a loss is NaN or Inf, and where that comes from."""
    bad = [i + 1 for i, v in enumerate(r['values']) if not math.isfinite(v)]
    inputs = [
        side for side in ('student', 'teacher')
        if r[side] and not r[side]['finite']
    ]
    where = (f'its {" and ".join(inputs)} input holds NaN or Inf '
             '(a diverged model or a broken checkpoint)'
             if inputs else 'its inputs are finite, so the loss '
             'itself overflows or divides by zero (e.g. tau=0)')
    return f'at step(s) {bad or "(gradient only)"}: {where}'


def rule_nonfinite(report: Dict[str, Any],
                   model: Optional[nn.Module] = None) -> List[Finding]:
    """Losses (or gradient norms) that are NaN or Inf at some step."""
    return [(name, f'{name} is NaN or Inf {_nonfinite_where(r)}; check '
             f'{_key(name)}.') for name, r in report['losses'].items()
            if not _finite(r)]


def _one_by_one_hint(r: Dict[str, Any]) -> str:
    """Why a loss that compares 1x1 maps is 0 (empty for other losses)."""
    if not (_one_by_one(r['student']) or _one_by_one(r['teacher'])):
        return ''
    return (' It compares 1x1 maps (e.g. ChannelWiseDivergence over P7 of a '
            '5-level FPN at this input size: a softmax over one position is '
            '1 on both sides); analyse at the training size (--size) or '
            'leave that level out.')


def rule_zero_loss(report: Dict[str, Any],
                   model: Optional[nn.Module] = None) -> List[Finding]:
    """Losses that are 0 at every step."""
    return [(name, f'{name} is 0 at every step, so it teaches nothing.'
             f'{_one_by_one_hint(r)} Check {_mapping(name)} and '
             f'{_key(name)}.') for name, r in _finite_losses(report)
            if _zero(r)]


def rule_constant_loss(report: Dict[str, Any],
                       model: Optional[nn.Module] = None) -> List[Finding]:
    """Losses (not 0) that stay the same while the task losses change."""
    task_vary = any(not _constant(r['values'])
                    for r in report['task_losses'].values())
    return [(name, f'{name} is {r["values"][0]:.6g} at every step while '
             'the task losses change with the batch: it does not depend on '
             'the input (e.g. it compares parameters, or records that '
             f'ignore the image); check the recorders in {_mapping(name)}.')
            for name, r in _finite_losses(report)
            if not _zero(r) and len(r['values']) >= CONSTANT_MIN_STEPS
            and task_vary and _constant(r['values'])]


def rule_no_gradient(report: Dict[str, Any],
                     model: Optional[nn.Module] = None) -> List[Finding]:
    """Losses (not 0) that send no gradient into the student."""
    return [(name, f'{name} sends no gradient into the student: its '
             'student input is not connected to the student\'s parameters '
             '(a teacher record mapped as the student one, a detached or '
             'input-only recorder); check from_student and the recorders '
             f'in {_mapping(name)}.') for name, r in _finite_losses(report)
            if not _zero(r) and r['grad_norm'] == 0]


def _weight(name: str, r: Dict[str, Any]) -> str:
    """The config key that scales a loss, with its value."""
    if r.get('weight_key'):
        return f'{_key(name)}.{r["weight_key"]} (now {r["loss_weight"]:g})'
    return f'its weight in {_key(name)}'


def rule_dominant_loss(report: Dict[str, Any],
                       model: Optional[nn.Module] = None) -> List[Finding]:
    """Losses with more than :data:`SHARE_MAX` of the student's gradient
    while task losses train it too."""
    task = report['task_losses']
    task_share = sum(r['grad_share'] or 0.0 for r in task.values())
    if not (task and task_share > 0):
        return []
    return [(name, f'{name} has {r["grad_share"]:.1%} of the student\'s '
             f'gradient (task losses {task_share:.1%}): it drowns the task '
             f'losses; lower {_weight(name, r)}.')
            for name, r in _finite_losses(report)
            if r['grad_share'] is not None and r['grad_share'] > SHARE_MAX]


def rule_negligible_loss(report: Dict[str, Any],
                         model: Optional[nn.Module] = None) -> List[Finding]:
    """Losses (not 0) with less than :data:`SHARE_MIN` of the student's
    gradient (but some)."""
    return [(name, f'{name} has {r["grad_share"]:.2%} of the student\'s '
             'gradient: the task losses drown it; raise '
             f'{_weight(name, r)}.') for name, r in _finite_losses(report)
            if r['grad_share'] is not None and 0 < r['grad_share'] < SHARE_MIN
            and not _zero(r)]


def rule_scale_mismatch(report: Dict[str, Any],
                        model: Optional[nn.Module] = None) -> List[Finding]:
    """Losses that compare, without normalising them, inputs whose
    standard deviations are more than :data:`SCALE_RATIO` apart."""
    modules = model.distiller.distill_losses if model is not None else {}
    untrained = '' if report.get('checkpoint') else (
        ' The student is as initialised (no --checkpoint): its scale may '
        'grow in training (logits start near 0); analyse a checkpoint of '
        'a short run to see whether the gap stays.')
    found = []
    for name, r in _finite_losses(report):
        s, t = r['student'], r['teacher']
        if not s or not t or (name in modules and _normalised(modules[name])):
            continue
        small, large = sorted((s['std'], t['std']))
        if large > 0 and (small == 0 or large / small > SCALE_RATIO):
            ratio = large / small if small else float('inf')
            found.append(
                (name, f'{name} compares a student input with std '
                 f'{s["std"]:.3g} and a teacher input with std '
                 f'{t["std"]:.3g} ({ratio:.3g}x apart) without normalising '
                 'them; standardise them (AvatarDistiller '
                 'avatars.normalize=True, or a normalising loss such as '
                 f'PKDLoss) or add a connector in {_mapping(name)}.'
                 f'{untrained}'))
    return found


def rule_teacher_no_checkpoint(
        report: Dict[str, Any],
        model: Optional[nn.Module] = None) -> List[Finding]:
    """A teacher loaded from no checkpoint, or from one that lacks some of
    its tensors."""
    teacher = report['teacher']
    multi = report.get('algorithm', '') == 'MultiTeacherDistill'
    ckpt_key = 'model.teacher_ckpts[i]' if multi else 'model.teacher_ckpt'
    if teacher['checkpoint_loaded']:
        if not teacher.get('checkpoint_missing'):
            return []
        example = teacher['checkpoint_missing_keys'][0]
        return [(None, f'{ckpt_key} lacks {teacher["checkpoint_missing"]} '
                 f'of the teacher\'s tensors (e.g. {example}), or holds them '
                 'with other shapes: they were left as initialised (MMRazor '
                 'loads teacher checkpoints non-strictly); check that '
                 f'{ckpt_key} belongs to '
                 f'{"model.teachers[i]" if multi else "model.teacher"}.')]
    offline = [
        r['key'] for r in report.get('random_weights') or []
        if (r.get('module') or '').startswith(('teacher', 'other_teachers'))
    ]
    offline_note = (f' --offline left out {", ".join(offline)}: the '
                    'teacher\'s weights are random, so its records and the '
                    'losses describe an untrained teacher.' if offline else '')
    unset = teacher.get('checkpoint_unset') or []
    if multi and unset:
        message = (f'No checkpoint was loaded for {len(unset)} of the '
                   f'teachers ({", ".join(unset)} not set, nor --checkpoint):'
                   ' they have random or only ImageNet-initialised weights '
                   f'and have nothing to teach; set {", ".join(unset)}.')
    else:
        message = (f'No teacher checkpoint was loaded ({ckpt_key} is not '
                   'set, nor model.teacher.pretrained, nor --checkpoint): '
                   'the teacher has random or only ImageNet-initialised '
                   f'weights and has nothing to teach; set {ckpt_key}.')
    return [(None, message + offline_note)]


def rule_teacher_bn_updating(
        report: Dict[str, Any],
        model: Optional[nn.Module] = None) -> List[Finding]:
    """A frozen teacher whose BatchNorm running statistics change."""
    teacher = report['teacher']
    changed = teacher['bn_changed']
    if not changed or teacher['trainable']:
        return []
    return [(None, 'The frozen teacher\'s BatchNorm running statistics '
             f'change in training ({len(changed)} layers, e.g. '
             f'{changed[0]}): its records drift from the trained teacher\'s;'
             ' set model.teacher_norm_eval=True, or '
             f'{_eval_hint(report)}.')]


def rule_teacher_dropout_active(
        report: Dict[str, Any],
        model: Optional[nn.Module] = None) -> List[Finding]:
    """A frozen teacher whose dropout runs in training mode before its
    recorded tensors."""
    teacher = report['teacher']
    layers = teacher['active_dropout']
    if not layers or teacher['trainable']:
        return []
    return [(None, f'The teacher\'s dropout '
             f'{", ".join(layers[:DROPOUT_NAMED])} '
             f'{"is" if len(layers) == 1 else "are"} active before its '
             'recorded tensors (the teacher runs in training mode with '
             'frozen BatchNorm, as in MMRazor), so the "vanilla" teacher is '
             'perturbed at every step (e.g. PSPNet\'s Dropout2d before '
             f'conv_seg); set {_eval_hint(report)}.')]


#: Every warning kind and its rule, in the order the report lists them.
RULES: Tuple[Tuple[str, Rule], ...] = (
    ('not_summed', rule_not_summed),
    ('nonfinite', rule_nonfinite),
    ('zero_loss', rule_zero_loss),
    ('constant_loss', rule_constant_loss),
    ('no_gradient', rule_no_gradient),
    ('dominant_loss', rule_dominant_loss),
    ('negligible_loss', rule_negligible_loss),
    ('scale_mismatch', rule_scale_mismatch),
    ('teacher_no_checkpoint', rule_teacher_no_checkpoint),
    ('teacher_bn_updating', rule_teacher_bn_updating),
    ('teacher_dropout_active', rule_teacher_dropout_active),
)
#: Every warning kind, in the order the report lists them.
WARNING_KINDS = tuple(kind for kind, _ in RULES)


def diagnose(report: Dict[str, Any],
             model: Optional[nn.Module] = None) -> List[Dict[str, Any]]:
    """The warnings a report calls for, each naming the loss (or None) and
    the config key to change.

    Args:
        report (dict): What :func:`analyze_distill` measured.
        model (nn.Module, optional): The algorithm, for the loss modules.

    Returns:
        list[dict]: ``loss``, ``kind`` (one of :data:`WARNING_KINDS`) and
        ``message``, in the order of :data:`WARNING_KINDS` (the losses'
        first, the teacher's last), each kind's in the order of the losses.
    """
    return [
        dict(loss=loss, kind=kind, message=message) for kind, rule in RULES
        for loss, message in rule(report, model)
    ]
