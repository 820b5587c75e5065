# Copyright (c) mmakd contributors. All rights reserved.
"""Read checkpoints with errors that name the file, find the teachers a
whole distillation checkpoint provides, and turn a distillation checkpoint
into a plain checkpoint of the student."""
import errno
import os.path as osp
import pickle
from collections import OrderedDict
from typing import Any, Dict, List, Mapping

import torch
from mmengine.config import Config
from mmengine.runner.checkpoint import _load_checkpoint

__all__ = [
    'UnreadableCheckpointError', 'read_checkpoint',
    'use_teachers_from_checkpoint', 'student_state_dict',
    'convert_kd_checkpoint'
]

#: What to do about a checkpoint that cannot be read.
UNREADABLE_HINT = ('truncated or corrupted? re-download it, or pick an '
                   'earlier iter_*.pth / epoch_*.pth')
#: ``OSError`` numbers that say nothing about the file's content.
_NOT_DAMAGED = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR,
                errno.ENOMEM, errno.EMFILE)


class UnreadableCheckpointError(RuntimeError):
    """A checkpoint file that exists but is not a PyTorch checkpoint
    (truncated while it was written or copied, or another file).

    Attributes:
        reason (str): What PyTorch said, in short.
    """

    def __init__(self, message: str, reason: str = '') -> None:
        super().__init__(message)
        self.reason = reason


def _unreadable(key: str, path: str,
                err: BaseException) -> UnreadableCheckpointError:
    reason = _reason(err)
    return UnreadableCheckpointError(
        f'{key}={path!r} is not a readable PyTorch checkpoint '
        f'({UNREADABLE_HINT}): {reason}', reason)


def _reason(err: BaseException) -> str:
    """The gist of PyTorch's error, without its advice to turn
    ``weights_only`` off (which cannot help a damaged file)."""
    text = str(err)
    if 'WeightsUnpickler error:' in text:
        text = text.split('WeightsUnpickler error:', 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0].split('. ', 1)[0].rstrip('.') if lines else ''
    return type(err).__name__ + (f': {first}' if first else '')


def _is_zip(path: str) -> bool:
    with open(path, 'rb') as f:
        return f.read(4) == b'PK\x03\x04'


def read_checkpoint(path: str,
                    key: str = 'checkpoint',
                    mmap: bool = False) -> Dict[str, Any]:
    """Load a checkpoint on the CPU, naming ``key`` and the file when it
    cannot be read.

    Loading goes through MMEngine's loaders (paths, URLs, ``open-mmlab://``)
    and ``torch.load``'s ``weights_only`` default, which
    :mod:`mmakd.compat` keeps on.

    Args:
        path (str): Checkpoint path or URL.
        key (str): What the file is to the user, e.g. ``'checkpoint'``,
            ``'--resume'`` or a config key; messages start with
            ``{key}={path!r}``.
        mmap (bool): Memory-map a local checkpoint of PyTorch's zip format
            instead of reading its tensors (cheap when only the keys are
            needed). Defaults to False.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: A local ``path`` does not exist.
        UnreadableCheckpointError: The file is not a readable PyTorch
            checkpoint (truncated, corrupted, another kind of file).
        pickle.UnpicklingError: ``weights_only`` refused a pickle that
            would run code or build objects it does not allow (PyTorch's
            own error, unchanged).
    """
    local = '://' not in path
    if local and not osp.isfile(path):
        raise FileNotFoundError(f'{key}={path!r} does not exist (looked for '
                                f'{osp.abspath(path)}).')
    try:
        if mmap and local and _is_zip(path):
            return torch.load(path, map_location='cpu', mmap=True)
        return _load_checkpoint(path, map_location='cpu')
    except OSError as err:
        if not local or err.errno in _NOT_DAMAGED:
            raise  # unreachable, missing, no permission: not a damaged file
        raise _unreadable(key, path, err) from err  # e.g. EINVAL, cut zip
    except pickle.UnpicklingError as err:
        if 'global' in str(err).lower():
            raise  # weights_only refused what the pickle would build
        # without PyTorch's advice to turn weights_only off, which would
        # not help a damaged file and is unsafe for a file of unknown origin
        raise _unreadable(key, path, err) from None
    except Exception as err:  # noqa: B902 - zip, EOF, pickle errors
        raise _unreadable(key, path, err) from err


def _teacher_prefixes(model_cfg: Mapping) -> Dict[str, List[str]]:
    """``{config key: [state-dict prefix per checkpoint]}`` for the teacher
    checkpoints of a distillation algorithm's config: ``teacher.`` for
    ``teacher_ckpt`` (``SingleTeacherDistill`` and its subclasses), and for
    ``teacher_ckpts`` (``MultiTeacherDistill``) ``teacher.`` for the first
    teacher and ``other_teachers.{i - 1}.`` for teacher ``i``."""
    prefixes = {}
    if model_cfg.get('teacher_ckpt'):
        prefixes['teacher_ckpt'] = ['teacher.']
    ckpts = model_cfg.get('teacher_ckpts')
    if isinstance(ckpts, (list, tuple)) and any(ckpts):
        prefixes['teacher_ckpts'] = ['teacher.'] + [
            f'other_teachers.{i}.' for i in range(len(ckpts) - 1)
        ]
    return prefixes


def use_teachers_from_checkpoint(cfg: Config,
                                 checkpoint: str,
                                 key: str = 'checkpoint') -> List[str]:
    """Leave unread the teacher checkpoints (``model.teacher_ckpt``,
    ``model.teacher_ckpts[i]``) whose weights ``checkpoint`` holds.

    A whole distillation checkpoint (what ``tools/test.py``, ``--resume``
    and the Avatar visualiser load after the model is built) holds the
    teacher's weights under ``teacher.`` (``other_teachers.N.`` for the
    other teachers of ``MultiTeacherDistill``), so the teacher's own file
    is not needed and may be gone. Only a teacher whose prefix has entries
    in ``checkpoint`` is skipped; any other keeps its file (and its
    build-time check). ``checkpoint`` is read (memory-mapped when it can
    be) whatever the config, so an unreadable one fails here, before any
    model is built.

    Args:
        cfg (Config): The config; its ``model.teacher_ckpt`` /
            ``model.teacher_ckpts`` entries are set to None in place.
        checkpoint (str): The checkpoint the model loads whole.
        key (str): What ``checkpoint`` is to the user, for
            :func:`read_checkpoint`'s errors.

    Returns:
        list[str]: One log line per config key not read, naming
        ``checkpoint`` and the key's value; empty when nothing changed.

    Raises:
        FileNotFoundError, UnreadableCheckpointError: See
            :func:`read_checkpoint`.
    """
    loaded = read_checkpoint(checkpoint, key, mmap=True)
    model = cfg.get('model', None)
    prefixes = _teacher_prefixes(model) if isinstance(model, Mapping) else {}
    if not prefixes:
        return []
    state = loaded.get('state_dict', loaded) if isinstance(loaded,
                                                           dict) else {}
    keys = [
        k[len('module.'):] if k.startswith('module.') else k for k in state
    ]
    del loaded, state

    def held(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    notes = []
    if 'teacher_ckpt' in prefixes and held('teacher.'):
        notes.append(f'model.teacher_ckpt={model["teacher_ckpt"]!r} not read: '
                     f'the checkpoint {checkpoint} provides the teacher\'s '
                     'weights (its `teacher.` entries).')
        model['teacher_ckpt'] = None
    if 'teacher_ckpts' in prefixes:
        ckpts = list(model['teacher_ckpts'])
        own = prefixes['teacher_ckpts']
        skipped = [i for i, path in enumerate(ckpts) if path and held(own[i])]
        if skipped and len(skipped) == sum(bool(p) for p in ckpts):
            entries = ', '.join(f'`{own[i]}`' for i in skipped)
            notes.append(f'model.teacher_ckpts={ckpts!r} not read: the '
                         f"checkpoint {checkpoint} provides the teachers' "
                         f'weights (its {entries} entries).')
        else:
            for i in skipped:
                notes.append(
                    f'model.teacher_ckpts[{i}]={ckpts[i]!r} not read: the '
                    f'checkpoint {checkpoint} provides the teacher\'s '
                    f'weights (its `{own[i]}` '
                    'entries).')
        model['teacher_ckpts'] = [
            None if i in skipped else path for i, path in enumerate(ckpts)
        ]
    return notes


def student_state_dict(state_dict: Dict[str, torch.Tensor],
                       prefix: str = 'architecture.') -> 'OrderedDict':
    """The student's weights inside a distillation ``state_dict``.

    MMRazor's algorithms hold the student as ``architecture`` (the teacher
    as ``teacher``, losses and connectors as ``distiller``); only the
    student's keys are kept, without the prefix.

    Args:
        state_dict (dict): The algorithm's state dict.
        prefix (str): Prefix of the student's keys. Defaults to
            ``'architecture.'``.

    Returns:
        OrderedDict: The student's state dict.
    """
    student = OrderedDict((key[len(prefix):], value)
                          for key, value in state_dict.items()
                          if key.startswith(prefix))
    if not student:
        roots = sorted({k.split('.', 1)[0] for k in state_dict})
        raise KeyError(
            f'no key starts with {prefix!r}: this is not a distillation '
            f'checkpoint of an MMRazor/mmakd algorithm (top-level keys: '
            f'{roots}).')
    return student


def convert_kd_checkpoint(src: str,
                          dst: str,
                          prefix: str = 'architecture.') -> Dict[str, Any]:
    """Write the student of distillation checkpoint ``src`` to ``dst``.

    The output holds ``state_dict`` (the student's) and ``meta`` (the
    source's, e.g. ``dataset_meta``, plus where it came from); optimizer,
    scheduler and message-hub states are dropped.

    Args:
        src (str): Distillation checkpoint (path or URL).
        dst (str): Output path.
        prefix (str): Prefix of the student's keys.

    Returns:
        dict: ``num_tensors``, ``num_params`` and ``dropped`` (top-level
        prefixes left out, e.g. ``['distiller', 'teacher']``).

    Raises:
        FileNotFoundError, UnreadableCheckpointError: See
            :func:`read_checkpoint`.
    """
    checkpoint = read_checkpoint(src, 'checkpoint')
    if 'state_dict' not in checkpoint:
        raise KeyError(f'{src} has no state_dict')
    state = checkpoint['state_dict']
    student = student_state_dict(state, prefix)
    meta = dict(checkpoint.get('meta', {}))
    meta['converted_from'] = dict(checkpoint=str(src), prefix=prefix)
    torch.save(dict(meta=meta, state_dict=student), dst)
    dropped = sorted(
        {k.split('.', 1)[0]
         for k in state if not k.startswith(prefix)})
    return dict(
        num_tensors=len(student),
        num_params=int(sum(v.numel() for v in student.values())),
        dropped=dropped)
