# Copyright (c) mmakd contributors. All rights reserved.
"""kill -9 at any point, ``tools/train.py --resume``, the same run.

For each algorithm, one run trains uninterrupted; a second run of the same
config and seed is killed with SIGKILL three times, inside a training
iteration, inside a checkpoint write and inside a validation, and resumed
with ``--resume`` (no path, no clean-up) after each kill. Every iteration
any launch of the killed run logged, and the students it ends with, must
equal the uninterrupted run's: losses, Avatar weights and every weight.
After each kill, every checkpoint file in the work directory loads and
``last_checkpoint`` names one that does.

The points are reached by ``tests/data/kill_probe.py`` (a test-only hook
that waits there); the test sends the SIGKILL. Synthetic data (shapes and
CIFAR-like), random teachers, ``OMP_NUM_THREADS=1``.
"""
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time
from typing import Dict, List

import pytest
import torch

from mmakd.utils.checkpoint import read_checkpoint
from helpers import (DEMO, DEMO_AKD, REPO, cli_options, demo_options,
                     random_teacher_checkpoint)

DET_TEACHER = f'{DEMO}/retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128.py'
DEMO_ENSEMBLE = (f'{DEMO}/cwd_fpn_4xretinanet-r18-w32_retinanet-r18-w8_'
                 '1xb8-400it_shapes-128.py')
MGKD_DIR = 'configs/mgkd/mmpretrain/synthetic'
MGKD_TEACHER = f'{MGKD_DIR}/resnet20-cifar_1xb32-4e_cifar-like.py'
MGKD_STAGE2 = f'{MGKD_DIR}/mgkd_kd_resnet20-cifar_resnet8-cifar_1xb32-4e_' \
    'cifar-like.py'

#: Where each run is killed, in order (``kill_probe``'s points; N counts
#: training iterations). Iteration-based runs: 6 iterations, a checkpoint
#: (one kept) and a validation every 2. The MGKD stage: 3 epochs of 2
#: iterations, a checkpoint (one kept) and a validation every epoch.
KILL_POINTS = ('train:3', 'save:4', 'val:4')
#: What ``kill_probe`` says it stopped in, for each point.
WHERE = dict(train='train', val='validation', save='checkpoint')
#: The algorithms the kills are tried on.
ALGORITHMS = ('FlexibleTeacherDistill (AKD)', 'MultiTeacherDistill',
              'MGKD stage 2')
#: Logged values that are not results.
NOT_RESULTS = ('time', 'data_time', 'eta', 'memory')
TIMEOUT = 300
#: Where the iteration-based runs resume after each kill of KILL_POINTS.
ITER_RESUMES = ('resumed epoch: 0, iter: 2', 'resumed epoch: 0, iter: 2',
                'resumed epoch: 0, iter: 4')


def _config(folder: str, base: str, hooks: List[str]) -> str:
    """``base`` with the kill probe added to its custom hooks."""
    path = osp.join(folder, 'kill_probe_config.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = ['{osp.join(REPO, base)}']\n"
                "custom_imports = dict(imports=['mmakd', 'mmakd.datasets', "
                "'kill_probe'], allow_failed_imports=False)\n"
                f'custom_hooks = [{", ".join(hooks)}]\n')
    return path


def _env(kill_at: str = None, marker: str = None) -> dict:
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join([REPO,
                                    osp.join(REPO, 'tests', 'data')]))
    env.pop('MMAKD_KILL_AT', None)
    if kill_at:
        env.update(MMAKD_KILL_AT=kill_at, MMAKD_KILL_MARKER=marker)
    return env


def _args(config: str, options: dict, work: str, resume: bool) -> list:
    return [
        sys.executable, 'tools/train.py', config, '--work-dir', work,
        '--cfg-options'
    ] + cli_options(options) + (['--resume'] if resume else [])


def _launch(config: str,
            options: dict,
            work: str,
            resume: bool,
            kill_at: str = None) -> str:
    """Run tools/train.py; with ``kill_at``, SIGKILL it there. Returns the
    log."""
    marker = work + '.marker'
    if osp.exists(marker):
        os.remove(marker)
    log_path = f'{work}.{len(glob.glob(work + ".*.log"))}.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            _args(config, options, work, resume),
            cwd=REPO,
            env=_env(kill_at, marker),
            stdout=log,
            stderr=subprocess.STDOUT)
        deadline = time.time() + TIMEOUT
        while kill_at and not osp.exists(marker):
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f'the run never reached {kill_at} '
                            f'(exit {proc.returncode}):\n' + _tail(log_path))
            time.sleep(0.05)
        if kill_at:
            os.kill(proc.pid, signal.SIGKILL)
            with open(marker) as f:
                where = f.read()
            assert where.split()[0] == str(proc.pid), where
            assert where.split()[1] == WHERE[kill_at.split(':')[0]], where
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail('the run timed out:\n' + _tail(log_path))
    expected = -signal.SIGKILL if kill_at else 0
    assert proc.returncode == expected, _tail(log_path)
    with open(log_path) as f:
        return f.read()


def _tail(path: str) -> str:
    with open(path) as f:
        return f.read()[-5000:]


def _records(work: str) -> Dict[str, Dict[int, dict]]:
    """Train and validation records of every launch, by iteration; a
    launch that was killed may repeat iterations another logged."""
    out = {'train': {}, 'val': {}}
    for path in sorted(
            glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                kind = 'train' if 'loss' in record else 'val'
                key = record.get('iter', record.get('step'))
                out[kind].setdefault(key, []).append({
                    k: v
                    for k, v in record.items() if k not in NOT_RESULTS
                })
    return out


def _state(work: str) -> Dict[str, torch.Tensor]:
    with open(osp.join(work, 'last_checkpoint')) as f:
        return read_checkpoint(f.read().strip())['state_dict']


def _assert_resumable(work: str, after: str) -> None:
    """Every checkpoint file loads; ``last_checkpoint`` names one."""
    for path in glob.glob(osp.join(work, '*.pth')):
        read_checkpoint(path)  # raises on a half-written file
    with open(osp.join(work, 'last_checkpoint')) as f:
        last = f.read().strip()
    assert osp.isfile(last), f'after the kill at {after}: last_checkpoint ' \
        f'names {last}, which does not exist'


def _killed_and_resumed(config: str, options: dict, work: str) -> List[str]:
    logs = []
    for i, point in enumerate(KILL_POINTS):
        logs.append(_launch(config, options, work, i > 0, kill_at=point))
        _assert_resumable(work, point)
    logs.append(_launch(config, options, work, True))
    return logs


def _run_pair(config: str, options: dict, tmp) -> dict:
    """The uninterrupted run (in the background) and the killed one."""
    full, killed = str(tmp / 'full'), str(tmp / 'killed')
    with open(full + '.log', 'w') as log:
        background = subprocess.Popen(
            _args(config, options, full, False),
            cwd=REPO,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT)
        try:
            logs = _killed_and_resumed(config, options, killed)
        finally:
            background.wait(timeout=TIMEOUT * 2)
    assert background.returncode == 0, _tail(full + '.log')
    return dict(full=full, killed=killed, logs=logs)


def _assert_same_run(pair: dict, iters: int, keys: tuple,
                     resumed_from: tuple) -> None:
    full, killed = _records(pair['full']), _records(pair['killed'])
    assert sorted(full['train']) == list(range(1, iters + 1))
    assert sorted(killed['train']) == list(range(1, iters + 1))
    for it, records in killed['train'].items():
        (reference, ) = full['train'][it]
        for key in keys:
            assert key in reference, (key, sorted(reference))
        for record in records:  # every launch that logged iteration it
            assert record == reference, it
    # the last validation (the kill lost the one it interrupted)
    last = max(full['val'])
    assert killed['val'][last][-1] == full['val'][last][0]
    # every weight of the students, connectors, teachers
    a, b = _state(pair['full']), _state(pair['killed'])
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # each launch after a kill resumed from the newest complete checkpoint
    for log, point in zip(pair['logs'][1:], resumed_from):
        assert point in log, (point, log[-3000:])
    assert '.part, a checkpoint whose write was interrupted' in \
        pair['logs'][2]


def _iter_options(shapes_root: str, **extra) -> dict:
    return demo_options(
        shapes_root,
        iters=6,
        **{
            'train_cfg.val_interval': 2,
            'default_hooks.checkpoint.interval': 2,
            'default_hooks.checkpoint.max_keep_ckpts': 1,
        },
        **extra)


@pytest.mark.slow
def test_akd_survives_kills(tmp_path, shapes_root):
    teacher = random_teacher_checkpoint(str(tmp_path / 'teacher.pth'))
    config = _config(
        str(tmp_path), DEMO_AKD, [
            "dict(type='mmrazor.RandomStateHook')",
            "dict(type='mmrazor.KillProbeHook')"
        ])
    pair = _run_pair(
        config, _iter_options(shapes_root, **{'model.teacher_ckpt': teacher}),
        tmp_path)
    _assert_same_run(pair, 6,
                     ('loss', 'distill.loss_cwd', 'distill.akd.cwd.w0',
                      'distill.akd.cwd.w3', 'distill.akd.cwd.u'), ITER_RESUMES)


@pytest.mark.slow
def test_multi_teacher_distill_survives_kills(tmp_path, shapes_root):
    teachers = [
        random_teacher_checkpoint(
            str(tmp_path / f'teacher{i}.pth'), DET_TEACHER, seed=i)
        for i in range(4)
    ]
    config = _config(
        str(tmp_path), DEMO_ENSEMBLE, [
            "dict(type='mmrazor.RandomStateHook')",
            "dict(type='mmrazor.KillProbeHook')"
        ])
    # the COCO metric reads its annotation file by itself
    options = _iter_options(
        shapes_root, **{
            'model.teacher_ckpts':
            teachers,
            'val_evaluator.ann_file':
            osp.join(shapes_root, 'annotations', 'instances_val.json'),
        })
    pair = _run_pair(config, options, tmp_path)
    _assert_same_run(pair, 6,
                     ('loss', 'student.loss_cls', 'distill.loss_cwd_fpn0'),
                     ITER_RESUMES)


def _analyser_checkpoint(path: str, config: str) -> str:
    """Stage 1's output for ``config``: its tubes, randomly initialised."""
    from mmengine.config import Config

    from mmakd.registry import MODELS
    tubes = Config.fromfile(config).model.distiller.connectors.t_tubes
    tubes.checkpoint = None
    torch.manual_seed(0)
    state = MODELS.build(tubes).state_dict()
    torch.save(
        dict(state_dict={
            f'analyser.{k}': v
            for k, v in state.items()
        }), path)
    return path


@pytest.mark.slow
def test_mgkd_stage_survives_kills(tmp_path):
    from mmakd.datasets import generate_cifar_like
    data = str(tmp_path / 'cifar-like')
    # 2 iterations per epoch at batch 32, one validation batch
    generate_cifar_like(
        data, num_classes=20, train_per_class=2, test_per_class=1)
    config = _config(
        str(tmp_path), MGKD_STAGE2, ["dict(type='mmrazor.KillProbeHook')"])
    options = {
        'train_dataloader.dataset.data_root':
        data,
        'val_dataloader.dataset.data_root':
        data,
        'test_dataloader.dataset.data_root':
        data,
        'model.teacher_ckpt':
        random_teacher_checkpoint(str(tmp_path / 'teacher.pth'), MGKD_TEACHER),
        'model.distiller.connectors.t_tubes.checkpoint':
        _analyser_checkpoint(
            str(tmp_path / 'analyser.pth'), osp.join(REPO, MGKD_STAGE2)),
        'train_cfg.max_epochs':
        3,
        'train_cfg.val_interval':
        1,
        'default_hooks.checkpoint.interval':
        1,
        'default_hooks.checkpoint.max_keep_ckpts':
        1,
        'default_hooks.logger.interval':
        1,
    }
    pair = _run_pair(config, options, tmp_path)
    _assert_same_run(pair, 6, ('loss', 'distill.loss_stable',
                               'distill.loss_narrow', 'distill.loss_wide'),
                     ('resumed epoch: 1, iter: 2', 'resumed epoch: 1, iter: 2',
                      'resumed epoch: 2, iter: 4'))
