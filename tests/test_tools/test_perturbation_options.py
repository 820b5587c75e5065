# Copyright (c) mmakd contributors. All rights reserved.
"""Perturbation settings given on tools/train.py's command line: a typo in
the type and a type changed over the config's perturbation dict fail with
the config key and the fix; the fix trains."""
import os.path as osp

import pytest
from mmengine.config import Config

from helpers import DEMO_AKD, cli_options, demo_options, run_python

KEY = 'model.distiller.avatars.perturbation'


def _train(tmp_path, *options, shapes_root=None):
    extra = cli_options(demo_options(shapes_root, iters=1)) \
        if shapes_root else []
    return run_python([
        'tools/train.py', DEMO_AKD, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', 'model.teacher_ckpt=None'
    ] + extra + list(options))


def test_unknown_perturbation_type(tmp_path):
    result = _train(tmp_path, f'{KEY}.type=AvatarDropuot')
    assert result.returncode != 0
    assert (f"KeyError: \"{KEY}.type='AvatarDropuot' is not a registered "
            'Avatar perturbation; registered: AvatarChannelDropout, '
            'AvatarDropout, AvatarGaussianNoise, AvatarPerturbationMix') \
        in result.stderr


@pytest.mark.slow
def test_changed_perturbation_type_says_how_then_trains(tmp_path, shapes_root):
    # the demo AKD config sets dict(type='AvatarDropout', p=(...))
    result = _train(tmp_path, f'{KEY}.type=AvatarGaussianNoise')
    assert result.returncode != 0
    assert (f"TypeError: {KEY}: AvatarGaussianNoise takes no argument 'p' "
            '(its arguments: std, num_avatars).') in result.stderr
    fix = (f'--cfg-options {KEY}._delete_=True {KEY}.type='
           f'AvatarGaussianNoise {KEY}.ARGUMENT=VALUE')
    assert fix in result.stderr

    # what the message says to do
    result = _train(
        tmp_path,
        f'{KEY}._delete_=True',
        f'{KEY}.type=AvatarGaussianNoise',
        f'{KEY}.std=0.1',
        shapes_root=shapes_root)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'Iter(train) [1/1]' in log
    used = Config.fromfile(str(tmp_path / 'work' /
                               osp.basename(DEMO_AKD))).model.distiller
    assert used.avatars.perturbation == dict(
        type='AvatarGaussianNoise', std=0.1)
