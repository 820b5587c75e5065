# Copyright (c) mmakd contributors. All rights reserved.
from types import SimpleNamespace

import torch

from mmakd.engine.hooks import StudentCheckpointHook


def _distillation_checkpoint(folder, name='iter_4.pth'):
    gen = torch.Generator().manual_seed(0)
    state = {
        'architecture.backbone.conv.weight': torch.randn(4, 3, generator=gen),
        'architecture.head.fc.bias': torch.randn(5, generator=gen),
        'teacher.backbone.conv.weight': torch.randn(8, 3, generator=gen),
        'distiller.connectors.c.weight': torch.randn(2, generator=gen),
    }
    path = folder / name
    torch.save(dict(state_dict=state, meta=dict(iter=4)), str(path))
    (folder / 'last_checkpoint').write_text(str(path))
    return path, state


def test_writes_the_student_of_the_last_checkpoint_next_to_it(tmp_path):
    path, state = _distillation_checkpoint(tmp_path)
    hook = StudentCheckpointHook()
    hook.after_train(SimpleNamespace(work_dir=str(tmp_path)))

    out = tmp_path / 'iter_4_student.pth'
    assert hook.written == str(out)
    written = torch.load(str(out), map_location='cpu')
    assert sorted(
        written['state_dict']) == ['backbone.conv.weight', 'head.fc.bias']
    for key, value in written['state_dict'].items():
        assert torch.equal(value, state['architecture.' + key])
    assert written['meta']['iter'] == 4
    assert written['meta']['converted_from']['checkpoint'] == str(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'iter_4.pth', 'iter_4_student.pth', 'last_checkpoint'
    ]  # no .part left


def test_without_a_saved_checkpoint_nothing_is_written(tmp_path):
    hook = StudentCheckpointHook()
    hook.after_train(SimpleNamespace(work_dir=str(tmp_path)))
    assert hook.written is None and not list(tmp_path.iterdir())
    # a remote last checkpoint is left to its backend
    (tmp_path / 'last_checkpoint').write_text('s3://bucket/iter_4.pth')
    hook.after_train(SimpleNamespace(work_dir=str(tmp_path)))
    assert hook.written is None
    assert [p.name for p in tmp_path.iterdir()] == ['last_checkpoint']
