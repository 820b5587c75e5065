# Copyright (c) mmakd contributors. All rights reserved.
"""Resume a run with the random state it was interrupted in."""
import random
from typing import Any, Dict, Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.runner import IterBasedTrainLoop

from mmakd.registry import HOOKS

__all__ = ['RandomStateHook']

KEY = 'random_states'


def capture_random_states() -> Dict[str, Any]:
    """PyTorch (CPU and CUDA), NumPy and Python generator states."""
    states: Dict[str, Any] = dict(
        torch=torch.get_rng_state(),
        numpy=np.random.get_state(),
        python=random.getstate())
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: Dict[str, Any], torch_only: bool) -> None:
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])
    if not torch_only:
        np.random.set_state(states['numpy'])
        random.setstate(states['python'])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random states in every checkpoint and restore them on resume.

    MMEngine re-seeds a resumed run from the config's seed, so everything
    drawn from PyTorch's global generator after the checkpoint (dropout
    masks, random initialisation of new tensors...) differs from the run that
    was not interrupted. With this hook the resumed run continues with the
    states of the checkpoint:

    - iteration-based loops: MMEngine fast-forwards the dataloader over the
      trained batches, which replays the data pipeline's NumPy and Python
      draws; the hook then restores PyTorch's states before the first
      resumed iteration;
    - epoch-based loops: the hook restores all states (PyTorch, CUDA, NumPy,
      Python) before the first resumed epoch loads any data;
    - validation leaves the states as it found them: the checkpoint of an
      iteration is written before the validation that follows it, which
      draws from PyTorch's generator (each DataLoader iterator takes a
      seed), so a run resumed from it continues as the run that validated.
      How often a run validates then does not change its training either.

    mmakd's Avatars do not need it (they are drawn from a generator seeded
    by the seed, the iteration and the rank), but the models' own dropout
    does. Enable it in a config with::

        custom_hooks = [dict(type='mmrazor.RandomStateHook')]

    Note:
        Checkpoints are written by rank 0: every rank resumes with rank 0's
        states (MMEngine seeds all ranks alike unless ``diff_rank_seed``).
        Augmentations that draw from PyTorch's generator in the main process
        are not replayed exactly.
    """

    priority = 'VERY_HIGH'

    def __init__(self) -> None:
        self._pending: Optional[Dict[str, Any]] = None
        self._before_val: Optional[Dict[str, Any]] = None

    def before_val(self, runner) -> None:
        self._before_val = capture_random_states()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            restore_random_states(self._before_val, torch_only=False)
            self._before_val = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[KEY] = capture_random_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get(KEY)

    def before_train_epoch(self, runner) -> None:
        if self._pending is not None and not isinstance(
                runner.train_loop, IterBasedTrainLoop):
            restore_random_states(self._pending, torch_only=False)
            self._pending = None

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: Optional[dict] = None) -> None:
        if self._pending is not None:
            restore_random_states(self._pending, torch_only=True)
            self._pending = None
