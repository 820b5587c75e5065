# Copyright (c) mmakd contributors. All rights reserved.
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .random_state_hook import RandomStateHook
from .student_checkpoint_hook import StudentCheckpointHook

__all__ = ['AtomicCheckpointHook', 'RandomStateHook', 'StudentCheckpointHook']
