# Copyright (c) mmakd contributors. All rights reserved.
"""tools/analysis_tools/analyze_distill.py as a user runs it: on the real
training dataloader of the demo's AKD config (an ``mmakd::`` path), with
the console table, ``--json`` and ``--out-dir``."""
import json
import os.path as osp

import pytest

from helpers import (cli_options, png_size, random_teacher_checkpoint,
                     run_python)

TOOL = 'tools/analysis_tools/analyze_distill.py'
AKD = ('mmakd::akd/demo/akd_cwd_logits_pspnet-r18-w32_pspnet-r18-w8_'
       '1xb8-600it_shapes-128.py')


@pytest.fixture(scope='module')
def akd_report(tmp_path_factory, shapes_root):
    """The demo's AKD config as shipped, on batches of its own training
    dataloader (the test's shapes dataset)."""
    tmp = tmp_path_factory.mktemp('analyze')
    teacher = random_teacher_checkpoint(str(tmp / 'teacher.pth'))
    options = {
        'model.teacher_ckpt': teacher,
        'train_dataloader.dataset.data_root': shapes_root
    }
    out_json, out_dir = str(tmp / 'report.json'), str(tmp / 'report')
    result = run_python([
        TOOL, AKD, '--iters', '2', '--batch-size', '2', '--json', out_json,
        '--out-dir', out_dir, '--cfg-options'
    ] + cli_options(options))
    assert result.returncode == 0, (
        result.stdout[-3000:] + result.stderr[-3000:])
    with open(out_json) as f:
        report = json.load(f)
    return dict(report=report, stdout=result.stdout, out_dir=out_dir)


def test_json_holds_what_the_issue_names(akd_report):
    report = akd_report['report']
    assert report['data'] == 'train_dataloader'
    assert report['batch_size'] == 2 and report['iters'] == 2
    assert report['config'] == AKD
    assert report['command'].startswith(TOOL)  # relative to the clone
    loss = report['losses']['loss_cwd']
    for key in ('value', 'grad_norm', 'grad_share', 'student', 'teacher'):
        assert key in loss
    assert loss['student']['shape'] == [2, 7, 16, 16]  # 128x128 / 8
    assert loss['teacher']['shape'] == [2, 7, 16, 16]
    assert len(loss['akd']['weights']) == 4
    task = report['task_losses']['decode.loss_ce']
    assert set(task) >= {'value', 'grad_norm', 'grad_share'}
    assert loss['grad_share'] + task['grad_share'] == pytest.approx(1.0)
    # as shipped the teacher runs in training mode: PSPNet's Dropout2d
    # perturbs the "vanilla" logits, and that is the only warning
    assert report['warnings'] == [
        dict(
            loss=None,
            kind='teacher_dropout_active',
            message=report['warnings'][0]['message'])
    ]
    assert 'model.teacher_eval=True' in report['warnings'][0]['message']
    assert report['teacher']['active_dropout'] == ['decode_head.dropout']


def test_console_markdown_and_chart(akd_report):
    report, out = akd_report['report'], akd_report['stdout']
    loss = report['losses']['loss_cwd']
    assert '[analyze] step 2/2' in out  # progress
    row = [line for line in out.splitlines() if line.startswith('loss_cwd')]
    assert len(row) == 1 and f'{loss["value"]:.4g}' in row[0]
    assert f'{loss["grad_share"]:.1%}' in row[0]
    assert 'AKD loss_cwd: weights [' in out
    assert '[teacher_dropout_active]' in out
    md = open(osp.join(akd_report['out_dir'], 'report.md')).read()
    assert (f'| loss_cwd | ChannelWiseDivergence | {loss["value"]:.4g} | '
            f'{loss["grad_norm"]:.4g} | {loss["grad_share"]:.1%} |') in md
    assert '![gradient shares](grad_shares.png)' in md
    assert '**teacher_dropout_active**' in md
    width, height = png_size(
        osp.join(akd_report['out_dir'], 'grad_shares.png'))
    assert width == 800 and height >= 250  # two bars: loss_cwd and the CE


def test_bad_arguments_are_refused():
    result = run_python([TOOL, AKD, '--size', '64', '64'])
    assert result.returncode == 2
    assert '--size sets the size of generated batches; add --fake-data' in \
        result.stderr
    result = run_python([TOOL, AKD, '--iters', '0'])
    assert result.returncode == 2 and '--iters must be >= 1' in result.stderr


def test_user_guide_names_only_real_options(repo_root):
    """Every option the user guide's section on the tool names exists."""
    import re
    with open(osp.join(repo_root, 'docs', 'user_guide.md')) as f:
        guide = f.read()
    section = guide[guide.index('## 9. Diagnose'):]
    named = set(re.findall(r'(?<![\w-])(--[a-z][a-z-]+)', section))
    assert {'--checkpoint', '--fake-data', '--cfg-options'} <= named
    result = run_python([TOOL, '--help'])
    assert result.returncode == 0
    missing = sorted(o for o in named if o not in result.stdout)
    assert not missing, missing
