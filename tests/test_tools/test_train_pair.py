# Copyright (c) mmakd contributors. All rights reserved.
"""``tools/train.py STUDENT --teacher T --teacher-ckpt C`` as users run
it: the demo pairs (synthetic shapes data, random teachers) train from the
command, their generated configs train again to the same numbers, and the
student-only checkpoint is what the converter writes and what the
student's own ``tools/test.py`` reads."""
import glob
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmakd.apis.experiment import final_metrics, read_scalars
from mmakd.utils.checkpoint import convert_kd_checkpoint
from helpers import (DEMO, DEMO_STUDENT, DEMO_TEACHER, REPO, cli_options,
                     demo_options, free_port, load_tool,
                     random_teacher_checkpoint, run_python)

DET_S = f'{DEMO}/retinanet_r18-w8_fpn-64_1xb8-400it_shapes-128.py'
DET_T = f'{DEMO}/retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128.py'
URL = 'https://download.openmmlab.com/not-read.pth'
#: Any download in the child process fails at once.
NO_NETWORK = dict(
    HTTP_PROXY='http://127.0.0.1:9',
    HTTPS_PROXY='http://127.0.0.1:9',
    http_proxy='http://127.0.0.1:9',
    https_proxy='http://127.0.0.1:9')


def _check(result) -> str:
    assert result.returncode == 0, (
        result.stdout[-3000:] + result.stderr[-4000:])
    return result.stdout + result.stderr


@pytest.fixture(scope='module')
def train_tool():
    return load_tool('tools/train.py', 'train_tool_pair')


@pytest.mark.parametrize('argv, message', [
    (['--teacher', DET_T], '--teacher needs --teacher-ckpt'),
    (['--distill', 'cwd', '--dry-run'], '--distill, --dry-run need --teacher'),
    (['--teacher', DET_T, '--teacher-ckpt', URL, '--avatars', '0'
      ], '--avatars must be 1 or more'),
])
def test_options_without_what_they_need(argv, message, train_tool, monkeypatch,
                                        capsys):
    monkeypatch.setattr(sys, 'argv', ['train.py', DET_S, *argv])
    with pytest.raises(SystemExit):
        train_tool.parse_args()
    assert message in capsys.readouterr().err


def test_user_guide_names_only_real_options(repo_root, train_tool, monkeypatch,
                                            capsys):
    """Every option the user guide's section on one-command distillation
    names is an option of tools/train.py."""
    import re
    with open(osp.join(repo_root, 'docs', 'user_guide.md')) as f:
        guide = f.read()
    section = guide[guide.index('## 10. Distil any two models'):]
    named = set(re.findall(r'(?<![\w-])(--[a-z][a-z-]+)', section))
    assert {'--teacher', '--teacher-ckpt', '--avatars', '--dry-run'} <= named
    monkeypatch.setattr(sys, 'argv', ['train.py', '--help'])
    with pytest.raises(SystemExit):
        train_tool.parse_args()
    shown = capsys.readouterr().out
    missing = sorted(o for o in named if o not in shown)
    assert not missing, missing


def test_a_pair_that_cannot_be_paired_exits_with_the_reason(
        train_tool, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, 'argv', [
        'train.py', DET_S, '--teacher', DEMO_TEACHER, '--teacher-ckpt', URL,
        '--work-dir',
        str(tmp_path), '--dry-run'
    ])
    with pytest.raises(SystemExit) as info:
        train_tool.main()
    assert str(info.value).startswith('error: the student is a detector and '
                                      'the teacher a segmentor')
    assert not list(tmp_path.iterdir())


def test_dry_run_writes_and_prints_without_training_or_downloading(tmp_path):
    work_dir = str(tmp_path / 'work')
    log = _check(
        run_python([
            'tools/train.py', DET_S, '--teacher', DET_T, '--teacher-ckpt', URL,
            '--avatars', '4', '--work-dir', work_dir, '--dry-run'
        ], NO_NETWORK))
    name = ('akd_cwd_fpn_retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128_'
            'retinanet_r18-w8_fpn-64_1xb8-400it_shapes-128.py')
    assert sorted(p.name for p in (tmp_path / 'work').iterdir()) == [name]
    for text in ('loss_cwd_fpn0', 'neck[2]', '64x32x32', '4 x AvatarDropout',
                 f'dry run: wrote {osp.join(work_dir, name)}'):
        assert text in log, text


def _train(args, options, work_dir):
    return _check(
        run_python(['tools/train.py', *args, '--work-dir', work_dir] + (
            ['--cfg-options', *cli_options(options)] if options else [])))


def _state(path):
    return torch.load(path, map_location='cpu')['state_dict']


@pytest.mark.slow
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_demo_pair_trains_from_the_command_and_its_config_again(
        task, tmp_path, shapes_root):
    student, teacher = (DET_S, DET_T) if task == 'det' else (DEMO_STUDENT,
                                                             DEMO_TEACHER)
    ckpt = random_teacher_checkpoint(str(tmp_path / 'teacher.pth'), teacher)
    options = demo_options(shapes_root, iters=2)
    extra = []
    if task == 'det':
        options['val_evaluator.ann_file'] = \
            f'{shapes_root}annotations/instances_val.json'
        extra = ['--avatars', '2']
    first = str(tmp_path / 'first')
    log = _train(
        [student, '--teacher', teacher, '--teacher-ckpt', ckpt, *extra],
        options, first)
    assert 'Iter(train) [2/2]' in log
    [generated] = glob.glob(osp.join(first, '*_shapes-128.py'))
    text = open(generated).read()
    assert text.startswith('# ') and '_delete_=True' in text  # not the dump
    assert osp.isfile(generated[:-3] + '_full.py')

    # the generated config alone trains the same run
    second = str(tmp_path / 'second')
    _train([generated], None, second)
    runs = [read_scalars(first), read_scalars(second)]

    def values(records):  # all but the timings
        return [{
            k: v
            for k, v in r.items() if 'time' not in k and k != 'eta'
        } for r in records]

    assert values(runs[0]) == values(runs[1])
    losses = [k for k in runs[0][0] if k.startswith('distill.loss_')]
    assert losses, runs[0][0]
    a, b = _state(osp.join(first, 'iter_2.pth')), _state(
        osp.join(second, 'iter_2.pth'))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the student-only checkpoint: what the converter writes, loadable by
    # the student's own config
    written = osp.join(first, 'iter_2_student.pth')
    assert 'wrote ' + written in log
    convert_kd_checkpoint(
        osp.join(first, 'iter_2.pth'), str(tmp_path / 'converted.pth'))
    student_state = _state(written)
    converted = _state(str(tmp_path / 'converted.pth'))
    assert student_state.keys() == converted.keys()
    assert all(torch.equal(student_state[k], converted[k]) for k in converted)
    if task == 'seg':
        test_log = _check(
            run_python([
                'tools/test.py', student, written, '--work-dir',
                str(tmp_path / 'test'), '--cfg-options',
                *cli_options({
                    f'{s}_dataloader.dataset.data_root': shapes_root
                    for s in ('val', 'test')
                })
            ]))
        assert f"mIoU: {final_metrics(runs[0])['mIoU']:.4f}" in test_log


@pytest.mark.slow
def test_two_processes_write_one_config_and_one_table(tmp_path, shapes_root):
    """``tools/dist_train.sh STUDENT 2 --teacher ...`` (two CPU processes):
    both generate the same config, the table is printed once, and the
    student-only checkpoint is written once."""
    ckpt = random_teacher_checkpoint(str(tmp_path / 'teacher.pth'))
    work_dir = str(tmp_path / 'work')
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PORT=str(free_port()),
        OMP_NUM_THREADS='1',
        PYTHONPATH=REPO)
    result = subprocess.run([
        'bash', 'tools/dist_train.sh', DEMO_STUDENT, '2', '--teacher',
        DEMO_TEACHER, '--teacher-ckpt', ckpt, '--work-dir', work_dir,
        '--cfg-options', *cli_options(demo_options(shapes_root, iters=2))
    ],
                            cwd=REPO,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=900)
    log = _check(result)
    assert log.count('One-command distillation (cwd)') == 1
    assert log.count('wrote ' + osp.join(work_dir, 'iter_2_student.pth')) == 1
    names = sorted(
        p.name for p in (tmp_path / 'work').iterdir() if p.suffix == '.py')
    assert names == [
        'cwd_logits_pspnet_r18-w32_1xb8-1600it_shapes-128_pspnet_r18-w8_'
        '1xb8-600it_shapes-128.py',
        'cwd_logits_pspnet_r18-w32_1xb8-1600it_shapes-128_pspnet_r18-w8_'
        '1xb8-600it_shapes-128_full.py'
    ]


@pytest.mark.slow
def test_a_teacher_checkpoint_of_another_model_stops_before_training(
        tmp_path, shapes_root):
    """The teacher checkpoint loads strictly when the model is built:
    a checkpoint of another model fails with the missing and unexpected
    keys and the option that relaxes it, and nothing is trained."""
    wrong = random_teacher_checkpoint(str(tmp_path / 'det.pth'), DET_T)
    work_dir = str(tmp_path / 'work')
    result = run_python([
        'tools/train.py', DEMO_STUDENT, '--teacher', DEMO_TEACHER,
        '--teacher-ckpt', wrong, '--work-dir', work_dir, '--cfg-options',
        *cli_options(demo_options(shapes_root, iters=2))
    ])
    assert result.returncode != 0
    assert 'model.teacher_ckpt=' in result.stderr and 'det.pth' in \
        result.stderr
    assert 'missing keys' in result.stderr
    assert 'model.teacher_ckpt_strict=False' in result.stderr
    assert not glob.glob(osp.join(work_dir, '*.pth'))
