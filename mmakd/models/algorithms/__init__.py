# Copyright (c) mmakd contributors. All rights reserved.
from .flexible_teacher_distill import FlexibleTeacherDistill

__all__ = ['FlexibleTeacherDistill']
from .mgkd_analyser_trainer import MGKDAnalyserTrainer  # noqa: E402

__all__ += ['MGKDAnalyserTrainer']
from .maskd_mask_learner import MasKDMaskLearner  # noqa: E402

__all__ += ['MasKDMaskLearner']
from .multi_teacher_distill import MultiTeacherDistill  # noqa: E402

__all__ += ['MultiTeacherDistill']
