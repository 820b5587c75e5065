# Copyright (c) mmakd contributors. All rights reserved.
from .multi_teacher_distill_val_loop import MultiTeacherDistillValLoop

__all__ = ['MultiTeacherDistillValLoop']
