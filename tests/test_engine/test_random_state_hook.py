# Copyright (c) mmakd contributors. All rights reserved.
"""Interrupt-and-resume gives the same losses and Avatars as one run."""

import pytest

from mmakd.apis import read_scalars
from helpers import (DEMO_AKD, cli_options, demo_options,
                     random_teacher_checkpoint, run_python)

KEYS = ('loss', 'student.decode.loss_ce', 'distill.loss_cwd',
        'distill.akd.cwd.w0', 'distill.akd.cwd.w3', 'distill.akd.cwd.u')

#: MMEngine's own training entry (what MMRazor's tools/train.py does),
#: without the hooks mmakd's tools/train.py adds.
PLAIN_TRAIN = """
import argparse
from mmengine.config import DictAction
from mmengine.runner import Runner
import mmakd
from mmakd.utils import load_config
parser = argparse.ArgumentParser()
parser.add_argument('config')
parser.add_argument('work_dir')
parser.add_argument('resume', choices=['start', 'resume'])
parser.add_argument('options', nargs='+', action=DictAction)
args = parser.parse_args()
cfg = load_config(args.config, args.options)
cfg.work_dir, cfg.resume = args.work_dir, args.resume == 'resume'
Runner.from_cfg(cfg).train()
"""


def _train(work_dir, options, resume=False, plain=False):
    if plain:
        args = [
            '-c', PLAIN_TRAIN, DEMO_AKD, work_dir,
            'resume' if resume else 'start'
        ]
    else:
        args = [
            'tools/train.py', DEMO_AKD, '--work-dir', work_dir, '--cfg-options'
        ]
        if resume:
            args.insert(-1, '--resume')
    result = run_python(args + cli_options(options))
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout + result.stderr


def _by_iter(work_dir):
    return {r['iter']: r for r in read_scalars(work_dir) if 'loss' in r}


@pytest.fixture(scope='module')
def runs(tmp_path_factory, shapes_root):
    tmp = tmp_path_factory.mktemp('resume')
    teacher = random_teacher_checkpoint(str(tmp / 'teacher.pth'))

    def options(iters, **extra):
        # the schedule always spans 6 iterations; only the stop differs
        return demo_options(
            shapes_root,
            iters=iters,
            **{
                'model.teacher_ckpt': teacher,
                'param_scheduler.0.end': 6,
                'train_cfg.val_interval': 100,
                'default_hooks.checkpoint.interval': 3
            },
            **extra)

    full = str(tmp / 'full')
    _train(full, options(6))
    out = {'full': _by_iter(full)}
    for name, extra in (('hook', {}), ('no_hook', {'custom_hooks': []})):
        work = str(tmp / name)
        plain = name == 'no_hook'  # tools/train.py would add the hook
        _train(work, options(3, **extra), plain=plain)
        log = _train(work, options(6, **extra), resume=True, plain=plain)
        assert 'resumed epoch: 0, iter: 3' in log
        out[name] = {
            r['iter']: r
            for r in read_scalars(work) if 'loss' in r and r['iter'] > 3
        }
    return out


@pytest.mark.slow
def test_resumed_run_matches_the_uninterrupted_one(runs):
    full, resumed = runs['full'], runs['hook']
    assert sorted(resumed) == [4, 5, 6]
    for it in (4, 5, 6):
        for key in KEYS:
            assert resumed[it][key] == pytest.approx(
                full[it][key], rel=1e-6), (it, key)


@pytest.mark.slow  # the `runs` fixture trains four times (about a minute)
def test_without_the_hook_dropout_draws_differ(runs):
    """The control: MMEngine alone re-seeds PyTorch on resume, so the
    models' dropout masks (not the Avatars) change."""
    full, resumed = runs['full'], runs['no_hook']
    assert any(
        resumed[it]['loss'] != pytest.approx(full[it]['loss'], rel=1e-6)
        for it in (4, 5, 6))


def test_validation_leaves_the_random_state_as_it_found_it():
    """A checkpoint is written before the validation that follows it; the
    run resumed from it must draw what the run that validated draws."""
    import random

    import numpy as np
    import torch

    from mmakd.engine.hooks import RandomStateHook

    def draws():
        return (torch.rand(3).tolist(), np.random.rand(3).tolist(),
                random.random())

    hook = RandomStateHook()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    without = draws()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    hook.before_val(runner=None)
    draws()  # what validation draws (e.g. a DataLoader iterator's seed)
    hook.after_val(runner=None)
    assert draws() == without
