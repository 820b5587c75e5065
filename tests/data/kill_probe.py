# Copyright (c) mmakd contributors. All rights reserved.
"""Test-only hook: stop a training run at a chosen point so that the test
can kill it there with SIGKILL.

The point comes from the environment, ``MMAKD_KILL_AT=WHERE:N`` (unset: the
hook does nothing), ``N`` counting training iterations from 1:

- ``train:N``: inside training iteration ``N``, in the student's forward
  (after the data preprocessor, before the losses and the update);
- ``val:N``: inside the validation that follows iteration ``N``, after its
  first batch;
- ``save:N``: inside the write of the checkpoint of iteration ``N``: half
  of its bytes are on disk (flushed) when the run stops.

At the point the hook writes ``MMAKD_KILL_MARKER`` (a path) and sleeps; the
test waits for that file and kills the process. The slow write is the
test's, not the product's: the hook wraps MMEngine's local file backend
while the checkpoint it stops in is written.
"""
import os
import time

from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmakd.registry import HOOKS


def _stop_here(what: str) -> None:
    marker = os.environ['MMAKD_KILL_MARKER']
    with open(marker + '.tmp', 'w') as f:
        f.write(f'{os.getpid()} {what}\n')
    os.replace(marker + '.tmp', marker)
    time.sleep(600)  # the test kills the process long before
    raise RuntimeError(f'kill_probe: nobody killed the run at {what}')


@HOOKS.register_module()
class KillProbeHook(Hook):
    """Stop at ``MMAKD_KILL_AT`` (see the module's docstring)."""

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        at = os.environ.get('MMAKD_KILL_AT')
        self.where, self.n = (None, 0)
        if at:
            where, n = at.split(':')
            assert where in ('train', 'val', 'save'), at
            self.where, self.n = where, int(n)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.where != 'train' or runner.iter + 1 != self.n:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        student = getattr(model, 'architecture', model)

        def stop(module, args):
            _stop_here(f'train iteration {self.n}')

        student.register_forward_pre_hook(stop)

    def after_val_iter(self,
                       runner,
                       batch_idx,
                       data_batch=None,
                       outputs=None) -> None:
        if self.where == 'val' and runner.iter == self.n and batch_idx == 0:
            _stop_here(f'validation after iteration {self.n}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.where != 'save' or checkpoint['meta']['iter'] != self.n:
            return
        original = LocalBackend.put

        def half_then_stop(backend, obj, filepath):
            LocalBackend.put = original
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
                f.flush()
                os.fsync(f.fileno())
            _stop_here(f'checkpoint write of iteration {self.n} '
                       f'({os.path.basename(str(filepath))})')

        LocalBackend.put = half_then_stop
