# Copyright (c) mmakd contributors. All rights reserved.
"""The common base of the first stages that train modules on a frozen,
trained teacher (MasKD's mask learner, MGKD's analyser trainer)."""
from typing import Dict, Optional, Union

from mmrazor.models.algorithms.base import BaseAlgorithm
from torch import nn

from ..utils.model_spec import ModelSpec, build_model_from_spec
from ..utils.validation import check_checkpoint_exists, load_frozen_teacher

__all__ = ['FrozenTeacherAlgorithm']


class FrozenTeacherAlgorithm(BaseAlgorithm):
    """An algorithm whose ``architecture`` is a frozen teacher.

    The teacher checkpoint is checked before the teacher is built (config
    key ``model.teacher``), then loaded into it; the teacher gets no
    gradient and always stays in eval mode. Not registered: the first
    stages derive from it.

    Args:
        teacher (dict | BaseModel): The trained teacher (``model.teacher``).
        teacher_ckpt (str, optional): Teacher checkpoint path or URL
            (``model.teacher_ckpt``).
        teacher_ckpt_strict (bool): Strict loading.
        data_preprocessor (dict | nn.Module, optional): None: the teacher's
            own.
        init_cfg (dict, optional): Initialisation config.
        ckpt_hint (str): Appended to the message of a missing checkpoint.
            Defaults to ''.
    """

    def __init__(self,
                 teacher: ModelSpec,
                 teacher_ckpt: Optional[str],
                 teacher_ckpt_strict: bool,
                 data_preprocessor: Optional[Union[Dict, nn.Module]],
                 init_cfg: Optional[Dict],
                 ckpt_hint: str = '') -> None:
        check_checkpoint_exists(teacher_ckpt, hint=ckpt_hint)
        teacher_model = build_model_from_spec(teacher, 'model.teacher')
        super().__init__(
            architecture=teacher_model,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        load_frozen_teacher(self.teacher, teacher_ckpt, teacher_ckpt_strict)
        self.teacher_ckpt = teacher_ckpt

    @property
    def teacher(self) -> nn.Module:
        """Alias for ``architecture``: the frozen teacher."""
        return self.architecture

    def train(self, mode: bool = True) -> 'FrozenTeacherAlgorithm':
        """Set the mode; the teacher always stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self
