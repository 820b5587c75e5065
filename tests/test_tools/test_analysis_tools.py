# Copyright (c) mmakd contributors. All rights reserved.
"""visualize_avatars.py and plot_logs.py on a short real AKD run."""
import glob
import os.path as osp
import re

import pytest

from helpers import (DEMO_AKD, REPO, cli_options, demo_options, png_size,
                     random_teacher_checkpoint, run_python)


@pytest.fixture(scope='module')
def akd_run(tmp_path_factory, shapes_root):
    tmp = tmp_path_factory.mktemp('akd_run')
    teacher = random_teacher_checkpoint(str(tmp / 'teacher.pth'))
    work = str(tmp / 'work')
    # the demo AKD config with TensorBoard switched on by config
    config = tmp / 'akd_tensorboard.py'
    config.write_text(
        f"_base_ = ['{osp.join(REPO, DEMO_AKD)}']\n"
        "visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), "
        "dict(type='TensorboardVisBackend')])\n")
    result = run_python(
        ['tools/train.py',
         str(config), '--work-dir', work, '--cfg-options'] + cli_options(
             demo_options(
                 shapes_root,
                 iters=3,
                 **{
                     'model.teacher_ckpt': teacher,
                     'train_cfg.val_interval': 100
                 })))
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(work=work, ckpt=osp.join(work, 'iter_3.pth'), data=shapes_root)


@pytest.mark.slow
def test_visualize_avatars(akd_run, tmp_path):
    image = sorted(
        glob.glob(
            osp.join(akd_run['data'], 'leftImg8bit', 'val', 'shapes',
                     '*.png')))[0]
    out = str(tmp_path / 'avatars.png')
    result = run_python([
        'tools/analysis_tools/visualize_avatars.py', DEMO_AKD, akd_run['ckpt'],
        image, '--out', out
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    # the config's teacher file is not needed: the checkpoint holds it
    assert ("model.teacher_ckpt='work_dirs/akd_demo/seg/teacher/"
            f"iter_1600.pth' not read: the checkpoint {akd_run['ckpt']} "
            "provides the teacher's weights") in result.stdout
    weights = re.search(r'weights \[(.*)\]', result.stdout).group(1)
    weights = [float(w) for w in weights.split(',')]
    # the demo's four strengths, one Avatar each, weighted by their drift
    assert len(weights) == 4 and sum(weights) == pytest.approx(1, abs=1e-3)
    width, height = png_size(out)
    assert width > 1.4 * height > 560  # two rows of K + 1 = 5 panels
    # K is fixed by the per-Avatar strengths
    result = run_python([
        'tools/analysis_tools/visualize_avatars.py', DEMO_AKD, akd_run['ckpt'],
        image, '--out', out, '--num-avatars', '3'
    ])
    assert result.returncode != 0
    assert '--num-avatars 3: the config sets one strength per Avatar for 4' \
        in result.stderr


def test_visualize_refuses_a_config_without_avatars(akd_run, tmp_path):
    from helpers import DEMO_CWD
    image = glob.glob(
        osp.join(akd_run['data'], 'leftImg8bit', 'val', 'shapes', '*.png'))[0]
    result = run_python([
        'tools/analysis_tools/visualize_avatars.py', DEMO_CWD, akd_run['ckpt'],
        image, '--out',
        str(tmp_path / 'x.png')
    ])
    assert result.returncode != 0
    assert 'not AvatarDistiller' in result.stderr


def test_plot_logs(akd_run, tmp_path):
    out = str(tmp_path / 'curves.png')
    result = run_python([
        'tools/analysis_tools/plot_logs.py', akd_run['work'], '--keys',
        'distill.loss_*', 'distill.akd.*.w[0-9]*', '--out', out
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'wrote' in result.stdout and '(5 curves)' in result.stdout
    assert png_size(out)[0] > 800
    missing = run_python([
        'tools/analysis_tools/plot_logs.py', akd_run['work'], '--keys',
        'nothing.*', '--out',
        str(tmp_path / 'none.png')
    ])
    assert missing.returncode != 0 and 'no logged key' in missing.stderr


def test_tensorboard_switched_on_by_config(akd_run):
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    events = glob.glob(
        osp.join(akd_run['work'], '*', 'vis_data', 'events.out.tfevents.*'))
    assert events, 'no TensorBoard event file'
    acc = EventAccumulator(osp.dirname(events[0]))
    acc.Reload()
    tags = set(acc.Tags()['scalars'])
    assert {
        'distill.loss_cwd', 'distill.akd.cwd.w0', 'distill.akd.cwd.u',
        'student.decode.loss_ce'
    } <= tags
    assert [e.step for e in acc.Scalars('distill.akd.cwd.w3')] == [1, 2, 3]


def test_visualize_view_avatars(akd_run, tmp_path):
    """Avatars that run the teacher: the image and its flip, recorded as in
    training, weighted by their drift from their mean."""
    image = sorted(
        glob.glob(
            osp.join(akd_run['data'], 'leftImg8bit', 'val', 'shapes',
                     '*.png')))[0]
    out = str(tmp_path / 'views.png')
    config = DEMO_AKD.replace('/akd_cwd_', '/akd-views_cwd_')
    result = run_python([
        'tools/analysis_tools/visualize_avatars.py', config, akd_run['ckpt'],
        image, '--out', out
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    weights = re.search(r'weights \[(.*)\]', result.stdout).group(1)
    weights = [float(w) for w in weights.split(',')]
    # two views, their means at equal distance from the mean: near-equal
    # weights (their stds differ a little)
    assert len(weights) == 2 and sum(weights) == pytest.approx(1, abs=1e-3)
    assert weights == pytest.approx([0.5, 0.5], abs=0.05)
    width, height = png_size(out)
    assert width > height  # two rows of K + 1 = 3 panels
