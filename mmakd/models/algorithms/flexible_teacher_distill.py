# Copyright (c) mmakd contributors. All rights reserved.
"""Single-teacher distillation that takes models from anywhere and runs
the teacher only as far as its recorders need."""
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from mmrazor.models import SingleTeacherDistill
from mmrazor.models.utils import add_prefix
from torch import nn

from mmakd.registry import MODELS
from ..avatars.base_teacher_avatars import BaseTeacherAvatars
from ..avatars.teacher_avatars import record_teacher_avatars
from ..distillers.avatar_settings import KEY as AVATARS_KEY
from ..utils.fuse import fuse_frozen_conv_bn
from ..utils.model_spec import build_model_from_spec
from ..utils.preprocessor import check_preprocessors_match
from ..utils.teacher_forward import (TEACHER_FORWARDS, check_record_shapes,
                                     check_teacher_records,
                                     resolve_teacher_forward, run_forward)
from ..utils.validation import (check_checkpoint_exists,
                                check_recorder_sources,
                                load_teacher_checkpoint)

__all__ = ['FlexibleTeacherDistill']

ModelSpec = Union[BaseModel, Dict[str, Any]]


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
    * Avatars that run the teacher (``AvatarDistiller`` with
      ``TeacherViews`` or ``TeacherDropout``): the frozen teacher runs on
      each group of Avatars (views of the batch, or copies of it with
      dropout inside), its records are split per Avatar and mapped back
      (:func:`~mmakd.models.avatars.record_teacher_avatars`); they need a
      truncated teacher forward and a frozen teacher (checked at build).

    Note:
        By default, like MMRazor, the teacher stays in training mode with
        frozen BatchNorm statistics (``teacher_norm_eval``), so its dropout
        layers are active as in ``SingleTeacherDistill`` (e.g. PSPNet's
        ``Dropout2d(0.1)`` before ``conv_seg`` perturbs every recorded
        logit). The distillation losses equal ``SingleTeacherDistill``'s
        when the teacher draws no random numbers (no active dropout, or
        ``teacher_eval=True``); with dropout on, the truncated forward
        draws them in another order than MMRazor's full one, so the two
        differ even from the same random state. ``teacher_eval=True`` runs
        the whole teacher in evaluation mode (the reference MGKD code's
        ``t_model.eval()``).

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
        check_shapes (bool): At build time, run student and teacher on a
            small random batch (64x64, evaluation mode, no gradient) and
            fail if a loss would compare a student and a teacher tensor of
            different shapes that no connector aligns. Skipped with a
            warning if the models cannot run on that batch, and for
            recorders only the loss-mode forward reaches. Defaults to True.
        fuse_teacher_conv_bn (bool): Fold the frozen teacher's BatchNorm
            layers into the convolutions before them (see
            :func:`mmakd.models.utils.fuse_frozen_conv_bn`), for a faster
            teacher forward. Needs ``teacher_trainable=False`` and
            ``teacher_norm_eval=True``; pairs a teacher recorder hooks are
            left alone. The teacher's outputs equal the unfolded ones up to
            float rounding, but its ``state_dict`` (in this algorithm's
            checkpoints) has folded convolutions and no BatchNorm entries,
            so resume with the same setting. ``teacher_ckpt`` is the plain
            teacher checkpoint either way. Defaults to False (exactly
            MMRazor's teacher).
        teacher_eval (bool): Run the whole (frozen) teacher in evaluation
            mode: BatchNorm with its running statistics and dropout off, so
            its records are deterministic. Defaults to False (MMRazor's
            training mode with frozen BatchNorm statistics).
        nonfinite (str): What to do when a distillation loss is NaN or Inf:
            ``'raise'`` (a ``FloatingPointError`` naming the losses) or
            ``'skip'`` (log a warning and leave the distillation losses out
            of this iteration; the student's own losses still train).
            Defaults to ``'raise'``. The finiteness of the losses and of the
            AKD teacher inputs is checked with one device-to-host
            synchronisation per iteration.
        data_preprocessor (dict | nn.Module, optional): The preprocessor
            that runs; None uses the student's. Defaults to None.
        **kwargs: Other arguments of ``SingleTeacherDistill``
            (``teacher_trainable``, ``teacher_norm_eval``,
            ``calculate_student_loss``...).
    """

    #: Config keys of the teacher and its checkpoint, for messages.
    _teacher_key = 'model.teacher'
    _teacher_ckpt_key = 'model.teacher_ckpt'

    def __init__(self,
                 architecture: ModelSpec,
                 teacher: ModelSpec,
                 distiller: Dict[str, Any],
                 teacher_ckpt: Optional[str] = None,
                 teacher_ckpt_strict: bool = True,
                 check_preprocessors: bool = True,
                 teacher_forward: str = 'auto',
                 check_shapes: bool = True,
                 fuse_teacher_conv_bn: bool = False,
                 teacher_eval: bool = False,
                 nonfinite: str = 'raise',
                 data_preprocessor: Optional[Union[Dict, nn.Module]] = None,
                 **kwargs: Any) -> None:
        if teacher_forward not in TEACHER_FORWARDS:
            raise ValueError(f'model.teacher_forward must be one of '
                             f'{TEACHER_FORWARDS}, got {teacher_forward!r}')
        if nonfinite not in ('raise', 'skip'):
            raise ValueError("model.nonfinite must be 'raise' or 'skip', got "
                             f'{nonfinite!r}')
        check_checkpoint_exists(teacher_ckpt, self._teacher_ckpt_key)
        student_model = build_model_from_spec(architecture,
                                              'model.architecture')
        teacher_model = build_model_from_spec(teacher, self._teacher_key)
        if isinstance(distiller, dict):
            check_recorder_sources(
                distiller.get('student_recorders'), student_model,
                'model.distiller.student_recorders')
            check_recorder_sources(
                distiller.get('teacher_recorders'), teacher_model,
                'model.distiller.teacher_recorders')
        super().__init__(
            architecture=student_model,
            teacher=teacher_model,
            distiller=distiller,
            teacher_ckpt=None,
            data_preprocessor=data_preprocessor,
            **kwargs)
        self.check_preprocessors = check_preprocessors
        self._runs_own_preprocessor = data_preprocessor is not None
        if check_preprocessors and data_preprocessor is not None:
            check_preprocessors_match(
                ('model.data_preprocessor', self.data_preprocessor),
                [('model.architecture.data_preprocessor',
                  self.student.data_preprocessor)])
        self.teacher_ckpt = teacher_ckpt
        self._prepare_teacher(self.teacher, self._teacher_key, teacher_ckpt,
                              self._teacher_ckpt_key, teacher_ckpt_strict)
        self.nonfinite = nonfinite
        if not isinstance(teacher_eval, bool):
            raise TypeError('model.teacher_eval must be True or False, got '
                            f'{teacher_eval!r}')
        if teacher_eval and self.teacher_trainable:
            raise ValueError(
                'model.teacher_eval=True runs the teacher in evaluation mode, '
                'which cannot train it; set model.teacher_trainable=False.')
        self.teacher_eval = teacher_eval
        if teacher_eval:
            self.teacher.eval()
        if hasattr(self.distiller, 'defer_finite_check'):
            # read the AKD teacher checks with ours, in one synchronisation
            self.distiller.defer_finite_check = True
        self.teacher_forward = resolve_teacher_forward(teacher_forward,
                                                       self.teacher,
                                                       self.distiller,
                                                       self.teacher_trainable)
        self.fused_teacher_convs: List[str] = []
        self.fuse_teacher_conv_bn = fuse_teacher_conv_bn
        if fuse_teacher_conv_bn:
            self.fused_teacher_convs = self._fuse_teacher()
        self._attach_avatar_source()
        self._records_checked = False
        if check_shapes:
            self._check_record_shapes()

    def _prepare_teacher(self, teacher: nn.Module, key: str,
                         ckpt: Optional[str], ckpt_key: str,
                         strict: bool) -> None:
        """Check a teacher's preprocessing against the one that runs, and
        load its checkpoint (``key`` and ``ckpt_key`` name them)."""
        if self.check_preprocessors:
            runs = 'model.data_preprocessor' if self._runs_own_preprocessor \
                else 'model.architecture.data_preprocessor'
            check_preprocessors_match(
                (runs, self.data_preprocessor),
                [(f'{key}.data_preprocessor', teacher.data_preprocessor)])
        if ckpt:
            load_teacher_checkpoint(teacher, ckpt, strict, ckpt_key)
            # Keep the runner's init_weights() from overwriting the teacher.
            teacher._is_init = True

    def _fuse_teacher(self,
                      teacher: Optional[nn.Module] = None,
                      name: str = 'the teacher') -> List[str]:
        """Fold a frozen teacher's BatchNorms (``self.teacher`` by
        default); see ``fuse_teacher_conv_bn``.

        Returns:
            list[str]: The folded convolutions.
        """
        if self.teacher_trainable or not self.teacher_norm_eval:
            raise ValueError(
                'model.fuse_teacher_conv_bn=True needs a frozen teacher with '
                'frozen BatchNorm statistics (model.teacher_trainable=False, '
                'model.teacher_norm_eval=True).')
        manager = getattr(self.distiller, 'teacher_recorders', None)
        keep = [
            getattr(r, 'source', '')
            for r in (manager.recorders.values() if manager else [])
        ]
        fused = fuse_frozen_conv_bn(
            self.teacher if teacher is None else teacher, keep)
        print_log(
            f'model.fuse_teacher_conv_bn: folded {len(fused)} BatchNorm '
            f'layers of {name} into their convolutions',
            logger='current')
        return fused

    def _avatar_source(self) -> Optional[BaseTeacherAvatars]:
        """The distiller's Avatars if they run the teacher, else None."""
        source = getattr(self.distiller, 'perturbation', None)
        return source if getattr(source, 'runs_teacher', False) else None

    def _attach_avatar_source(self, forwards: Sequence[str] = ()) -> None:
        """Check that Avatars which run the teacher can, and prepare every
        teacher for them (``forwards``: other teachers' forwards)."""
        source = self._avatar_source()
        if source is None:
            return
        key = f'{AVATARS_KEY}.perturbation'
        name = type(source).__name__
        if self.teacher_trainable:
            raise ValueError(
                f'{key}: {name} runs the frozen teacher several times; '
                'model.teacher_trainable=True cannot train it that way.')
        if 'loss' in (self.teacher_forward, *forwards):
            raise ValueError(
                f"{key}: {name} runs the teacher on batches of its own, "
                'without data samples, which needs a truncated teacher '
                "forward ('feat' or 'tensor'); model.teacher_forward is "
                "'loss' here (a recorder outside the backbone, neck and "
                'heads, or deliveries): record from modules those forwards '
                'run.')
        teachers = getattr(self, 'teachers', None) or [self.teacher]
        source.attach(teachers, key)

    def _check_record_shapes(self) -> None:
        """Dry run on a random 2x3x64x64 batch; see ``check_shapes``."""
        check_record_shapes(self, self.teacher_forward,
                            lambda x: self._record_teachers(x, None))

    def _record_teachers(
            self, batch_inputs: torch.Tensor,
            data_samples: Optional[List[BaseDataElement]]) -> None:
        """Run the frozen teacher as far as ``teacher_forward`` says, into
        the distiller's teacher recorders (call under ``no_grad``)."""
        with self.distiller.teacher_recorders, self.distiller.deliveries:
            run_forward(self.teacher, self.teacher_forward, batch_inputs,
                        data_samples)

    def _run_teacher(
        self, batch_inputs: torch.Tensor,
        data_samples: Optional[List[BaseDataElement]]
    ) -> Dict[str, torch.Tensor]:
        """Run the teacher as far as ``teacher_forward`` says; return its
        losses if it is trainable."""
        if self.teacher_trainable:
            with self.distiller.teacher_recorders, self.distiller.deliveries:
                return self.teacher(batch_inputs, data_samples, mode='loss')
        source = self._avatar_source()
        with torch.no_grad():
            if source is None:
                self._record_teachers(batch_inputs, data_samples)
            else:
                generator = self.distiller.avatar_seeds.generator(
                    batch_inputs.device)
                self.distiller.teacher_avatars = record_teacher_avatars(
                    source, lambda x: self._record_teachers(x, None),
                    batch_inputs, self.distiller.teacher_recorders, generator)
        if not self._records_checked and self.teacher_forward != 'loss':
            check_teacher_records(self.distiller.teacher_recorders,
                                  self.teacher_forward)
            self._records_checked = True
        return {}

    def train(self, mode: bool = True) -> 'FlexibleTeacherDistill':
        """MMRazor's modes, and the whole teacher in evaluation mode with
        ``teacher_eval``."""
        super().train(mode)
        if getattr(self, 'teacher_eval', False):
            self.teacher.eval()
        return self

    def _distill_losses(self) -> Dict[str, torch.Tensor]:
        """The distiller's losses, with the ``nonfinite`` policy; one
        device-to-host synchronisation for every finiteness check."""
        try:
            losses = self.distiller.compute_distill_losses()
            keys = [k for k in losses if 'loss' in k]
            flags = [torch.isfinite(losses[k].detach()).all() for k in keys]
            pending = getattr(self.distiller, 'pending_finite_flags', None)
            teacher_flags = pending() if pending else []
            if flags or teacher_flags:
                finite = torch.stack(flags + teacher_flags)
                if not bool(finite.all()):
                    if teacher_flags:  # name the teacher input first
                        self.distiller.check_teacher_finite()
                    bad = [k for k, ok in zip(keys, finite.tolist()) if not ok]
                    raise FloatingPointError(
                        f'distillation losses {bad} are NaN or Inf')
        except FloatingPointError as err:
            iteration = MessageHub.get_current_instance().get_info('iter')
            if self.nonfinite == 'raise':
                raise FloatingPointError(
                    f'{err} (iteration {iteration}); set model.nonfinite='
                    "'skip' to skip such iterations' distillation with a "
                    'warning.') from err
            print_log(
                f'{err} (iteration {iteration}): distillation skipped for '
                "this iteration (model.nonfinite='skip').",
                logger='current',
                level=30)
            return {}
        return losses

    def loss(
        self,
        batch_inputs: torch.Tensor,
        data_samples: Optional[List[BaseDataElement]] = None
    ) -> Dict[str, torch.Tensor]:
        """Distillation losses; the teacher runs as ``teacher_forward``
        says, the student exactly as in ``SingleTeacherDistill``."""
        losses = dict()
        self.distiller.set_deliveries_override(False)
        teacher_losses = self._run_teacher(batch_inputs, data_samples)
        losses.update(add_prefix(teacher_losses, 'teacher'))
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
            losses.update(add_prefix(self._distill_losses(), 'distill'))
        return losses
