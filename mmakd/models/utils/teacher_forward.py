# Copyright (c) mmakd contributors. All rights reserved.
"""How far a model runs for its recorders, and the checks of what such a
(truncated) forward records.

:class:`~mmakd.models.FlexibleTeacherDistill` runs its teacher only as far
as the teacher recorders need (``teacher_forward``): :func:`shortest_forward`
picks that forward and :func:`run_forward` runs it. The build-time dry run
(:func:`check_record_shapes`) and the first-iteration check
(:func:`check_teacher_records`) catch what a truncated forward or a loss
mapping gets wrong.
"""
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from mmrazor.models.task_modules.recorder import (ModuleInputsRecorder,
                                                  ModuleOutputsRecorder)
from torch import nn

from .validation import compare_record_shapes

__all__ = [
    'TEACHER_FORWARDS', 'FEAT_PARTS', 'shortest_forward', 'run_forward',
    'resolve_teacher_forward', 'TeacherRecordError', 'check_record_shapes',
    'record_shape_problems', 'check_teacher_records'
]

TEACHER_FORWARDS = ('auto', 'feat', 'tensor', 'loss')
#: Parts of a model that ``extract_feat`` runs.
FEAT_PARTS = ('backbone', 'neck')


def _tensor_mode_parts(model: nn.Module) -> Tuple[str, ...]:
    """Submodules whose forward in ``mode='tensor'`` is the one ``mode='loss'``
    runs (same inputs, same outputs); empty if not known to be so."""
    families = []
    try:
        from mmseg.models.segmentors import EncoderDecoder
        families.append((EncoderDecoder, ('backbone', 'neck', 'decode_head')))
    except ImportError:  # pragma: no cover - optional package
        pass
    try:
        from mmdet.models.detectors import SingleStageDetector
        families.append(
            (SingleStageDetector, ('backbone', 'neck', 'bbox_head')))
    except ImportError:  # pragma: no cover
        pass
    try:
        from mmpretrain.models.classifiers import ImageClassifier
        families.append((ImageClassifier, ('backbone', 'neck', 'head')))
    except ImportError:  # pragma: no cover
        pass
    for cls, parts in families:
        if isinstance(model, cls):
            return parts
    return ()


def _within(source: str, parts: Tuple[str, ...]) -> bool:
    return any(source == p or source.startswith(p + '.') for p in parts)


def _recorder_sources(manager: Any) -> Optional[List[str]]:
    """Module paths of all recorders of a ``RecorderManager``, or None if
    any recorder is not a module hook."""
    if manager is None:
        return None
    sources = []
    for recorder in manager.recorders.values():
        if not isinstance(recorder,
                          (ModuleOutputsRecorder, ModuleInputsRecorder)):
            return None
        sources.append(recorder.source)
    return sources


def shortest_forward(model: nn.Module, manager: Any) -> str:
    """``'feat'``, ``'tensor'`` or ``'loss'``: the shortest forward of
    ``model`` that runs every module its recorders hook exactly as the
    training (loss-mode) forward does."""
    sources = _recorder_sources(manager)
    if not sources:
        return 'loss'
    if hasattr(model, 'extract_feat') and all(
            _within(s, FEAT_PARTS) for s in sources):
        return 'feat'
    parts = _tensor_mode_parts(model)
    if parts and all(_within(s, parts) for s in sources):
        return 'tensor'
    return 'loss'


class TeacherRecordError(ValueError):
    """Teachers' records that cannot be combined (e.g. different shapes);
    the build-time dry run lets it through instead of skipping its check."""


def resolve_teacher_forward(requested: str, teacher: nn.Module,
                            distiller: nn.Module,
                            teacher_trainable: bool) -> str:
    """The forward ``'feat'``, ``'tensor'`` or ``'loss'`` that
    ``model.teacher_forward=requested`` means for ``teacher`` (``'auto'``:
    :func:`shortest_forward` of its recorders, ``'loss'`` with deliveries or
    a trainable teacher)."""
    if teacher_trainable:
        if requested not in ('auto', 'loss'):
            raise ValueError(
                f'model.teacher_forward={requested!r} cannot train the '
                'teacher (teacher_trainable=True needs its losses); use '
                "'loss' or 'auto'.")
        return 'loss'
    if requested != 'auto':
        return requested
    deliveries = getattr(distiller, 'deliveries', None)
    if deliveries is not None and getattr(deliveries, 'deliveries', None):
        return 'loss'
    return shortest_forward(teacher,
                            getattr(distiller, 'teacher_recorders', None))


def run_forward(model: nn.Module, mode: str, inputs: torch.Tensor,
                data_samples: Optional[List[BaseDataElement]]) -> Any:
    """Run ``model`` on preprocessed ``inputs`` as far as ``mode`` says:
    ``'feat'`` (``extract_feat``), ``'tensor'`` or ``'loss'``."""
    if mode == 'feat':
        return model.extract_feat(inputs)
    return model(inputs, data_samples, mode=mode)


def check_record_shapes(
        algorithm: nn.Module, teacher_forward: str,
        record_teachers: Callable[[torch.Tensor], None]) -> None:
    """Dry run on a random 2x3x64x64 batch; see ``check_shapes`` of
    :class:`~mmakd.models.FlexibleTeacherDistill`.

    Args:
        algorithm (nn.Module): The distillation algorithm (its ``student``
            and ``distiller``); in evaluation mode for the dry run, then
            back in its mode.
        teacher_forward (str): How far the teacher runs.
        record_teachers (Callable): Runs the teacher(s) on a batch into the
            distiller's teacher recorders.

    Raises:
        ValueError: A loss would compare tensors of different shapes.
        TeacherRecordError: The teachers' records cannot be combined.
    """
    distiller = algorithm.distiller
    mappings = getattr(distiller, 'loss_forward_mappings', None)
    if not mappings:
        return
    modes = dict(
        student=shortest_forward(algorithm.student,
                                 getattr(distiller, 'student_recorders',
                                         None)),
        teacher=teacher_forward)
    reachable = {side for side, mode in modes.items() if mode != 'loss'}
    if not reachable:
        return
    was_training = algorithm.training
    algorithm.eval()
    inputs = torch.rand(
        2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 255
    inputs = (inputs - 128) / 64
    try:
        with torch.no_grad():
            if 'student' in reachable:
                with distiller.student_recorders:
                    run_forward(algorithm.student, modes['student'], inputs,
                                None)
            if 'teacher' in reachable:
                record_teachers(inputs)
            problems = record_shape_problems(distiller, mappings, reachable)
    except TeacherRecordError:
        raise
    except Exception as err:  # noqa: B902 - any model may refuse
        print_log(
            'model.check_shapes: skipped, the models cannot run on a '
            f'2x3x64x64 batch ({type(err).__name__}: {err})',
            logger='current',
            level=30)
        return
    finally:
        algorithm.train(was_training)
    if problems:
        raise ValueError(' '.join(problems) +
                         ' (model.check_shapes=False skips this check.)')


def record_shape_problems(distiller: nn.Module, mappings: Dict[str, Dict],
                          reachable: set) -> List[str]:
    """The shape problems of the distiller's loss mappings that compare one
    student and one teacher record, both ``reachable`` (recorded)."""
    problems = []
    for loss_name, mapping in mappings.items():
        sides = {True: [], False: []}
        for arg, record in mapping.items():
            if isinstance(record, dict) and 'from_student' in record:
                sides[record['from_student']].append((arg, record))
        if len(sides[True]) != 1 or len(sides[False]) != 1 or \
                {'student', 'teacher'} - reachable:
            continue
        (s_arg, s_rec), (t_arg, t_rec) = sides[True][0], sides[False][0]
        problem = compare_record_shapes(
            loss_name,
            type(distiller.distill_losses[loss_name]).__name__,
            (s_arg, distiller.get_record(**s_rec), s_rec.get('connector')),
            (t_arg, distiller.get_record(**t_rec), t_rec.get('connector')))
        if problem:
            problems.append(problem)
    return problems


def check_teacher_records(manager: Any, teacher_forward: str) -> None:
    """After the first truncated forward, every recorder of ``manager``
    (the teacher recorders) must hold data."""
    for name, recorder in manager.recorders.items():
        if not recorder.data_buffer:
            raise RuntimeError(
                f'teacher recorder {name!r} (source '
                f'{getattr(recorder, "source", "?")!r}) recorded nothing '
                f"with model.teacher_forward='{teacher_forward}'; "
                "set model.teacher_forward='loss' to run the teacher's "
                'full training forward.')
