# Copyright (c) mmakd contributors. All rights reserved.
import json
import math

import pytest

from mmakd.apis import (final_metrics, paired_summary, read_scalars,
                        to_cli_options)


def test_to_cli_options_round_trips_through_dictaction():
    import argparse

    from mmengine.config import DictAction
    options = {
        'model.teacher_ckpt': 'w/t.pth',
        'train_cfg.max_iters': 50,
        'train_dataloader.dataset.metainfo': dict(classes=('a', 'b')),
        'param_scheduler.0.end': 50,
        'crop': (128, 128),
        'ids': [1, 2],
        'val_cfg': None,
    }
    args = to_cli_options(options)
    assert 'train_dataloader.dataset.metainfo.classes=(a,b)' in args
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parsed = parser.parse_args(['--cfg-options'] + args).cfg_options
    assert parsed['model.teacher_ckpt'] == 'w/t.pth'
    assert parsed['train_cfg.max_iters'] == 50
    assert parsed['crop'] == (128, 128) and parsed['ids'] == [1, 2]
    assert parsed['val_cfg'] is None


def test_paired_summary_by_hand():
    """a = (1, 2, 3), b = (2, 4, 3): differences (1, 2, 0), mean 1, sample
    std 1, t = 1 / (1 / sqrt 3) = sqrt 3; with 2 degrees of freedom the
    two-sided p-value is 1 - t / sqrt(t^2 + 2) = 0.2254 and the 95% CI is
    1 -+ 4.3027 / sqrt 3."""
    s = paired_summary([1, 2, 3], [2, 4, 3])
    assert s['a'] == dict(mean=2.0, std=1.0, n=3)
    assert s['b']['mean'] == 3.0
    assert s['diff']['mean'] == 1.0 and s['diff']['std'] == 1.0
    assert s['t'] == pytest.approx(math.sqrt(3))
    assert s['p_value'] == pytest.approx(1 - math.sqrt(3) / math.sqrt(5))
    half = 4.302652729911275 / math.sqrt(3)
    assert s['ci95'] == pytest.approx([1 - half, 1 + half])


def test_paired_summary_edge_cases():
    one = paired_summary([1.0], [2.0])
    assert one['diff']['mean'] == 1.0 and 'p_value' not in one
    constant = paired_summary([1, 2], [2, 3])
    assert constant['p_value'] == 0.0
    with pytest.raises(ValueError):
        paired_summary([1, 2], [1])


def test_scalars_and_final_metrics(tmp_path):
    vis = tmp_path / '20260101_000000' / 'vis_data'
    vis.mkdir(parents=True)
    records = [
        dict(lr=0.01, loss=2.0, time=0.5, iter=10, step=10),
        dict(lr=0.01, loss=1.0, time=0.4, iter=20, step=20),
        {
            'mIoU': 40.0,
            'aAcc': 80.0,
            'teacher.mIoU': 70.0,
            'step': 20,
            'data_time': 0.01,
            'time': 0.2
        },
    ]
    (vis /
     'scalars.json').write_text('\n'.join(json.dumps(r)
                                          for r in records) + '\n')
    assert read_scalars(str(tmp_path)) == records
    assert final_metrics(records) == {
        'mIoU': 40.0,
        'aAcc': 80.0,
        'teacher.mIoU': 70.0
    }
    with pytest.raises(FileNotFoundError):
        read_scalars(str(tmp_path / 'empty'))


def test_results_hold_commands_relative_to_the_repository(tmp_path):
    """Item 7 of the evidence issue: no machine's venv or checkout path in
    results files; paths outside the repository stay absolute."""
    import os.path as osp
    import sys

    from mmakd.apis import RunResult, portable_command, relative_path
    from mmakd.apis.experiment import REPO, TRAIN
    outside = str(tmp_path / 'w' / 'iter_8.pth')
    inside = osp.join(REPO, 'work_dirs', 'demo', 'teacher', 'iter_8.pth')
    config = osp.join(REPO, 'configs', 'akd', 'demo', 'x.py')
    command = [
        sys.executable, TRAIN, config, '--work-dir',
        osp.join(REPO, 'work_dirs', 'demo', 'cwd'), '--cfg-options',
        f'model.teacher_ckpt={inside}', f'val_evaluator.ann_file={outside}',
        'train_cfg.max_iters=8', 'data_root=data/shapes/'
    ]
    assert portable_command(command) == [
        'python', 'tools/train.py', 'configs/akd/demo/x.py', '--work-dir',
        'work_dirs/demo/cwd', '--cfg-options',
        'model.teacher_ckpt=work_dirs/demo/teacher/iter_8.pth',
        f'val_evaluator.ann_file={outside}', 'train_cfg.max_iters=8',
        'data_root=data/shapes/'
    ]
    # a sibling folder whose name starts like the repository's is outside
    sibling = REPO + '-copy/a.pth'
    assert relative_path(sibling) == sibling
    assert relative_path(REPO) == '.'
    result = RunResult(
        name='cwd',
        config=config,
        work_dir=osp.join(REPO, 'work_dirs', 'demo', 'cwd'),
        command=command,
        checkpoint=outside)
    out = result.to_dict()
    assert out['command'][0] == 'python'
    assert out['config'] == 'configs/akd/demo/x.py'
    assert out['work_dir'] == 'work_dirs/demo/cwd'
    assert out['checkpoint'] == outside
    assert REPO not in json.dumps(out)
    # the object itself keeps the command that was run
    assert result.command[0] == sys.executable
