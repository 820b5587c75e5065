# Copyright (c) mmakd contributors. All rights reserved.
"""Single-teacher distillation that takes models from anywhere."""
import os.path as osp
from typing import Any, Dict, Optional, Union

from mmengine.model import BaseModel
from mmengine.runner import load_checkpoint
from mmrazor.models import SingleTeacherDistill
from torch import nn

from mmakd.registry import MODELS
from ..utils.model_spec import build_model_from_spec
from ..utils.preprocessor import check_preprocessors_match

__all__ = ['FlexibleTeacherDistill']

ModelSpec = Union[BaseModel, Dict[str, Any]]


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
      strictly by default.

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
                 data_preprocessor: Optional[Union[Dict, nn.Module]] = None,
                 **kwargs: Any) -> None:
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
