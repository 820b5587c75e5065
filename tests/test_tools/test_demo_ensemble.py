# Copyright (c) mmakd contributors. All rights reserved.
"""``tools/demo.py --task ensemble``: the teacher-ensemble study."""
import json
import math
import os.path as osp
import subprocess
import sys

import pytest

from helpers import REPO, load_tool


def _report(a_name, a, b_name, b, seeds, spi=0.1):
    runs = []
    for name, values, sec in ((a_name, a, spi), (b_name, b, 2 * spi)):
        for seed, _ in zip(seeds, values):
            runs.append(
                dict(
                    name=name,
                    seed=seed,
                    sec_per_iter=sec + seed * 1e-3,
                    wall_seconds=60.0,
                    command=['python', 'tools/train.py', name]))
    return dict(
        metric='coco/bbox_mAP',
        scale=100,
        seeds=seeds,
        values={
            a_name: a,
            b_name: b
        },
        runs=runs)


def test_summary_golden():
    from mmakd.apis import demo
    seeds = [100, 101, 102]
    cwd = [6.0, 6.5, 7.0]
    ens = [7.0, 7.5, 8.2]  # +1.0, +1.0, +1.2
    akd = [6.5, 6.9, 7.6]  # +0.5, +0.4, +0.6
    teachers = {
        s: dict(metric=0.08 + s / 100, wall_seconds=100.0 + s)
        for s in range(4)
    }
    summary = demo.ensemble_summary(
        _report('cwd', cwd, 'ensemble', ens, seeds),
        _report('cwd', cwd, 'akd', akd, seeds), teachers)
    gains = summary['gains']
    assert gains['ensemble_vs_cwd']['diff']['mean'] == pytest.approx(3.2 / 3)
    assert gains['akd_vs_cwd']['diff']['mean'] == pytest.approx(0.5)
    assert gains['akd_vs_ensemble']['diff']['mean'] == pytest.approx(0.5 -
                                                                     3.2 / 3)
    assert summary['recovered'] == pytest.approx(0.5 / (3.2 / 3))
    # diffs 1.0, 1.0, 1.2: sem 0.0667, t(2) 4.303 -> CI [0.78, 1.35] > 0
    lo, hi = gains['ensemble_vs_cwd']['ci95']
    assert lo == pytest.approx(
        3.2 / 3 - 4.302653 * 0.11547 / math.sqrt(3), abs=1e-3)
    assert summary['recovered_valid']
    assert summary['teacher_seconds'] == dict(one=100.0, all=406.0)
    assert summary['arms']['ensemble']['sec_per_iter'] == pytest.approx(
        [0.3, 0.301, 0.302])
    meta = dict(
        mode='full',
        data='generated shapes',
        machine='x',
        reports='work/cwd-vs-*/',
        total_seconds=600)
    md = demo.ensemble_markdown(summary, meta)
    assert '| 3 | 11.00 | 103 |' in md  # teacher seed 3, points
    assert '100 s for one teacher, 406 s for the four' in md
    assert '| CWD, mean of the 4 teachers | 7.57 ± 0.60 | 0.301 |' in md
    assert '| ensemble - CWD | +1.07 ± 0.12 |' in md
    assert 'recover: **47%**' in md
    # an ensemble that does not beat CWD leaves nothing to recover
    flat = [6.1, 6.4, 7.0]
    summary = demo.ensemble_summary(
        _report('cwd', cwd, 'ensemble', flat, seeds),
        _report('cwd', cwd, 'akd', akd, seeds), teachers)
    assert not summary['recovered_valid']
    assert 'no gain for the Avatars to recover' in demo.ensemble_markdown(
        summary, meta)
    with pytest.raises(ValueError, match='same CWD runs'):
        demo.ensemble_summary(
            _report('cwd', cwd, 'ensemble', ens, seeds),
            _report('cwd', flat, 'akd', akd, seeds), teachers)


@pytest.mark.slow
def test_demo_quick_ensemble(tmp_path):
    """Four teachers, then reproduce.py for CWD vs the ensemble and CWD vs
    AKD over two seeds; the CWD runs are shared, and a second call reuses
    every finished run."""
    work = tmp_path / 'ens'
    command = [
        sys.executable, 'tools/demo.py', '--task', 'ensemble', '--quick',
        '--work-dir',
        str(work)
    ]
    proc = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    for step in range(1, 9):
        assert f'[demo] [ensemble] {step}/8' in out
    summary = json.loads((work / 'ensemble.json').read_text())
    assert set(summary['teachers']) == {'0', '1', '2', '3'}
    assert summary['seeds'] == [100, 101]
    ens = json.loads((work / 'cwd-vs-ensemble' / 'reproduce.json').read_text())
    akd = json.loads((work / 'cwd-vs-akd' / 'reproduce.json').read_text())
    assert ens['values']['cwd'] == akd['values']['cwd']
    ckpts = [
        osp.join(
            str(work.relative_to(REPO))
            if str(work).startswith(REPO) else str(work), f'teacher_seed{s}')
        for s in range(4)
    ]
    for run in ens['runs']:
        line = ' '.join(run['command'])
        if run['name'] == 'ensemble':
            assert 'MultiTeacherDistill' in open(
                osp.join(REPO, run['config'])).read()
            for ckpt in ckpts:  # all four teachers, each once
                assert line.count(osp.basename(ckpt) + '/') == 1
        else:
            assert 'teacher_seed0/' in line and 'seed1/' not in line
    for name in ('cwd', 'ensemble', 'akd'):
        arm = summary['arms'][name]
        assert all(math.isfinite(v) for v in arm['values'])
        assert len(arm['sec_per_iter']) == 2
    logs = list((work / 'cwd-vs-ensemble' / 'logs').glob('ensemble_seed*'))
    assert logs
    assert 'Synthetic data' in (work / 'ensemble.md').read_text()
    # rerun: everything is read back, nothing trains
    again = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:]
    assert 'Iter(train)' not in again.stdout
    assert json.loads((work / 'ensemble.json').read_text())['arms'] == \
        summary['arms']


def test_run_options_keep_each_runs_length(tmp_path):
    """The configs as they are on the default data; elsewhere the data
    location, with the teachers' and the students' own lengths."""
    from mmakd.apis import demo
    default = osp.join(REPO, 'data', 'shapes') + '/'
    import os
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        assert demo.ensemble_options(False, default, 0) == ({}, {})
        other = str(tmp_path) + '/'
        student, teacher = demo.ensemble_options(False, other, 0)
        quick_student, quick_teacher = demo.ensemble_options(True, other, 0)
    finally:
        os.chdir(cwd)
    assert student['train_dataloader.dataset.data_root'] == other
    assert teacher['val_evaluator.ann_file'] == (
        other + 'annotations/instances_val.json')
    assert (student['train_cfg.max_iters'],
            teacher['train_cfg.max_iters']) == (400, 2000)
    assert teacher['param_scheduler.1.T_max'] == 2000
    assert (quick_student['train_cfg.max_iters'],
            quick_teacher['train_cfg.max_iters']) == (20, 30)
    assert 'randomness.seed' not in student and 'randomness.seed' not in \
        teacher


def test_ensemble_outside_the_repository_trains_on_its_own_data(
        tmp_path, monkeypatch):
    """Issue 24, point 8: ``tools/demo.py --task ensemble`` started in
    another folder generated ``./data/shapes`` there but trained on the
    configs' ``data/shapes/``, which ``tools/train.py`` (run in the
    repository) resolved to ``REPO/data/shapes``. Every run must get the
    data it generated, and the work directory it was given."""
    from mmakd.apis.demo import ensemble
    tool = load_tool('tools/demo.py', 'mmakd_tools_demo')
    calls = []

    class Stop(Exception):
        pass

    def generate(task, size, root, seed):
        calls.append(('generate', osp.abspath(root)))
        return 1, 1

    def train(name, config, work_dir, options=None, **kwargs):
        calls.append(('train', work_dir, dict(options or {})))
        raise Stop

    monkeypatch.setattr(ensemble, 'generate', generate)
    monkeypatch.setattr(ensemble, 'train', train)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv',
                        ['demo.py', '--task', 'ensemble', '--work-dir', 'ens'])
    with pytest.raises(Stop):
        tool.main()
    (_, generated), (_, work_dir, options) = calls
    assert generated == str(tmp_path / 'data' / 'shapes')
    assert osp.isabs(work_dir) and work_dir.startswith(str(tmp_path / 'ens'))
    for split in ('train', 'val', 'test'):
        assert options[f'{split}_dataloader.dataset.data_root'] == \
            generated + '/'
    assert options['val_evaluator.ann_file'].startswith(generated + '/')
    # the lengths of the configs themselves (the full run)
    assert options['train_cfg.max_iters'] == 2000
