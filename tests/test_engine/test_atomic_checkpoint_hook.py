# Copyright (c) mmakd contributors. All rights reserved.
"""AtomicCheckpointHook: no half-written checkpoint under a checkpoint's
name, ``last_checkpoint`` always names one that loads, on a toy model in
MMEngine's own Runner (a write interrupted by an exception stands for a
kill; tests/test_tools/test_kill_resume.py kills real runs)."""
import os
import os.path as osp

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.fileio.backends.local_backend import LocalBackend
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import mmakd  # noqa: F401  (registers the hook)
from mmakd.utils.checkpoint import read_checkpoint


class Toy(BaseModel):

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)
        if mode == 'loss':
            return dict(loss=out.pow(2).mean())
        return [dict(out=float(o)) for o in out]


class Points(Dataset):

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        return dict(inputs=torch.tensor([float(i), 1.0]))


class Mean(BaseMetric):

    def process(self, data_batch, data_samples) -> None:
        self.results += [d['out'] for d in data_samples]

    def compute_metrics(self, results) -> dict:
        return dict(score=sum(results) / len(results))


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it."""


def _runner(work: str, hook_type: str, resume: bool = False, **hook) -> Runner:
    loader = dict(
        dataset=Points(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=2,
        collate_fn=dict(type='default_collate'))
    return Runner(
        model=Toy(),
        work_dir=work,
        train_dataloader=loader,
        val_dataloader=loader,
        val_evaluator=[Mean()],
        train_cfg=dict(by_epoch=False, max_iters=4, val_interval=2),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(
            checkpoint=dict(
                type=hook_type,
                by_epoch=False,
                interval=2,
                max_keep_ckpts=1,
                **hook)),
        resume=resume,
        randomness=dict(seed=0))


def _interrupt_write_of(name: str, monkeypatch) -> None:
    """The next write of a file called ``name`` (or ``name.part``) stops
    half-way."""
    original = LocalBackend.put

    def put(backend, obj, filepath):
        if osp.basename(str(filepath)).split('.part')[0] != name:
            return original(backend, obj, filepath)
        with open(filepath, 'wb') as f:
            f.write(obj[:len(obj) // 2])
        raise Killed

    monkeypatch.setattr(LocalBackend, 'put', put)


def _last(work: str) -> str:
    with open(osp.join(work, 'last_checkpoint')) as f:
        return f.read().strip()


def test_a_run_keeps_its_newest_checkpoint(tmp_path):
    work = str(tmp_path)
    _runner(work, 'mmrazor.AtomicCheckpointHook').train()
    pth = sorted(f for f in os.listdir(work) if '.pth' in f)
    assert pth == ['iter_4.pth']  # max_keep_ckpts=1, nothing .part
    assert _last(work) == osp.join(work, 'iter_4.pth')
    assert read_checkpoint(_last(work))['meta']['iter'] == 4


def test_a_kill_while_writing_leaves_the_previous_checkpoint(
        tmp_path, monkeypatch):
    work = str(tmp_path)
    _interrupt_write_of('iter_4.pth', monkeypatch)
    with pytest.raises(Killed):
        _runner(work, 'mmrazor.AtomicCheckpointHook').train()
    monkeypatch.undo()
    assert sorted(f for f in os.listdir(work) if '.pth' in f) == \
        ['iter_2.pth', 'iter_4.pth.part']
    assert _last(work) == osp.join(work, 'iter_2.pth')
    assert read_checkpoint(_last(work))['meta']['iter'] == 2

    runner = _runner(work, 'mmrazor.AtomicCheckpointHook', resume=True)
    runner.train()
    assert runner.iter == 4
    assert sorted(f for f in os.listdir(work) if '.pth' in f) == \
        ['iter_4.pth']  # the .part is gone, iter_2 dropped after iter_4


def test_mmengine_hook_loses_every_checkpoint_there(tmp_path, monkeypatch):
    """The control: MMEngine deletes the kept checkpoint before it writes
    the next, so the same kill leaves a truncated iter_4.pth and a
    last_checkpoint naming the deleted iter_2.pth."""
    work = str(tmp_path)
    _interrupt_write_of('iter_4.pth', monkeypatch)
    with pytest.raises(Killed):
        _runner(work, 'CheckpointHook').train()
    assert sorted(f for f in os.listdir(work) if '.pth' in f) == \
        ['iter_4.pth']
    assert _last(work) == osp.join(work, 'iter_2.pth')
    assert not osp.exists(_last(work))


def test_the_best_checkpoint_is_written_whole(tmp_path, monkeypatch):
    work = str(tmp_path)
    _runner(
        work,
        'mmrazor.AtomicCheckpointHook',
        save_best='score',
        rule='greater').train()
    best = [f for f in os.listdir(work) if f.startswith('best_')]
    assert len(best) == 1 and best[0].endswith('.pth'), best
    assert 'state_dict' in read_checkpoint(osp.join(work, best[0]))

    # a kill while the best checkpoint is written leaves no file under a
    # best_*.pth name that does not load
    other = str(tmp_path / 'other')
    _interrupt_write_of('best_score_iter_2.pth', monkeypatch)
    with pytest.raises(Killed):
        _runner(
            other,
            'mmrazor.AtomicCheckpointHook',
            save_best='score',
            rule='greater').train()
    names = os.listdir(other)
    assert 'best_score_iter_2.pth.part' in names
    assert 'best_score_iter_2.pth' not in names
