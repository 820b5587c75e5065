# Copyright (c) mmakd contributors. All rights reserved.
"""tools/dist_train.sh with two CPU processes (gloo)."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from helpers import (DEMO_AKD, REPO, cli_options, demo_options, free_port,
                     random_teacher_checkpoint)


def _dist_train(work: str, shapes_root: str, teacher: str, seed: int):
    os.makedirs(work, exist_ok=True)
    config = osp.join(work, 'akd_probe.py')
    with open(config, 'w') as f:
        f.write(f"_base_ = ['{osp.join(REPO, DEMO_AKD)}']\n"
                "custom_imports = dict(imports=['mmakd', 'dist_probe'], "
                "allow_failed_imports=False)\n"
                "custom_hooks = [dict(type='mmrazor.DistProbeHook', "
                f"out_dir='{work}')]\n")
    options = demo_options(
        shapes_root,
        iters=3,
        **{
            'model.teacher_ckpt': teacher,
            'train_cfg.val_interval': 100,
            'randomness.seed': seed,
        })
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PORT=str(free_port()),
        OMP_NUM_THREADS='1',
        PYTHONPATH=os.pathsep.join([REPO,
                                    osp.join(REPO, 'tests', 'data')]))
    result = subprocess.run(
        [
            'bash', 'tools/dist_train.sh', config, '2', '--work-dir', work,
            '--cfg-options'
        ] + cli_options(options),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + \
        result.stderr[-4000:]
    ranks = []
    for r in range(2):
        with open(osp.join(work, f'rank{r}.json')) as f:
            ranks.append(json.load(f))
    return ranks, result.stdout + result.stderr


@pytest.fixture(scope='module')
def runs(tmp_path_factory, shapes_root):
    tmp = tmp_path_factory.mktemp('dist')
    teacher = random_teacher_checkpoint(str(tmp / 'teacher.pth'))
    first, log = _dist_train(str(tmp / 'a'), shapes_root, teacher, seed=0)
    again, _ = _dist_train(str(tmp / 'b'), shapes_root, teacher, seed=0)
    return first, again, log


@pytest.mark.slow
def test_two_ranks_train_to_identical_students(runs):
    first, _, log = runs
    assert 'Distributed launcher: pytorch' in log or 'launcher: pytorch' in log
    assert len(first[0]['weights']) == len(first[1]['weights']) == 3
    assert first[0]['student'] == first[1]['student']
    # BatchNorm running statistics are per-rank buffers (MMEngine's DDP
    # does not broadcast buffers; SyncBN would share them).
    assert first[0]['buffers'] != first[1]['buffers']


def test_avatars_differ_across_ranks_and_repeat_per_rank(runs):
    first, again, _ = runs
    assert first[0]['weights'] != first[1]['weights']
    for rank in range(2):
        assert first[rank]['weights'] == again[rank]['weights']
        assert first[rank]['student'] == again[rank]['student']
