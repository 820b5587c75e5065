# Copyright (c) mmakd contributors. All rights reserved.
"""The demo's quick mode and the reproduction harness, run as a user would."""
import json
import math
import os.path as osp
import subprocess
import sys
import tempfile

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = 'configs/akd/demo'
STUDENT = f'{DEMO}/pspnet_r18-w8_1xb8-600it_shapes-128.py'


def on_disk(path):
    """A path of a results file (``<tmp>/...`` outside the repository) as
    it lies on this machine."""
    if path.startswith('<tmp>/'):
        return osp.join(tempfile.gettempdir(), path[len('<tmp>/'):])
    return osp.join(REPO, path)


def run(args, timeout):
    proc = subprocess.run(
        [sys.executable] + args,
        cwd=REPO,
        timeout=timeout,
        capture_output=True,
        text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_demo_quick_writes_the_tables_and_curves(tmp_path):
    work = tmp_path / 'demo'
    out = run(
        ['tools/demo.py', '--task', 'seg', '--quick', '--work-dir',
         str(work)], 600)
    for step in ('1/5', '2/5', '3/5', '4/5', '5/5'):
        assert f'[demo] [seg] {step}' in out  # progress is shown
    assert 'Iter(train)' in out
    results = json.loads((work / 'results.json').read_text())
    assert {'teacher', 'student', 'cwd', 'akd'} <= set(results)
    assert results['metric'] == 'mIoU'
    assert results['meta']['data'] == 'synthetic shapes'
    for name in ('teacher', 'student', 'cwd', 'akd'):
        run_ = results[name]
        value = run_['metrics']['mIoU']
        assert math.isfinite(value) and 0 <= value <= 100, (name, value)
        assert run_['sec_per_iter'] > 0 and run_['wall_seconds'] > 0
        assert osp.isfile(on_disk(run_['checkpoint']))
    # the distillation runs loaded the trained teacher, not a random one
    for name in ('cwd', 'akd'):
        assert results['teacher']['checkpoint'] in ' '.join(
            results[name]['command'])
    # AKD logged its Avatar weights; CWD did not
    akd_keys = set().union(*[r.keys() for r in results['akd']['train_log']])
    cwd_keys = set().union(*[r.keys() for r in results['cwd']['train_log']])
    assert any(k.startswith('distill.akd.') for k in akd_keys)
    assert not any(k.startswith('distill.akd.') for k in cwd_keys)
    table = (work / 'results.md').read_text()
    assert 'Synthetic data' in table and '| student + AKD' in table
    png = (work / 'curves.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10000


@pytest.mark.slow
def test_demo_quick_detection_on_coco_format(tmp_path):
    """Detection: RetinaNet teacher, student alone, CWD on the FPN levels,
    AKD in the reference and the recommended setting, scored by
    MMDetection's CocoMetric on the shapes data in COCO format."""
    work = tmp_path / 'det'
    out = run(
        ['tools/demo.py', '--task', 'det', '--quick', '--work-dir',
         str(work)], 600)
    for step in range(1, 7):
        assert f'[demo] [det] {step}/6' in out
    assert 'Iter(train)' in out and 'coco/bbox_mAP' in out
    results = json.loads((work / 'results.json').read_text())
    names = ('teacher', 'student', 'cwd', 'akd_reference', 'akd')
    assert set(names) <= set(results)
    assert results['metric'] == 'coco/bbox_mAP'
    assert results['meta']['data'] == 'synthetic shapes'
    for name in names:
        run_ = results[name]
        value = run_['metrics']['coco/bbox_mAP']  # CocoMetric: a fraction
        assert math.isfinite(value) and 0 <= value <= 1, (name, value)
        assert 'coco/bbox_mAP_50' in run_['metrics']
        assert run_['sec_per_iter'] > 0 and run_['wall_seconds'] > 0
        assert osp.isfile(on_disk(run_['checkpoint']))
        # the evaluator scored the generated val split, not the default path
        ann = str(work / 'data' / 'annotations' / 'instances_val.json')
        shown = [
            c.partition('=')[2] for c in run_['command']
            if c.startswith('val_evaluator.ann_file=')
        ]
        assert [on_disk(c) for c in shown] == [ann]
        # commands as typed in the repository root
        assert run_['command'][:2] == ['python', 'tools/train.py']
        assert run_['config'].startswith('configs/akd/demo/')
    for name in ('cwd', 'akd_reference', 'akd'):
        assert (f"model.teacher_ckpt={results['teacher']['checkpoint']}"
                in results[name]['command'])
    keys = {
        n: set().union(*[r.keys() for r in results[n]['train_log']])
        for n in names
    }
    # CWD on each of the three FPN levels, Avatars only in the AKD runs:
    # one weight per level for the reference, four for the recommended one
    for name in ('cwd', 'akd_reference', 'akd'):
        assert {f'distill.loss_cwd_fpn{i}' for i in range(3)} <= keys[name]
    assert not any('akd.' in k for k in keys['cwd'])
    assert 'distill.akd.cwd_fpn0.w0' in keys['akd_reference']
    assert 'distill.akd.cwd_fpn0.w1' not in keys['akd_reference']
    assert 'distill.akd.cwd_fpn2.w3' in keys['akd']
    table = (work / 'results.md').read_text()
    assert 'Synthetic data' in table and 'not COCO' in table
    assert '| bbox mAP (val) |' in table
    # the table shows CocoMetric's fraction in points
    row = next(line for line in table.splitlines()
               if line.startswith('| teacher |'))
    shown = float(row.split('|')[2])
    assert shown == pytest.approx(
        100 * results['teacher']['metrics']['coco/bbox_mAP'], abs=0.006)
    assert '- akd: `python tools/train.py configs/akd/demo/akd_cwd_fpn_' in (
        table)
    png = (work / 'curves.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 10000


@pytest.mark.slow
def test_demo_quick_mgkd_runs_both_stages(tmp_path):
    """Multi-granularity distillation in the demo: teacher, stage 1, student,
    KD, KD + MGKD, each loading the checkpoints of the runs before it."""
    work = tmp_path / 'mgkd'
    out = run([
        'tools/demo.py', '--task', 'mgkd', '--quick', '--work-dir',
        str(work)
    ], 600)
    for step in ('1/6', '2/6', '3/6', '4/6', '5/6', '6/6'):
        assert f'[demo] [mgkd] {step}' in out
    results = json.loads((work / 'results.json').read_text())
    assert results['metric'] == 'accuracy/top1'
    assert results['meta']['data'] == 'synthetic CIFAR-like'
    names = ('teacher', 'analyser', 'student', 'kd', 'mgkd')
    for name in names:
        value = results[name]['metrics']['accuracy/top1']
        assert math.isfinite(value) and 0 <= value <= 100, (name, value)
    teacher = results['teacher']['checkpoint']
    for name in ('analyser', 'kd', 'mgkd'):
        assert f'model.teacher_ckpt={teacher}' in results[name]['command']
    assert (
        'model.distiller.connectors.t_tubes.checkpoint='
        f"{results['analyser']['checkpoint']}") in results['mgkd']['command']
    # only the MGKD run logged the granularity and stable-excitation losses
    keys = {
        n: set().union(*[r.keys() for r in results[n]['train_log']])
        for n in names
    }
    assert {'distill.loss_stable', 'distill.loss_narrow',
            'distill.loss_wide'} <= keys['mgkd']
    assert not any(k.startswith('distill.loss_narrow') for k in keys['kd'])
    table = (work / 'results.md').read_text()
    assert 'Synthetic data' in table and 'not CIFAR-100' in table
    assert '| student + KD + MGKD' in table
    assert (work / 'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.slow
def test_reproduce_reports_paired_difference(tmp_path):
    from mmakd.datasets.shapes import generate_shapes
    data = tmp_path / 'shapes'
    generate_shapes(str(data), num_train=8, num_val=4, size=128, seed=0)
    work = tmp_path / 'rep'
    report_dir = tmp_path / 'report'
    root = str(data) + '/'
    options = [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'param_scheduler.0.end=2', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1'
    ]
    out = run(
        [
            'tools/reproduce.py',
            STUDENT,
            STUDENT,
            '--seeds',
            '2',
            '--names',
            'a',
            'b',
            '--work-dir',
            str(work),
            '--report-dir',
            str(report_dir),
            '--note',
            'synthetic shapes data',
            # B only: a setting that leaves the runs identical
            '--options-b',
            'default_hooks.checkpoint.max_keep_ckpts=1',
            '--cfg-options'
        ] + options,
        600)
    assert '[reproduce] seed 1 (2/2): training b' in out
    report = json.loads((report_dir / 'reproduce.json').read_text())
    assert not (work / 'reproduce.json').exists()
    assert report['configs'] == [STUDENT, STUDENT]
    assert report['scale'] == 1  # mIoU is already in points
    assert report['metric'] == 'mIoU' and report['seeds'] == [0, 1]
    a, b = report['values']['a'], report['values']['b']
    # the same config and seed train the same model: difference exactly 0
    assert a == b and len(a) == 2
    assert report['summary']['diff']['mean'] == 0
    # different seeds give different runs
    losses = {
        (r['name'], r['seed']):
        [x['loss'] for x in r['train_log'] if 'loss' in x]
        for r in report['runs']
    }
    assert losses[('a', 0)] == losses[('b', 0)]
    assert losses[('a', 0)] != losses[('a', 1)]
    commands = {(r['name'], r['seed']): r['command'] for r in report['runs']}
    assert 'default_hooks.checkpoint.max_keep_ckpts=1' in commands[('b', 1)]
    assert 'default_hooks.checkpoint.max_keep_ckpts=1' not in commands[('a',
                                                                        1)]
    for r in report['runs']:
        assert r['command'][:3] == ['python', 'tools/train.py', STUDENT]
    md = (report_dir / 'reproduce.md').read_text()
    assert 'mean ± std' in md and 'synthetic shapes data' in md
    assert osp.isdir(work / 'a_seed0') and osp.isdir(work / 'b_seed1')
    # every run's log and config beside the report, no checkpoints
    kept = sorted(p.name for p in (report_dir / 'logs').iterdir())
    assert kept == [
        f'{n}_seed{s}{ext}' for n in 'ab' for s in (0, 1)
        for ext in ('-config.py.txt', '.log')
    ]
    log = (report_dir / 'logs' / 'b_seed1.log').read_text()
    assert 'Iter(train) [2/2]' in log and 'mIoU' in log

    # one more seed: the finished runs are read back, only seed 2 trains
    def again(seeds, extra=()):
        return run([
            'tools/reproduce.py', STUDENT, STUDENT, '--seeds',
            str(seeds), '--names', 'a', 'b', '--work-dir',
            str(work), '--report-dir',
            str(report_dir), '--reuse', '--options-b',
            'default_hooks.checkpoint.max_keep_ckpts=1', '--cfg-options'
        ] + options + list(extra), 600)

    out = again(3)
    assert out.count('reusing the finished run') == 4
    assert '[reproduce] seed 2 (3/3): training b' in out
    more = json.loads((report_dir / 'reproduce.json').read_text())
    assert more['seeds'] == [0, 1, 2]
    assert more['values']['a'][:2] == a and more['values']['b'][:2] == b
    assert (work / 'a_seed2' / 'mmakd_run.json').is_file()
    # a changed command is not a finished run of it: seed 0 trains again
    out = again(1, ['default_hooks.logger.interval=2'])
    assert 'reusing' not in out


def test_reproduce_reports_coco_metrics_in_points():
    """CocoMetric's fractions are reported x100, so that "a 95% CI narrower
    than 1 point" means the same for bbox mAP as for mIoU."""
    from helpers import load_tool
    tool = load_tool('tools/reproduce.py', 'mmakd_tools_reproduce')
    assert tool.metric_scale('coco/bbox_mAP') == 100
    assert tool.metric_scale('mIoU') == 1
    assert tool.metric_scale('accuracy/top1') == 1
    assert tool.metric_scale('coco/bbox_mAP', 1.0) == 1
    metrics = {'coco/bbox_mAP': 0.25, 'coco/bbox_mAP_50': 0.5}
    assert tool.pick_metric(metrics) == 'coco/bbox_mAP'
    with pytest.raises(KeyError, match='mIoU'):
        tool.pick_metric(metrics, 'mIoU')
