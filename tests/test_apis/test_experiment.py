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
    results files; paths outside the repository get a placeholder (issue
    24, point 8: ``<tmp>`` for the temporary folder)."""
    import os.path as osp
    import sys
    import tempfile

    from mmakd.apis import RunResult, portable_command, relative_path
    from mmakd.apis.experiment import REPO, TRAIN
    outside = str(tmp_path / 'w' / 'iter_8.pth')
    shown = '<tmp>/' + osp.relpath(outside, tempfile.gettempdir())
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
        f'val_evaluator.ann_file={shown}', 'train_cfg.max_iters=8',
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
    assert out['checkpoint'] == shown
    assert REPO not in json.dumps(out)
    assert str(tmp_path) not in json.dumps(out)
    # the object itself keeps the command that was run
    assert result.command[0] == sys.executable


def test_portable_text_rewrites_machine_paths(tmp_path):
    """Issue 24, point 8: logs and dumped configs copied next to a report
    name the repository's files relative to it, and what lay outside it by
    a placeholder; nothing else in the text changes."""
    import os.path as osp
    import site
    import tempfile

    from mmakd.apis.experiment import REPO, portable_path, portable_text
    tmp = tempfile.gettempdir()
    sp = site.getsitepackages()[0]
    text = (f"teacher = dict(cfg_path='{REPO}/configs/akd/demo/t.py')\n"
            f"data_root = '{tmp_path}/data/shapes/'\n"
            f'{sp}/mmengine/utils/package_utils.py:17: UserWarning: x\n'
            f'Checkpoints will be saved to {REPO}/work_dirs/a.\n'
            f'{REPO}-copy/b.pth stays apart; loss 0.1234 s/iter\n'
            'CXX_COMPILER=/opt/rh/gcc-toolset-13/root/usr/bin/c++\n')
    rel = osp.relpath(str(tmp_path), tmp)
    lines = portable_text(text).splitlines()
    # a sibling of the repository is not inside it (it keeps its folder,
    # or gets <tmp>/<home> where the clone lies there, as in CI)
    sibling = lines.pop(4)
    assert sibling.endswith(f'{osp.basename(REPO)}-copy/b.pth stays apart; '
                            'loss 0.1234 s/iter')
    assert not sibling.startswith('-copy')
    assert lines == [
        "teacher = dict(cfg_path='configs/akd/demo/t.py')",
        f"data_root = '<tmp>/{rel}/data/shapes/'",
        '<site-packages>/mmengine/utils/package_utils.py:17: UserWarning: x',
        'Checkpoints will be saved to work_dirs/a.',
        'CXX_COMPILER=/opt/rh/gcc-toolset-13/root/usr/bin/c++'
    ]
    # another checkout (a clone that made the results) counts as the
    # repository too
    assert portable_text(
        "'/tmp/democlone/data/x'", roots=['/tmp/democlone']) == "'data/x'"
    assert portable_path(REPO) == '.'
    assert portable_path(osp.join(REPO, 'a', 'b.py')) == 'a/b.py'
    assert portable_path('/srv/data/x.json') == '<outside>/srv/data/x.json'
    assert portable_path('configs/x.py') == 'configs/x.py'


def test_reproduce_keeps_portable_logs_and_configs(tmp_path):
    """``tools/reproduce.py --report-dir`` copies each run's log and dumped
    config without the machine's paths."""
    import os.path as osp

    from mmakd.apis.experiment import REPO
    from helpers import load_tool
    tool = load_tool('tools/reproduce.py', 'mmakd_tools_reproduce')
    work = tmp_path / 'work' / 'cwd_seed0'
    (work / '20260101_000000').mkdir(parents=True)
    (work / 'cwd.py').write_text(f"_base_ = ['{REPO}/configs/akd/demo/s.py']\n"
                                 f"data_root = '{tmp_path}/data/'\n")
    (work / '20260101_000000' / '20260101_000000.log'
     ).write_text(f'Checkpoints will be saved to {work}.\nloss: 0.5\n')
    tool.keep_logs(str(work), str(tmp_path / 'report' / 'logs'), 'cwd_seed0')
    config = (tmp_path / 'report' / 'logs' /
              'cwd_seed0-config.py.txt').read_text()
    log = (tmp_path / 'report' / 'logs' / 'cwd_seed0.log').read_text()
    for text in (config, log):
        assert REPO not in text and str(tmp_path) not in text
    assert "_base_ = ['configs/akd/demo/s.py']" in config
    assert "data_root = '<tmp>/" in config and osp.basename(
        str(tmp_path)) in config
    assert log.endswith('cwd_seed0.\nloss: 0.5\n')
