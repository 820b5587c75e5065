# Copyright (c) mmakd contributors. All rights reserved.
from .flexible_teacher_distill import FlexibleTeacherDistill

__all__ = ['FlexibleTeacherDistill']
