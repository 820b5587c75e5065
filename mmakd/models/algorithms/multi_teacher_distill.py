# Copyright (c) mmakd contributors. All rights reserved.
"""Distillation from a real ensemble of frozen teachers: the ceiling that
AKD's Avatars of one teacher are measured against."""
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.structures import BaseDataElement
from mmrazor.models.task_modules.recorder import RecorderManager
from torch import nn

from mmakd.registry import MODELS
from ..utils.model_spec import build_model_from_spec
from ..utils.teacher_forward import (TeacherRecordError, run_forward,
                                     shortest_forward)
from ..utils.validation import check_checkpoint_exists, check_recorder_sources
from .flexible_teacher_distill import FlexibleTeacherDistill, ModelSpec

__all__ = ['MultiTeacherDistill']

COMBINES = ('mean', )


def _copy_manager(manager: RecorderManager) -> RecorderManager:
    """A recorder manager with the same recorders (same types and sources)
    as ``manager``, not yet attached to any model."""
    copy = RecorderManager()
    for name, recorder in manager.recorders.items():
        copy.recorders[name] = type(recorder)(recorder.source)
    return copy


def _mean(values: Sequence[Any], where: str, keys: Sequence[str]) -> Any:
    """The element-wise mean of one record from every teacher.

    Records are tensors or (nested) tuples, lists and dicts of tensors. The
    sum runs in teacher order and is divided once, so copies of one tensor
    average to it exactly for two teachers.
    """
    first = values[0]
    if isinstance(first, torch.Tensor):
        for key, value in zip(keys[1:], values[1:]):
            if not isinstance(value, torch.Tensor) or \
                    value.shape != first.shape:
                got = tuple(value.shape) if isinstance(
                    value, torch.Tensor) else type(value).__name__
                raise TeacherRecordError(
                    f'{where}: {keys[0]} recorded shape {tuple(first.shape)} '
                    f'but {key} recorded {got}; the teachers of '
                    'MultiTeacherDistill must record tensors of one shape '
                    'to be averaged.')
        if not first.is_floating_point():
            raise TeacherRecordError(
                f'{where}: {keys[0]} recorded a {first.dtype} tensor, which '
                "model.combine='mean' cannot average.")
        total = first.clone()
        for value in values[1:]:
            total.add_(value)
        return total.div_(len(values))
    if isinstance(first, (tuple, list)):
        for key, value in zip(keys[1:], values[1:]):
            if not isinstance(value, (tuple, list)) or \
                    len(value) != len(first):
                raise TeacherRecordError(
                    f'{where}: {keys[0]} recorded {len(first)} items but '
                    f'{key} recorded '
                    f'{len(value) if isinstance(value, (tuple, list)) else 1}'
                    '.')
        items = [
            _mean([v[i] for v in values], f'{where}[{i}]', keys)
            for i in range(len(first))
        ]
        return type(first)(items) if isinstance(first, list) else tuple(items)
    if isinstance(first, dict):
        return {
            k: _mean([v[k] for v in values], f'{where}[{k!r}]', keys)
            for k in first
        }
    raise TeacherRecordError(
        f'{where}: {keys[0]} recorded a {type(first).__name__}, which '
        "model.combine='mean' cannot average (tensors, or tuples, lists "
        'and dicts of tensors).')


@MODELS.register_module()
class MultiTeacherDistill(FlexibleTeacherDistill):
    """Distillation from several frozen teachers, whose records are averaged.

    AKD (Zhang et al., "Avatar Knowledge Distillation: Self-ensemble
    Teacher Paradigm with Uncertainty", ACM MM 2023) motivates Avatars as a
    cheap stand-in for an ensemble of teachers. This algorithm trains from
    the real ensemble, so that the two can be compared: every teacher runs
    once per iteration (frozen, no gradient, as far as its recorders need,
    like :class:`FlexibleTeacherDistill`), each into its own copy of the
    distiller's teacher recorders, and every teacher record the distiller
    reads is the element-wise mean of the teachers' records
    (``combine='mean'``). The distiller is unchanged: with
    ``ConfigurableDistiller`` the losses compare the student with the mean
    teacher; with ``AvatarDistiller`` the Avatars are drawn from the mean
    teacher.

    Everything else is :class:`FlexibleTeacherDistill`'s, applied to every
    teacher: model specs from anywhere, checkpoint checks before any model
    is built and strict loading, preprocessing checks, ``teacher_forward``,
    ``teacher_eval``, ``fuse_teacher_conv_bn``, the build-time shape check
    and the non-finite policy. ``self.teacher`` is the first teacher;
    ``self.teachers`` lists them all.

    Args:
        architecture (dict | BaseModel): The student
            (``model.architecture``).
        teachers (list[dict | BaseModel]): The teachers
            (``model.teachers``), each in any form ``FlexibleTeacherDistill``
            accepts for ``teacher``. Their records must have equal shapes.
        distiller (dict): The distiller, e.g. ``ConfigurableDistiller`` or
            ``AvatarDistiller``. Distill deliveries are not supported.
        teacher_ckpts (list[str | None], optional): One checkpoint path, URL
            or None per teacher (``model.teacher_ckpts``). Defaults to None
            (no checkpoint for any teacher).
        combine (str): How teacher records are combined; ``'mean'`` is the
            only choice. Defaults to ``'mean'``.
        teacher (None): Must be None: this algorithm takes ``teachers``.
            (A config that inherits ``teacher`` from a single-teacher base
            sets it to None.)
        teacher_ckpt (None): Must be None, as ``teacher``.
        teacher_ckpt_strict (bool): Strict loading of every checkpoint.
            Defaults to True.
        teacher_forward (str): As in ``FlexibleTeacherDistill``, resolved
            for each teacher. Defaults to ``'auto'``.
        check_shapes (bool): As in ``FlexibleTeacherDistill``; the dry run
            also compares the teachers' record shapes. Defaults to True.
        fuse_teacher_conv_bn (bool): Fold every teacher's BatchNorms
            (``fused_teacher_convs`` lists those of the first). Defaults to
            False.
        **kwargs: Other arguments of ``FlexibleTeacherDistill``
            (``check_preprocessors``, ``teacher_eval``, ``nonfinite``,
            ``teacher_norm_eval``, ``data_preprocessor``...).
            ``teacher_trainable`` must stay False.
    """

    _teacher_key = 'model.teachers[0]'
    _teacher_ckpt_key = 'model.teacher_ckpts[0]'

    def __init__(self,
                 architecture: ModelSpec,
                 teachers: Sequence[ModelSpec],
                 distiller: Dict[str, Any],
                 teacher_ckpts: Optional[Sequence[Optional[str]]] = None,
                 combine: str = 'mean',
                 teacher: None = None,
                 teacher_ckpt: None = None,
                 teacher_ckpt_strict: bool = True,
                 teacher_forward: str = 'auto',
                 check_shapes: bool = True,
                 fuse_teacher_conv_bn: bool = False,
                 **kwargs: Any) -> None:
        if teacher is not None or teacher_ckpt is not None:
            raise ValueError(
                'MultiTeacherDistill takes model.teachers (a list) and '
                'model.teacher_ckpts; set model.teacher and '
                'model.teacher_ckpt to None (e.g. when inheriting from a '
                'single-teacher config).')
        if not isinstance(teachers, (list, tuple)) or not teachers:
            raise ValueError('model.teachers must be a non-empty list of '
                             f'teacher specs, got {teachers!r}')
        if teacher_ckpts is None:
            teacher_ckpts = [None] * len(teachers)
        if not isinstance(teacher_ckpts, (list, tuple)) or \
                len(teacher_ckpts) != len(teachers):
            raise ValueError(
                'model.teacher_ckpts must be a list with one checkpoint (or '
                f'None) per teacher: {len(teachers)} teachers in '
                f'model.teachers, got {teacher_ckpts!r}')
        if combine not in COMBINES:
            raise ValueError(f'model.combine must be one of {COMBINES}, got '
                             f'{combine!r}')
        if kwargs.get('teacher_trainable', False):
            raise ValueError(
                'model.teacher_trainable=True: MultiTeacherDistill trains '
                'from frozen teachers only.')
        if isinstance(distiller, dict) and distiller.get('distill_deliveries'):
            raise ValueError(
                'model.distiller.distill_deliveries: MultiTeacherDistill '
                'cannot deliver one teacher output from several teachers.')
        # every checkpoint is checked before any model is built
        for i, path in enumerate(teacher_ckpts):
            check_checkpoint_exists(path, f'model.teacher_ckpts[{i}]')
        super().__init__(
            architecture=architecture,
            teacher=teachers[0],
            distiller=distiller,
            teacher_ckpt=teacher_ckpts[0],
            teacher_ckpt_strict=teacher_ckpt_strict,
            teacher_forward=teacher_forward,
            check_shapes=False,
            fuse_teacher_conv_bn=fuse_teacher_conv_bn,
            **kwargs)
        self.combine = combine
        self.teacher_ckpts = list(teacher_ckpts)
        self.other_teachers = nn.ModuleList()
        self._other_recorders: List[RecorderManager] = []
        self._other_forwards: List[str] = []
        for i, spec in enumerate(teachers[1:], start=1):
            self._add_teacher(i, spec, teacher_ckpts[i], teacher_ckpt_strict,
                              teacher_forward, distiller)
        self.train(self.training)
        self._attach_avatar_source(self._other_forwards)
        if check_shapes:
            self._check_record_shapes()

    @property
    def teachers(self) -> List[nn.Module]:
        """Every teacher, the first (``self.teacher``) first."""
        return [self.teacher, *self.other_teachers]

    def _add_teacher(self, index: int, spec: ModelSpec, ckpt: Optional[str],
                     strict: bool, requested: str, distiller: Any) -> None:
        key = f'model.teachers[{index}]'
        teacher = build_model_from_spec(spec, key)
        for j, other in enumerate(self.teachers):
            if teacher is other:
                raise ValueError(
                    f'{key} is the same module object as '
                    f'model.teachers[{j}]; pass a copy (or a config) for '
                    'each teacher.')
        if isinstance(distiller, dict):
            check_recorder_sources(
                distiller.get('teacher_recorders'), teacher,
                f'model.distiller.teacher_recorders (for {key})')
        self.other_teachers.append(teacher)
        if not self.teacher_module_inplace:
            # MMRazor's helper evaluates this expression to reach the module
            self.set_module_inplace_false(teacher,
                                          f'self.other_teachers[{index - 1}]')
        for param in teacher.parameters():
            param.requires_grad = False
        self._prepare_teacher(teacher, key, ckpt,
                              f'model.teacher_ckpts[{index}]', strict)
        manager = _copy_manager(self.distiller.teacher_recorders)
        manager.initialize(teacher)
        forward = self.teacher_forward if requested != 'auto' else \
            shortest_forward(teacher, manager)
        if self.fuse_teacher_conv_bn:
            self._fuse_teacher(teacher, key)
        self._other_recorders.append(manager)
        self._other_forwards.append(forward)

    def _record_teachers(
            self, batch_inputs: torch.Tensor,
            data_samples: Optional[List[BaseDataElement]]) -> None:
        """Run every teacher once into its own recorders; leave the mean of
        their records in the distiller's teacher recorders."""
        super()._record_teachers(batch_inputs, data_samples)
        if not self.other_teachers:
            return
        for teacher, manager, forward in zip(self.other_teachers,
                                             self._other_recorders,
                                             self._other_forwards):
            with manager:
                run_forward(teacher, forward, batch_inputs, data_samples)
        keys = [f'model.teachers[{i}]' for i in range(len(self.teachers))]
        managers = [self.distiller.teacher_recorders] + self._other_recorders
        for name, recorder in self.distiller.teacher_recorders.recorders.items(
        ):
            buffers = [m.recorders[name].data_buffer for m in managers]
            where = f'teacher recorder {name!r}'
            for key, buffer in zip(keys[1:], buffers[1:]):
                if len(buffer) != len(buffers[0]):
                    raise TeacherRecordError(
                        f'{where}: {keys[0]} recorded {len(buffers[0])} '
                        f'records but {key} recorded {len(buffer)}.')
            recorder.data_buffer[:] = [
                _mean([b[j] for b in buffers], f'{where} record {j}', keys)
                for j in range(len(buffers[0]))
            ]
            for manager in self._other_recorders:
                manager.recorders[name].reset_data_buffer()

    def train(self, mode: bool = True) -> 'MultiTeacherDistill':
        """``FlexibleTeacherDistill``'s modes, for every teacher."""
        super().train(mode)
        for teacher in getattr(self, 'other_teachers', []):
            if getattr(self, 'teacher_eval', False):
                teacher.eval()
            elif mode and self.teacher_norm_eval:
                for m in teacher.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self
