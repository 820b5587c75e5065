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
    section = guide[guide.index('## 9. Diagnose'):guide.index('## 10. ')]
    named = set(re.findall(r'(?<![\w-])(--[a-z][a-z-]+)', section))
    assert {'--checkpoint', '--fake-data', '--cfg-options'} <= named
    result = run_python([TOOL, '--help'])
    assert result.returncode == 0
    missing = sorted(o for o in named if o not in result.stdout)
    assert not missing, missing


@pytest.mark.slow
def test_offline_on_mmrazor_config_as_a_user_runs_it(tmp_path):
    """MMRazor's CWD RetinaNet config as shipped, --offline, an empty
    download cache and every download refused (a proxy that does not
    answer): it runs, downloads nothing, and the console, report.md and
    the JSON say which weights are random."""
    home = tmp_path / 'torch_home'
    home.mkdir()
    refuse = 'http://127.0.0.1:9'  # nothing listens on the discard port
    out_json, out_dir = str(tmp_path / 'r.json'), str(tmp_path / 'report')
    result = run_python([
        TOOL, 'mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_'
        '1x_coco.py', '--offline', '--fake-data', '--size', '128', '128',
        '--batch-size', '1', '--iters', '1', '--json', out_json, '--out-dir',
        out_dir
    ],
                        env=dict(
                            TORCH_HOME=str(home),
                            http_proxy=refuse,
                            https_proxy=refuse,
                            HTTP_PROXY=refuse,
                            HTTPS_PROXY=refuse,
                            no_proxy='',
                            NO_PROXY=''))
    assert result.returncode == 0, (
        result.stdout[-3000:] + result.stderr[-3000:])
    assert list(home.rglob('*')) == []
    with open(out_json) as f:
        report = json.load(f)
    assert report['offline'] is True
    random = {r['key']: r['module'] for r in report['random_weights']}
    assert random == {
        'model.teacher_ckpt': 'teacher',
        'model.teacher.pretrained': 'teacher',
        'model.teacher.backbone.init_cfg': 'teacher.backbone',
        'model.architecture.backbone.init_cfg': 'architecture.backbone'
    }
    assert [w['kind'] for w in report['warnings']
            ] == ['zero_loss', 'teacher_no_checkpoint']
    # RetinaNet's classifier bias prior ran: focal loss near 1, not 1000
    assert 0.5 < report['task_losses']['loss_cls']['value'] < 2
    assert '--offline: 4 downloaded (or missing) weight(s) left out' in \
        result.stdout
    assert ('architecture.backbone: model.architecture.backbone.init_cfg '
            '(in mmdet::retinanet/retinanet_r50_fpn_1x_coco.py) = Pretrained '
            'torchvision://resnet50') in result.stdout
    md = open(osp.join(out_dir, 'report.md')).read()
    assert '## Random weights (--offline)' in md
    assert ('| teacher.backbone | `model.teacher.backbone.init_cfg` (in '
            'mmdet::retinanet/retinanet_r101_fpn_2x_coco.py) | Pretrained '
            'torchvision://resnet101 |') in md


def test_offline_is_in_the_help():
    result = run_python([TOOL, '--help'])
    assert result.returncode == 0
    assert '--offline' in result.stdout
    assert "RetinaNet's classifier bias prior" in result.stdout
