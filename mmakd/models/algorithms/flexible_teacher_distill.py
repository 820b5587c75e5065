# Copyright (c) mmakd contributors. All rights reserved.
"""Single-teacher distillation that takes models from anywhere and runs
the teacher only as far as its recorders need."""
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from mmengine.model import BaseModel
from mmengine.runner import load_checkpoint
from mmengine.structures import BaseDataElement
from mmrazor.models import SingleTeacherDistill
from mmrazor.models.task_modules.recorder import (ModuleInputsRecorder,
                                                  ModuleOutputsRecorder)
from mmrazor.models.utils import add_prefix
from torch import nn

from mmakd.registry import MODELS
from ..utils.model_spec import build_model_from_spec
from ..utils.preprocessor import check_preprocessors_match

__all__ = ['FlexibleTeacherDistill']

ModelSpec = Union[BaseModel, Dict[str, Any]]


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
        families.append((SingleStageDetector, ('backbone', 'neck',
                                               'bbox_head')))
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


def _is_remote(path: str) -> bool:
    return '://' in path


@MODELS.register_module()
class FlexibleTeacherDistill(SingleTeacherDistill):
    """MMRazor's ``SingleTeacherDistill`` with models from anywhere.

    It trains exactly like ``SingleTeacherDistill`` (same losses, same
    recorders, same distiller) and adds what its users keep asking for:

    * ``architecture`` (the student) and ``teacher`` may be a package config
      (``dict(cfg_path='mmdet::...')``), a local config file
      (``dict(cfg_path='path/to/config.py')``), an inline model dict or a
      built model; ``cfg_options`` overrides fields of a referenced config
      (see :func:`mmakd.models.utils.build_model_from_spec`);
    * at build time, the teacher's own data preprocessor must normalise
      (mean, std) and order channels like the one the algorithm runs, or
      the build fails with a message naming both config keys;
    * the teacher checkpoint is checked before any model is built and loads
      strictly by default;
    * the teacher runs only as far as its recorders need
      (``teacher_forward``). MMRazor's ``SingleTeacherDistill`` computes
      the teacher's full training loss (every head, auxiliary heads, label
      assignment) under ``no_grad`` only to record tensors; its
      ``FpnTeacherDistill`` runs backbone and neck but only suits recorders
      there. ``'auto'`` picks the shortest forward that provably records the
      same tensors:

      - ``'feat'`` (``teacher.extract_feat``) when every teacher recorder
        hooks a module inside ``backbone`` or ``neck``;
      - ``'tensor'`` (``teacher(..., mode='tensor')``: heads without losses
        or label assignment) when they hook modules that the tensor-mode
        forward runs exactly as the loss-mode one does (MMSegmentation's
        ``EncoderDecoder`` backbone/neck/decode_head, MMDetection's
        ``SingleStageDetector`` backbone/neck/bbox_head, MMPretrain's
        ``ImageClassifier``);
      - ``'loss'`` (MMRazor's behaviour) otherwise: method or function
        recorders, auxiliary heads, two-stage detectors' RoI heads,
        deliveries, or a trainable teacher.

      If a truncated forward leaves a recorder empty, the first iteration
      fails with a message naming it.

    Note:
        Like MMRazor, the teacher stays in training mode with frozen
        BatchNorm statistics (``teacher_norm_eval``), so its dropout layers
        are active exactly as in ``SingleTeacherDistill``; with the same
        random state the distillation losses are identical.

    Args:
        architecture (dict | BaseModel): The student (config key
            ``model.architecture``).
        teacher (dict | BaseModel): The teacher (``model.teacher``).
        distiller (dict): The distiller, e.g. ``ConfigurableDistiller`` or
            mmakd's ``AvatarDistiller``.
        teacher_ckpt (str, optional): Teacher checkpoint path or URL.
            Defaults to None.
        teacher_ckpt_strict (bool): Whether every teacher parameter must be
            in the checkpoint and nothing else. Defaults to True.
        check_preprocessors (bool): Whether to enforce matching
            preprocessing. Defaults to True.
        teacher_forward (str): ``'auto'``, ``'feat'``, ``'tensor'`` or
            ``'loss'`` (see above). Defaults to ``'auto'``.
        data_preprocessor (dict | nn.Module, optional): The preprocessor
            that runs; None uses the student's. Defaults to None.
        **kwargs: Other arguments of ``SingleTeacherDistill``
            (``teacher_trainable``, ``teacher_norm_eval``,
            ``calculate_student_loss``...).
    """

    def __init__(self,
                 architecture: ModelSpec,
                 teacher: ModelSpec,
                 distiller: Dict[str, Any],
                 teacher_ckpt: Optional[str] = None,
                 teacher_ckpt_strict: bool = True,
                 check_preprocessors: bool = True,
                 teacher_forward: str = 'auto',
                 data_preprocessor: Optional[Union[Dict, nn.Module]] = None,
                 **kwargs: Any) -> None:
        if teacher_forward not in TEACHER_FORWARDS:
            raise ValueError(f'model.teacher_forward must be one of '
                             f'{TEACHER_FORWARDS}, got {teacher_forward!r}')
        if teacher_ckpt and not _is_remote(teacher_ckpt) \
                and not osp.isfile(teacher_ckpt):
            raise FileNotFoundError(
                f'model.teacher_ckpt={teacher_ckpt!r} does not exist '
                f'(looked for {osp.abspath(teacher_ckpt)}).')
        student_model = build_model_from_spec(architecture,
                                              'model.architecture')
        teacher_model = build_model_from_spec(teacher, 'model.teacher')
        super().__init__(
            architecture=student_model,
            teacher=teacher_model,
            distiller=distiller,
            teacher_ckpt=None,
            data_preprocessor=data_preprocessor,
            **kwargs)
        if check_preprocessors:
            runs = 'model.architecture.data_preprocessor' \
                if data_preprocessor is None else 'model.data_preprocessor'
            others = [('model.teacher.data_preprocessor',
                       self.teacher.data_preprocessor)]
            if data_preprocessor is not None:
                others.append(('model.architecture.data_preprocessor',
                               self.student.data_preprocessor))
            check_preprocessors_match((runs, self.data_preprocessor), others)
        self.teacher_ckpt = teacher_ckpt
        if teacher_ckpt:
            load_checkpoint(
                self.teacher,
                teacher_ckpt,
                map_location='cpu',
                strict=teacher_ckpt_strict)
            # Keep the runner's init_weights() from overwriting the teacher.
            self.teacher._is_init = True
        self.teacher_forward = self._resolve_teacher_forward(teacher_forward)
        self._records_checked = False

    # ------------------------------------------------------------------
    # how far the teacher runs
    # ------------------------------------------------------------------
    def _teacher_recorder_sources(self) -> Optional[List[str]]:
        """Module paths of all teacher recorders, or None if any recorder
        is not a module hook (or the distiller has no recorder manager)."""
        manager = getattr(self.distiller, 'teacher_recorders', None)
        if manager is None:
            return None
        sources = []
        for recorder in manager.recorders.values():
            if not isinstance(recorder,
                              (ModuleOutputsRecorder, ModuleInputsRecorder)):
                return None
            sources.append(recorder.source)
        return sources

    def _resolve_teacher_forward(self, requested: str) -> str:
        if self.teacher_trainable:
            if requested not in ('auto', 'loss'):
                raise ValueError(
                    f'model.teacher_forward={requested!r} cannot train the '
                    'teacher (teacher_trainable=True needs its losses); use '
                    "'loss' or 'auto'.")
            return 'loss'
        if requested != 'auto':
            return requested
        deliveries = getattr(self.distiller, 'deliveries', None)
        if deliveries is not None and getattr(deliveries, 'deliveries', None):
            return 'loss'
        sources = self._teacher_recorder_sources()
        if not sources:
            return 'loss'
        if hasattr(self.teacher, 'extract_feat') and all(
                _within(s, FEAT_PARTS) for s in sources):
            return 'feat'
        parts = _tensor_mode_parts(self.teacher)
        if parts and all(_within(s, parts) for s in sources):
            return 'tensor'
        return 'loss'

    def _check_teacher_records(self) -> None:
        """After the first truncated forward, every recorder must hold data."""
        for name, recorder in self.distiller.teacher_recorders.recorders.items(
        ):
            if not recorder.data_buffer:
                raise RuntimeError(
                    f'teacher recorder {name!r} (source '
                    f'{getattr(recorder, "source", "?")!r}) recorded nothing '
                    f"with model.teacher_forward='{self.teacher_forward}'; "
                    "set model.teacher_forward='loss' to run the teacher's "
                    'full training forward.')
        self._records_checked = True

    def _run_teacher(self, batch_inputs: torch.Tensor,
                     data_samples: Optional[List[BaseDataElement]]) -> None:
        with self.distiller.teacher_recorders, self.distiller.deliveries:
            with torch.no_grad():
                if self.teacher_forward == 'feat':
                    self.teacher.extract_feat(batch_inputs)
                else:
                    self.teacher(batch_inputs, data_samples, mode='tensor')
        if not self._records_checked:
            self._check_teacher_records()

    def loss(self,
             batch_inputs: torch.Tensor,
             data_samples: Optional[List[BaseDataElement]] = None
             ) -> Dict[str, torch.Tensor]:
        """Distillation losses; the teacher runs as ``teacher_forward``
        says, the student exactly as in ``SingleTeacherDistill``."""
        if self.teacher_forward == 'loss':
            return super().loss(batch_inputs, data_samples)
        losses = dict()
        self.distiller.set_deliveries_override(False)
        self._run_teacher(batch_inputs, data_samples)
        self.distiller.set_deliveries_override(True)
        with self.distiller.student_recorders, self.distiller.deliveries:
            if self.calculate_student_loss:
                student_losses = self.student(
                    batch_inputs, data_samples, mode='loss')
                losses.update(add_prefix(student_losses, 'student'))
            elif self.student_trainable:
                self.student(batch_inputs, data_samples, mode='loss')
            else:
                with torch.no_grad():
                    self.student(batch_inputs, data_samples, mode='loss')
        if not self.distillation_stopped:
            losses.update(
                add_prefix(self.distiller.compute_distill_losses(),
                           'distill'))
        return losses
