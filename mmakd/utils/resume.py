# Copyright (c) mmakd contributors. All rights reserved.
"""Where ``--resume`` continues from after a run was killed, and the
checkpoint hook that a kill cannot break."""
import glob
import os.path as osp
import re
from typing import List, Optional, Tuple

from mmengine.config import Config

from .checkpoint import UnreadableCheckpointError, read_checkpoint

__all__ = [
    'resume_checkpoint', 'use_atomic_checkpoints', 'use_random_state_hook'
]

#: The names MMEngine's checkpoint hook gives its checkpoints.
NUMBERED = re.compile(r'^(?:iter|epoch)_(\d+)\.pth$')
#: ``default_hooks.checkpoint.type`` values that are MMEngine's hook.
STOCK_HOOK = ('CheckpointHook', 'mmengine.CheckpointHook')
ATOMIC_HOOK = 'mmrazor.AtomicCheckpointHook'
RANDOM_STATE_HOOK = 'mmrazor.RandomStateHook'


def _numbered(folder: str) -> List[str]:
    """``iter_N.pth`` / ``epoch_N.pth`` in ``folder``, newest (largest N)
    first."""
    found = []
    for path in glob.glob(osp.join(folder, '*.pth')):
        match = NUMBERED.match(osp.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


def _why_not(path: str) -> Optional[str]:
    """None when ``path`` loads as a checkpoint, else why not."""
    if not osp.isfile(path):
        return 'does not exist'
    try:
        read_checkpoint(path, mmap=True)
    except UnreadableCheckpointError as err:
        return f'does not load ({err.reason})'
    return None


def _last_checkpoint(work_dir: str) -> Optional[str]:
    """What ``work_dir/last_checkpoint`` names; None without one, '' when
    it is empty (a write that was interrupted)."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip()


def resume_checkpoint(cfg: Config) -> Tuple[Optional[str], List[str]]:
    """The checkpoint a run with ``cfg`` resumes from, checked, and notes
    on what it skipped.

    - ``resume`` off: nothing.
    - ``load_from`` set (``--resume CKPT``): that file, as given (reading
      it later names it in any error).
    - Otherwise (``--resume`` alone): the checkpoint ``last_checkpoint`` in
      ``work_dir`` names, if it loads (or is a URL); if it does not
      (missing, truncated, ``last_checkpoint`` empty or absent), the newest
      ``iter_N.pth`` / ``epoch_N.pth`` in its folder or ``work_dir`` that
      loads, with one note naming each file skipped and why. Nothing when
      ``work_dir`` holds neither (a first run starts from the beginning).

    Args:
        cfg (Config): The config, ``work_dir`` set.

    Returns:
        tuple[str | None, list[str]]: The checkpoint and the notes (log
        them as warnings).

    Raises:
        UnreadableCheckpointError: ``work_dir`` holds checkpoints and none
            loads; the message names each and what to do.
    """
    if not cfg.get('resume', False):
        return None, []
    if cfg.get('load_from', None):
        return cfg.load_from, []
    work_dir = cfg.get('work_dir', None)
    if not work_dir or not osp.isdir(work_dir):
        return None, []
    last = _last_checkpoint(work_dir)
    if last and '://' in last:
        return last, []  # a remote out_dir is MMEngine's to read
    why_last = _why_not(last) if last else None
    if last and why_last is None:
        return last, []

    folders = [work_dir]
    if last and osp.isdir(osp.dirname(last)) and osp.abspath(
            osp.dirname(last)) != osp.abspath(work_dir):
        folders.insert(0, osp.dirname(last))  # the hook's out_dir
    candidates = [p for folder in folders for p in _numbered(folder)]
    if last:
        skipped = [f'{last} (named by last_checkpoint) {why_last}']
    elif last == '':
        skipped = [f'{osp.join(work_dir, "last_checkpoint")} is empty']
    else:
        skipped = [f'{work_dir} has no last_checkpoint']
    for path in candidates:
        if path == last:
            continue
        why = _why_not(path)
        if why is None:
            return path, [
                f'--resume: {"; ".join(skipped)}: resuming from {path}, '
                'the newest checkpoint there that loads.'
            ]
        skipped.append(f'{path} {why}')
    if not candidates and not last:
        return None, []  # nothing to resume from: the first run
    raise UnreadableCheckpointError(
        f'--resume: no checkpoint in {work_dir} loads: {"; ".join(skipped)}. '
        'To continue from a copy that loads, pass --resume PATH; to start '
        'from the beginning, move these files and last_checkpoint out of '
        f'{work_dir} or train into another --work-dir.')


def use_atomic_checkpoints(cfg: Config) -> Optional[str]:
    """Write checkpoints with ``AtomicCheckpointHook``: in place of
    MMEngine's ``CheckpointHook`` in ``default_hooks.checkpoint`` (same
    arguments); other hook types are left as they are.

    Args:
        cfg (Config): The config, changed in place.

    Returns:
        str | None: A log line when the hook was replaced.
    """
    hook = cfg.get('default_hooks', {}).get('checkpoint', None)
    if not isinstance(hook, dict) or hook.get('type') not in STOCK_HOOK:
        return None
    hook['type'] = ATOMIC_HOOK
    return (f'default_hooks.checkpoint: {ATOMIC_HOOK} in place of '
            'CheckpointHook (same arguments): checkpoints are written under '
            'a temporary name and renamed, so that a run killed at any '
            'moment resumes with --resume.')


def use_random_state_hook(cfg: Config) -> Optional[str]:
    """Add ``RandomStateHook`` to ``custom_hooks`` unless it is there: a
    resumed run then draws what the uninterrupted run would have drawn
    (dropout, the data pipeline of epoch-based loops), and validation
    leaves the draws of training unchanged.

    Args:
        cfg (Config): The config, changed in place.

    Returns:
        str | None: A log line when the hook was added.
    """
    hooks = list(cfg.get('custom_hooks', None) or [])
    for hook in hooks:
        kind = hook.get('type') if isinstance(hook, dict) else None
        name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        if name.split('.')[-1] == 'RandomStateHook':
            return None
    cfg.custom_hooks = hooks + [dict(type=RANDOM_STATE_HOOK)]
    return (f'custom_hooks: {RANDOM_STATE_HOOK} added, so that --resume '
            'continues with the random state the run was stopped in.')
