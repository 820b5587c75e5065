# Copyright (c) mmakd contributors. All rights reserved.
"""``python -m mmakd.utils.collect_env``: the stack, for bug reports."""
import sys

import mmcv
import mmdet
import mmengine
import mmpretrain
import mmrazor
import mmseg
import torch

import mmakd
from mmakd import compat
from mmakd.utils.collect_env import collect_env, mmcv_ops
from helpers import run_python


def test_collect_env_module_prints_the_stack():
    result = run_python(['-m', 'mmakd.utils.collect_env'])
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(
        line.split(': ', 1) for line in result.stdout.splitlines()
        if ': ' in line and not line.startswith(' '))
    assert lines['PyTorch'] == torch.__version__
    assert lines['PyTorch CUDA'] == (torch.version.cuda or 'none (CPU build)')
    assert lines['Python'] == sys.version.replace('\n', '')
    expected = {
        'MMCV': mmcv.__version__,
        'MMEngine': mmengine.__version__,
        'MMDetection': mmdet.__version__,
        'MMSegmentation': mmseg.__version__,
        'MMRazor': mmrazor.__version__,
        'MMPretrain': mmpretrain.__version__,
    }
    for name, version in expected.items():
        assert lines[name] == version, name
    assert lines['mmakd'].split('+')[0] == mmakd.__version__
    # mmcv's compiled ops load in this stack (the tests need them).
    assert lines['MMCV ops'].startswith('compiled ')
    # What import mmakd changed, as the in-process report says.
    report = compat.apply()
    assert lines['mmakd.compat fuser helpers back-ported'] == (', '.join(
        report.fuser_helpers) or 'none')
    assert lines['mmakd.compat weights_only allow-list'] == (
        f'{len(report.safe_globals)} names' if report.safe_globals else 'none')
    assert lines['mmakd.compat configs (mmakd::)'].startswith(
        f"{mmakd.__file__[:-len('__init__.py')]}.mim/configs")


def test_mmcv_ops_reports_a_build_without_ops(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmcv._ext', None)
    assert mmcv_ops().startswith('not compiled (')


def test_collect_env_orders_mmdetections_keys_first():
    names = list(collect_env())
    assert names[:2] == ['sys.platform', 'Python']
    assert names.index('PyTorch') + 1 == names.index('PyTorch CUDA')
    assert names.index('MMEngine') < names.index('MMCV') < names.index('mmakd')
