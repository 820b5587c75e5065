# Copyright (c) mmakd contributors. All rights reserved.
"""benchmark_distill.py runs every case from a config and reports them."""
import json
import math
import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmakd.apis.benchmark import (build_cases, check_targets,
                                  ensemble_vs_avatars)
from helpers import REPO

TOOL = 'tools/analysis_tools/benchmark_distill.py'
CASES = ('student', 'base', 'ours', 'ours_fused', 'akd_k1', 'akd_k4', 'akd_k8',
         'akd_k4_loop', 'akd_k8_loop', 'akd_flip', 'akd_scales_flip',
         'akd_mc4', 'multi_teacher_k2', 'multi_teacher_k4')


def bench(config, tmp_path, *extra):
    out = tmp_path / 'bench.json'
    proc = subprocess.run([
        sys.executable, TOOL, config, '--iters', '2', '--warmup', '1',
        '--json',
        str(out), *extra
    ],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def check_cases(result):
    cases = result['cases']
    # the targets are the ratios of the measured cases
    targets = {(t['case'], t['what']): t for t in result['targets']}
    assert set(targets) == {('akd_k1', 'step'), ('akd_k4', 'step'),
                            ('akd_k4', 'extra peak memory'),
                            ('akd_k8', 'step'),
                            ('akd_k8', 'extra peak memory'), ('ours', 'step'),
                            ('ours_fused', 'step')}
    t = targets[('akd_k4', 'extra peak memory')]
    assert t['ratio'] == pytest.approx(cases['akd_k4']['peak_mem_mb'] /
                                       cases['base']['peak_mem_mb'])
    assert t['met'] == (t['ratio'] <= 1.05)
    # the fused-target targets are against ours (same algorithm, no Avatars)
    t = targets[('akd_k8', 'step')]
    assert t['reference'] == 'ours' and t['limit'] == 1.12
    assert t['ratio'] == pytest.approx(cases['akd_k8']['step_ms_median'] /
                                       cases['ours']['step_ms_median'])
    assert {(u['case'], u['reference'], u['limit'])
            for u in result['targets']
            if u['reference'] == 'ours'} == {('akd_k4', 'ours', 1.08),
                                             ('akd_k8', 'ours', 1.12),
                                             ('akd_k8', 'ours', 1.10)}
    for name in CASES:
        case = cases[name]
        assert case['n'] == 2
        assert case['step_ms_median'] > 0 and math.isfinite(
            case['step_ms_median'])
        assert case['peak_mem_mb'] >= 0
        assert case['ratio_to_base'] == pytest.approx(
            case['step_ms_median'] / cases['base']['step_ms_median'])
        assert case['mem_ratio_to_base'] == pytest.approx(
            case['peak_mem_mb'] / cases['base']['peak_mem_mb'])
    lower = cases['lower_bound']
    assert lower['step_ms_median'] == pytest.approx(
        cases['student']['step_ms_median'] +
        cases['teacher_forward']['step_ms_median'])
    # a distillation step does at least what the student's step does
    assert cases['base']['peak_mem_mb'] > 0
    # AKD's finiteness checks ride on the algorithm's one synchronisation
    assert cases['ours']['host_syncs'] >= 1
    for name in ('akd_k1', 'akd_k4', 'akd_k8', 'akd_k4_loop', 'akd_k8_loop',
                 'akd_flip', 'akd_scales_flip', 'akd_mc4', 'multi_teacher_k2',
                 'multi_teacher_k4'):
        assert cases[name]['host_syncs'] == cases['ours']['host_syncs']
    # K real teachers against K Avatars, from the same run
    (comparison, ) = result['ensemble_vs_avatars']
    assert comparison['k'] == 4
    assert comparison['ratio'] == pytest.approx(
        cases['multi_teacher_k4']['step_ms_median'] /
        cases['akd_k4']['step_ms_median'])


@pytest.mark.slow
def test_benchmark_segmentation_logits(tmp_path):
    """Logits are recorded in the head: MMRazor's base is
    SingleTeacherDistill; ours runs the teacher in tensor mode."""
    config = ('configs/akd/demo/akd_cwd_logits_pspnet-r18-w32_pspnet-r18-w8_'
              '1xb8-600it_shapes-128.py')
    # batch 2: PSPNet's 1x1 pyramid pooling needs more than one value per
    # channel for its BatchNorm in training mode
    md = tmp_path / 'bench.md'
    result, out = bench(config, tmp_path, '--size', '64', '64', '--batch-size',
                        '2', '--markdown', str(md))
    assert result['base'] == 'SingleTeacherDistill'
    assert result['teacher_forward'] == 'tensor'
    assert result['size'] == [64, 64] and result['batch_size'] == 2
    check_cases(result)
    for name in CASES + ('lower_bound', ):
        assert name in out  # the printed table
    table = md.read_text()
    base = result['cases']['base']
    assert f"| base | {base['step_ms_median']:.1f} |" in table
    for t in result['targets']:
        assert (f"| {t['case']} / {t['reference']}, {t['what']} | "
                f"{t['ratio']:.3f} |" in table)
    assert 'SingleTeacherDistill' in table and TOOL in table
    ratio = result['ensemble_vs_avatars'][0]['ratio']
    assert f'multi_teacher_k4 / akd_k4 = {ratio:.3f}' in table


def test_check_targets_golden():
    cases = dict(
        base=dict(step_ms_median=100.0, peak_mem_mb=200.0),
        ours=dict(step_ms_median=90.0, peak_mem_mb=150.0),
        akd_k1=dict(step_ms_median=101.0, peak_mem_mb=150.0),
        akd_k4=dict(step_ms_median=111.0, peak_mem_mb=209.0))
    got = {
        (t['case'], t['what']): (t['ratio'], t['met'])
        for t in check_targets(cases) if t['reference'] == 'base'
    }
    assert got[('akd_k1', 'step')] == (pytest.approx(1.01), True)
    assert got[('akd_k4', 'step')] == (pytest.approx(1.11), False)
    assert got[('akd_k4', 'extra peak memory')] == (pytest.approx(1.045), True)
    # fused Avatar targets against ours: 111 / 90
    got_ours = {
        (t['case'], t['reference'], t['what']): (t['ratio'], t['met'])
        for t in check_targets(cases)
    }
    assert got_ours[('akd_k4', 'ours', 'step')] == (pytest.approx(111 / 90),
                                                    False)
    assert not any(case == 'akd_k8' for case, _, _ in got_ours)
    # 0.9: 1.11x faster than SingleTeacherDistill
    assert got[('ours', 'step')] == (pytest.approx(0.9), True)

    def ours(ms, base='SingleTeacherDistill'):
        cases['ours']['step_ms_median'] = ms
        return [(t['ratio'], t['met']) for t in check_targets(cases, base)
                if t['case'] == 'ours']

    assert ours(93.0) == [(pytest.approx(0.93), True)]  # 1.075x faster
    assert ours(94.0) == [(pytest.approx(0.94), False)]  # only 1.064x
    # FpnTeacherDistill runs the same teacher forward: not slower (1% noise)
    assert ours(100.5, 'FpnTeacherDistill') == [(pytest.approx(1.005), True)]
    assert ours(102.0, 'FpnTeacherDistill') == [(pytest.approx(1.02), False)]
    # a case not measured gives no target
    del cases['akd_k4']
    assert {t['case'] for t in check_targets(cases)} == {'akd_k1', 'ours'}


def test_bad_arguments_are_refused():
    proc = subprocess.run([sys.executable, TOOL, 'x.py', '--iters', '0'],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 2 and '--iters must be >= 1' in proc.stderr


@pytest.mark.slow
def test_benchmark_detection_fpn(tmp_path):
    """FPN features only: the base is FpnTeacherDistill."""
    config = 'configs/akd/mmdet/cwd/cwd_fpn_retinanet-r101_retinanet-r50_' \
        '8xb2-2x_coco.py'
    # Two images: RetinaNet's P7 is 1x1 at this size, and normalize='both'
    # needs more than one value per channel to standardise.
    result, _ = bench(config, tmp_path, '--size', '64', '96', '--batch-size',
                      '2')
    assert result['base'] == 'FpnTeacherDistill'
    assert result['teacher_forward'] == 'feat'
    check_cases(result)


def test_ensemble_cases_are_real_ensembles_of_the_teacher():
    """multi_teacher_kK holds K separate copies of the config's teacher,
    with the config's distiller; the comparison divides K teachers' step
    by K Avatars' step."""
    from mmakd.models import MultiTeacherDistill
    from mmakd.utils import load_config
    cfg = load_config('configs/akd/demo/cwd_fpn_retinanet-r18-w32_'
                      'retinanet-r18-w8_1xb8-400it_shapes-128.py')
    cases, teacher, *_ = build_cases(cfg, 'cpu', (64, 64),
                                     ['multi_teacher_k2', 'multi_teacher_k4'])
    for k in (2, 4):
        model = cases[f'multi_teacher_k{k}'][0]
        assert isinstance(model, MultiTeacherDistill)
        assert len(model.teachers) == k
        assert len({id(t) for t in model.teachers}) == k
        assert type(model.distiller).__name__ == 'ConfigurableDistiller'
        for t in model.teachers:
            for name, value in teacher.state_dict().items():
                assert torch.equal(t.state_dict()[name], value), name
    got = ensemble_vs_avatars(
        dict(
            akd_k4=dict(step_ms_median=110.0),
            multi_teacher_k4=dict(step_ms_median=264.0),
            multi_teacher_k2=dict(step_ms_median=180.0)))
    assert got == [
        dict(
            k=4,
            ensemble='multi_teacher_k4',
            avatars='akd_k4',
            ratio=pytest.approx(2.4))
    ]


def test_loop_cases_loop_and_akd_cases_fuse():
    """akd_kK_loop is the same algorithm as akd_kK with the per-Avatar
    loop (fuse=False); akd_kK fuses every CWD level (the default)."""
    from mmakd.utils import load_config
    cfg = load_config('configs/akd/demo/cwd_fpn_retinanet-r18-w32_'
                      'retinanet-r18-w8_1xb8-400it_shapes-128.py')
    cases, *_ = build_cases(cfg, 'cpu', (64, 64), ['akd_k4', 'akd_k4_loop'])
    fused = cases['akd_k4'][0].distiller
    looped = cases['akd_k4_loop'][0].distiller
    assert fused.num_avatars == looped.num_avatars == 4
    assert fused.fuse == 'auto' and looped.fuse is False
    assert all(f is not None for f in fused.fusions.values())
    assert all(f is None for f in looped.fusions.values())
    assert set(fused.fusions) == set(
        looped.fusions) == {f'loss_cwd_fpn{i}'
                            for i in range(3)}


def test_run_benchmark_times_and_compares_the_cases_it_is_given():
    """The timing loop in process, on the small demo segmentor and four
    cases (the end-to-end tool run on every case is `slow`): each case is
    timed ``iters`` times, its ratios are those of the measured medians,
    and the targets of the cases given are checked."""
    from mmakd.apis.benchmark import format_table, markdown, run_benchmark
    config = ('configs/akd/demo/akd_cwd_logits_pspnet-r18-w32_pspnet-r18-w8_'
              '1xb8-600it_shapes-128.py')
    result = run_benchmark(
        osp.join(REPO, config), ['student', 'base', 'ours', 'akd_k4'],
        iters=2,
        warmup=1,
        size=(32, 32),
        mem_steps=1,
        command='bench',
        progress=False)
    cases = result['cases']
    assert set(cases) == {
        'student', 'base', 'ours', 'akd_k4', 'teacher_forward', 'lower_bound'
    }
    for name in ('student', 'base', 'ours', 'akd_k4'):
        assert cases[name]['n'] == 2 and cases[name]['step_ms_median'] > 0
        assert cases[name]['peak_mem_mb'] >= 0
        assert cases[name]['ratio_to_base'] == pytest.approx(
            cases[name]['step_ms_median'] / cases['base']['step_ms_median'])
    assert cases['lower_bound']['step_ms_median'] == pytest.approx(
        cases['student']['step_ms_median'] +
        cases['teacher_forward']['step_ms_median'])
    assert cases['akd_k4']['host_syncs'] == cases['ours']['host_syncs'] >= 1
    assert {(t['case'], t['what'])
            for t in result['targets']} == {('akd_k4', 'step'),
                                            ('akd_k4', 'extra peak memory'),
                                            ('ours', 'step')}
    assert result['base'] == 'SingleTeacherDistill'
    assert result['command'] == 'bench' and result['size'] == [32, 32]
    assert 'akd_k4' in format_table(result) and '| ours |' in markdown(result)
