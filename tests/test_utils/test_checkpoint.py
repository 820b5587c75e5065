# Copyright (c) mmakd contributors. All rights reserved.
"""mmakd.utils.checkpoint: unreadable checkpoints are named with what to
do; the teacher checkpoints a whole distillation checkpoint makes
unnecessary are left unread, and only those."""
import copy
import os
import pickle

import pytest
import torch
from mmengine.config import Config

from mmakd.utils.checkpoint import (UnreadableCheckpointError,
                                    convert_kd_checkpoint, read_checkpoint,
                                    use_teachers_from_checkpoint)


def _save(path, state):
    torch.save(dict(state_dict=state, meta=dict(iter=2)), str(path))
    return str(path)


def _damaged(tmp_path):
    good = _save(tmp_path / 'good.pth', {'a': torch.ones(256)})
    data = open(good, 'rb').read()
    truncated = tmp_path / 'iter_4.pth'
    truncated.write_bytes(data[:len(data) // 2])
    noise = tmp_path / 'noise.pth'
    noise.write_bytes(os.urandom(4096))
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    return dict(truncated=str(truncated), noise=str(noise), empty=str(empty))


@pytest.mark.parametrize('kind', ['truncated', 'noise', 'empty'])
@pytest.mark.parametrize('mmap', [False, True])
def test_unreadable_checkpoint_names_the_file_and_what_to_do(
        tmp_path, kind, mmap):
    path = _damaged(tmp_path)[kind]
    with pytest.raises(UnreadableCheckpointError) as info:
        read_checkpoint(path, 'CHECKPOINT', mmap=mmap)
    message = str(info.value)
    assert message.startswith(
        f'CHECKPOINT={path!r} is not a readable PyTorch checkpoint '
        '(truncated or corrupted? re-download it, or pick an earlier '
        'iter_*.pth / epoch_*.pth)')
    assert isinstance(info.value, RuntimeError)
    # not PyTorch's advice to turn weights_only off
    assert 'weights_only' not in message


def test_read_checkpoint_reads_and_maps(tmp_path):
    path = _save(tmp_path / 'c.pth', {'teacher.w': torch.arange(3.)})
    for mmap in (False, True):
        checkpoint = read_checkpoint(path, mmap=mmap)
        assert torch.equal(checkpoint['state_dict']['teacher.w'],
                           torch.arange(3.))
    legacy = str(tmp_path / 'legacy.pth')
    torch.save(
        dict(state_dict={'x': torch.ones(1)}),
        legacy,
        _use_new_zipfile_serialization=False)
    assert list(read_checkpoint(legacy, mmap=True)['state_dict']) == ['x']
    with pytest.raises(
            FileNotFoundError, match=r"^--resume='nope.pth' "
            'does not exist'):
        read_checkpoint('nope.pth', '--resume')


def test_a_refused_pickle_is_not_called_corrupted(tmp_path):
    """weights_only stays on: a pickle that would run code is refused with
    PyTorch's own error, not reported as a damaged file."""

    class Payload:

        def __reduce__(self):
            return (os.system, ('echo pwned', ))

    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, x=Payload()), path)
    with pytest.raises(pickle.UnpicklingError, match='GLOBAL') as info:
        read_checkpoint(path, 'CHECKPOINT')
    assert not isinstance(info.value, UnreadableCheckpointError)


def test_converter_names_an_unreadable_source(tmp_path):
    path = _damaged(tmp_path)['truncated']
    with pytest.raises(UnreadableCheckpointError, match='is not a readable'):
        convert_kd_checkpoint(path, str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()


def _single(teacher_ckpt='missing/teacher.pth'):
    return Config(
        dict(
            model=dict(
                type='FlexibleTeacherDistill', teacher_ckpt=teacher_ckpt)))


def test_teacher_weights_in_the_checkpoint_replace_teacher_ckpt(tmp_path):
    ckpt = _save(
        tmp_path / 'iter_2.pth', {
            'architecture.w': torch.ones(1),
            'teacher.backbone.w': torch.ones(1),
            'distiller.x': torch.ones(1)
        })
    cfg = _single()
    notes = use_teachers_from_checkpoint(cfg, ckpt)
    assert cfg.model.teacher_ckpt is None
    assert notes == [
        "model.teacher_ckpt='missing/teacher.pth' not read: the "
        f"checkpoint {ckpt} provides the teacher's weights (its "
        '`teacher.` entries).'
    ]


def test_a_checkpoint_without_teacher_weights_changes_nothing(tmp_path):
    ckpt = _save(tmp_path / 'student.pth', {'backbone.w': torch.ones(1)})
    cfg = _single()
    assert use_teachers_from_checkpoint(cfg, ckpt) == []
    assert cfg.model.teacher_ckpt == 'missing/teacher.pth'
    cfg = _single(teacher_ckpt=None)  # nothing to skip
    assert use_teachers_from_checkpoint(cfg, ckpt) == []
    # the checkpoint is read whatever the config
    damaged = _damaged(tmp_path)['truncated']
    with pytest.raises(UnreadableCheckpointError):
        use_teachers_from_checkpoint(
            Config(dict(model=dict(type='X'))), damaged)


def test_multi_teacher_checkpoints_are_skipped_per_teacher(tmp_path):
    cfg = Config(
        dict(
            model=dict(
                type='MultiTeacherDistill',
                teacher=None,
                teacher_ckpt=None,
                teacher_ckpts=['a.pth', 'b.pth', 'c.pth'])))
    both = _save(
        tmp_path / 'both.pth', {
            'teacher.w': torch.ones(1),
            'other_teachers.0.w': torch.ones(1),
            'other_teachers.1.w': torch.ones(1)
        })
    full = copy.deepcopy(cfg)
    notes = use_teachers_from_checkpoint(full, both)
    assert full.model.teacher_ckpts == [None, None, None]
    assert notes == [
        "model.teacher_ckpts=['a.pth', 'b.pth', 'c.pth'] not read: the "
        f"checkpoint {both} provides the teachers' weights (its `teacher.`, "
        '`other_teachers.0.`, `other_teachers.1.` entries).'
    ]
    first = _save(tmp_path / 'first.pth', {'teacher.w': torch.ones(1)})
    notes = use_teachers_from_checkpoint(cfg, first)
    assert cfg.model.teacher_ckpts == [None, 'b.pth', 'c.pth']
    assert notes == [
        "model.teacher_ckpts[0]='a.pth' not read: the checkpoint "
        f"{first} provides the teacher's weights (its `teacher.` entries)."
    ]
