# Copyright (c) mmakd contributors. All rights reserved.
"""Checkpoints that a kill at any moment leaves loadable."""
import contextlib
import glob
import os
import os.path as osp
import shutil
from typing import Iterator, List

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook

from mmakd.registry import HOOKS

__all__ = ['AtomicCheckpointHook', 'publish', 'write_text_atomically']

#: Suffix of a checkpoint while it is written.
PART = '.part'


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(part: str, final: str) -> None:
    """Give the complete file ``part`` its name ``final`` in one step:
    flushed to disk, renamed (atomic on POSIX and Windows), the folder
    flushed, so that ``final`` is the old file or the new one, never a
    piece of either, whenever the process or the machine stops."""
    _fsync(part)
    os.replace(part, final)
    if os.name == 'posix':
        _fsync(osp.dirname(osp.abspath(final)))


def write_text_atomically(path: str, text: str) -> None:
    """Replace the text file ``path`` in one step (see :func:`publish`).

    Each process writes its own ``path.<pid>.part``, so that processes
    writing the same file at once (every rank of a launch) do not write
    into one another's piece."""
    part = f'{path}.{os.getpid()}{PART}'
    with open(part, 'w', encoding='utf-8') as f:
        f.write(text)
    publish(part, path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook`` whose files survive a kill (SIGKILL,
    preemption, a machine that stops) at any moment; same arguments.

    On a cluster a job is killed whenever its scheduler says so, which may
    be while a checkpoint is written. MMEngine's hook writes the file in
    place, and with ``max_keep_ckpts`` deletes the oldest checkpoint first:
    a kill during the write leaves a truncated file under the checkpoint's
    name and ``last_checkpoint`` naming the deleted one, so ``--resume``
    finds nothing to resume from. With this hook, for a local ``out_dir``:

    - a checkpoint (the regular and the best ones) is written to
      ``NAME.part``, flushed and renamed to ``NAME``: a file named like a
      checkpoint is always complete;
    - ``last_checkpoint`` is replaced the same way, after the checkpoint;
    - the checkpoints ``max_keep_ckpts`` drops are deleted after both;
    - before training, ``*.part`` files left by a killed write are deleted.

    Other storage backends keep MMEngine's behaviour. ``tools/train.py``
    uses this hook in place of ``CheckpointHook``.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._atomic = isinstance(self.file_backend, LocalBackend)
        if not (self._atomic and is_main_process()):
            return
        for path in sorted(glob.glob(osp.join(self.out_dir, '*' + PART))):
            os.remove(path)
            runner.logger.info(f'Removed {path}, a checkpoint whose write '
                               'was interrupted.')

    @contextlib.contextmanager
    def _written_atomically(self, runner) -> Iterator[None]:
        """``runner.save_checkpoint`` writes ``NAME.part`` and publishes it
        as ``NAME`` while the block runs."""
        save = runner.save_checkpoint
        patched = 'save_checkpoint' in vars(runner)

        def save_then_publish(out_dir, filename, *args, **kwargs):
            save(out_dir, filename + PART, *args, **kwargs)
            if is_main_process():
                publish(
                    osp.join(out_dir, filename + PART),
                    osp.join(out_dir, filename))

        runner.save_checkpoint = save_then_publish
        try:
            yield
        finally:
            if patched:
                runner.save_checkpoint = save
            else:
                del runner.save_checkpoint  # the Runner's method again

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not getattr(self, '_atomic', False):
            return super()._save_best_checkpoint(runner, metrics)
        with self._written_atomically(runner):
            super()._save_best_checkpoint(runner, metrics)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        if not getattr(self, '_atomic', False):
            return super()._save_checkpoint_with_step(runner, step, meta)
        # MMEngine's bookkeeping (the ids are saved in the checkpoint), but
        # the dropped checkpoints are deleted only once the new one is safe
        dropped: List[int] = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                dropped.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        with self._written_atomically(runner):
            runner.save_checkpoint(
                self.out_dir,
                filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
        if not is_main_process():
            return
        write_text_atomically(
            osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old in dropped:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path):
                os.remove(path)
            elif osp.isdir(path):  # checkpoints saved by DeepSpeed
                shutil.rmtree(path)
