# Copyright (c) mmakd contributors. All rights reserved.
"""What ``--resume`` continues from after a kill, and the hooks
tools/train.py puts in every config."""
import re

import pytest
import torch
from mmengine.config import Config

from mmakd.utils.checkpoint import UnreadableCheckpointError
from mmakd.utils.resume import (resume_checkpoint, use_atomic_checkpoints,
                                use_random_state_hook)


def _checkpoint(path, step: int, whole: bool = True) -> str:
    torch.save(dict(meta=dict(iter=step), state_dict={}), path)
    if not whole:  # cut as a kill during its write would
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
    return str(path)


def _cfg(work, load_from=None) -> Config:
    return Config(dict(work_dir=str(work), resume=True, load_from=load_from))


def test_resume_off_or_explicit(tmp_path):
    assert resume_checkpoint(_cfg(tmp_path / 'none')) == (None, [])
    cfg = _cfg(tmp_path)
    cfg.resume = False
    assert resume_checkpoint(cfg) == (None, [])
    # --resume CKPT: as given (its reader names it in any error)
    assert resume_checkpoint(_cfg(tmp_path, load_from='x.pth')) == \
        ('x.pth', [])
    # a first run: nothing in the work directory
    assert resume_checkpoint(_cfg(tmp_path)) == (None, [])


def test_last_checkpoint_when_it_loads(tmp_path):
    first = _checkpoint(tmp_path / 'iter_4.pth', 4)
    _checkpoint(tmp_path / 'iter_6.pth', 6)  # newer, but not named
    (tmp_path / 'last_checkpoint').write_text(first)
    assert resume_checkpoint(_cfg(tmp_path)) == (first, [])
    # a remote out_dir: MMEngine's file backend reads it
    remote = 's3://bucket/work/iter_8.pth'
    (tmp_path / 'last_checkpoint').write_text(remote)
    assert resume_checkpoint(_cfg(tmp_path)) == (remote, [])


def test_the_newest_that_loads_when_last_checkpoint_does_not(tmp_path):
    _checkpoint(tmp_path / 'iter_9.pth', 9)
    ten = _checkpoint(tmp_path / 'iter_10.pth', 10)  # newer than 9
    cut = _checkpoint(tmp_path / 'iter_12.pth', 12, whole=False)
    gone = str(tmp_path / 'iter_14.pth')
    (tmp_path / 'last_checkpoint').write_text(gone)
    path, notes = resume_checkpoint(_cfg(tmp_path))
    assert path == ten
    (note, ) = notes
    assert f'{gone} (named by last_checkpoint) does not exist' in note
    assert re.search(
        re.escape(cut) + r' does not load \(RuntimeError: .*central '
        r'directory\)', note), note
    assert note.endswith(f'resuming from {ten}, the newest checkpoint '
                         'there that loads.')


@pytest.mark.parametrize('last', ['', None])
def test_empty_or_missing_last_checkpoint(tmp_path, last):
    six = _checkpoint(tmp_path / 'epoch_6.pth', 6)
    if last is not None:
        (tmp_path / 'last_checkpoint').write_text(last)
    path, (note, ) = resume_checkpoint(_cfg(tmp_path))
    assert path == six
    assert ('last_checkpoint is empty'
            if last == '' else 'has no last_checkpoint') in note


def test_nothing_that_loads_is_an_error_naming_each_file(tmp_path):
    cut = _checkpoint(tmp_path / 'iter_2.pth', 2, whole=False)
    gone = str(tmp_path / 'iter_4.pth')
    (tmp_path / 'last_checkpoint').write_text(gone)
    with pytest.raises(UnreadableCheckpointError) as info:
        resume_checkpoint(_cfg(tmp_path))
    message = str(info.value)
    assert message.startswith(f'--resume: no checkpoint in {tmp_path} '
                              f'loads: {gone} (named by last_checkpoint) '
                              f'does not exist; {cut} does not load')
    assert 'pass --resume PATH' in message
    assert 'train into another --work-dir' in message


def test_tools_train_writes_checkpoints_atomically():
    cfg = Config(
        dict(
            default_hooks=dict(
                checkpoint=dict(
                    type='CheckpointHook', interval=1, _scope_='mmpretrain'))))
    note = use_atomic_checkpoints(cfg)
    assert cfg.default_hooks.checkpoint == dict(
        type='mmrazor.AtomicCheckpointHook', interval=1, _scope_='mmpretrain')
    assert 'mmrazor.AtomicCheckpointHook in place of CheckpointHook' in note
    assert use_atomic_checkpoints(cfg) is None  # already
    other = Config(dict(default_hooks=dict(checkpoint=dict(type='MyHook'))))
    assert use_atomic_checkpoints(other) is None
    assert other.default_hooks.checkpoint.type == 'MyHook'
    assert use_atomic_checkpoints(Config(dict())) is None

    from mmengine.registry import HOOKS

    from mmakd.engine.hooks import AtomicCheckpointHook
    built = HOOKS.build(cfg.default_hooks.checkpoint)
    assert type(built) is AtomicCheckpointHook and built.interval == 1


def test_tools_train_adds_the_random_state_hook_once():
    cfg = Config(dict(custom_hooks=[dict(type='EMAHook')]))
    assert 'RandomStateHook added' in use_random_state_hook(cfg)
    assert cfg.custom_hooks == [
        dict(type='EMAHook'),
        dict(type='mmrazor.RandomStateHook')
    ]
    assert use_random_state_hook(cfg) is None
    assert len(cfg.custom_hooks) == 2
    plain = Config(dict(custom_hooks=[dict(type='RandomStateHook')]))
    assert use_random_state_hook(plain) is None
    empty = Config(dict())
    use_random_state_hook(empty)
    assert empty.custom_hooks == [dict(type='mmrazor.RandomStateHook')]
