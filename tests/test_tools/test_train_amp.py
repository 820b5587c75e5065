# Copyright (c) mmakd contributors. All rights reserved.
"""tools/train.py --amp: AmpOptimWrapper with CUDA, bfloat16
CPUAmpOptimWrapper without; an AKD run on CPU in bfloat16."""
import math
import os.path as osp

import pytest
from mmengine.config import Config

from mmakd.apis import read_scalars
from helpers import (DEMO_AKD, cli_options, demo_options, load_tool,
                     random_teacher_checkpoint, run_python)

NO_CUDA = dict(CUDA_VISIBLE_DEVICES='')


@pytest.fixture(scope='module')
def train_tool():
    """tools/train.py as a module."""
    return load_tool('tools/train.py', 'mmakd_tools_train')


@pytest.fixture(scope='module')
def enable_amp(train_tool):
    return train_tool.enable_amp


def _cfg(**wrapper) -> Config:
    wrapper.setdefault('optimizer', dict(type='SGD', lr=0.01))
    return Config(dict(optim_wrapper=wrapper))


@pytest.mark.parametrize('dtype,expected', [(None, 'float16'),
                                            ('float16', 'float16'),
                                            ('bfloat16', 'bfloat16')])
def test_cuda_gets_mmengine_amp(enable_amp, dtype, expected):
    cfg = _cfg(type='OptimWrapper')
    enable_amp(cfg, dtype, cuda=True)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == expected
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


@pytest.mark.parametrize('dtype', [None, 'bfloat16'])
def test_cpu_gets_bf16_cpu_amp(enable_amp, dtype):
    cfg = _cfg()  # type defaults to OptimWrapper
    enable_amp(cfg, dtype, cuda=False)
    assert cfg.optim_wrapper.type == 'mmrazor.CPUAmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert 'loss_scale' not in cfg.optim_wrapper


def test_cpu_refuses_float16_naming_the_key(enable_amp):
    with pytest.raises(ValueError, match=r"optim_wrapper.dtype='float16'"):
        enable_amp(_cfg(type='OptimWrapper'), 'float16', cuda=False)


def test_cpu_replaces_a_configured_amp_wrapper(enable_amp):
    cfg = _cfg(type='AmpOptimWrapper', loss_scale=512.0, dtype='float16')
    enable_amp(cfg, None, cuda=False)
    assert cfg.optim_wrapper.type == 'mmrazor.CPUAmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    assert 'loss_scale' not in cfg.optim_wrapper


def test_already_amp_keeps_its_dtype_unless_given(enable_amp):
    cfg = _cfg(type='AmpOptimWrapper', dtype='bfloat16')
    enable_amp(cfg, None, cuda=True)
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    enable_amp(cfg, 'float16', cuda=True)
    assert cfg.optim_wrapper.dtype == 'float16'


def test_every_wrapper_of_a_constructor(enable_amp):
    cfg = Config(
        dict(
            optim_wrapper=dict(
                constructor='mmrazor.SeparateOptimWrapperConstructor',
                architecture=dict(
                    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)),
                generator=dict(
                    type='OptimWrapper', optimizer=dict(type='Adam',
                                                        lr=1e-3)))))
    enable_amp(cfg, None, cuda=False)
    for key in ('architecture', 'generator'):
        assert cfg.optim_wrapper[key].type == 'mmrazor.CPUAmpOptimWrapper'


def test_other_wrappers_are_refused(enable_amp):
    with pytest.raises(ValueError, match='--amp needs optim_wrapper.type'):
        enable_amp(_cfg(type='MyWrapper'), None, cuda=False)


def test_amp_dtype_option(train_tool, monkeypatch, capsys):
    monkeypatch.setattr('sys.argv', ['train.py', 'c.py', '--amp'])
    assert train_tool.parse_args().amp_dtype is None
    monkeypatch.setattr(
        'sys.argv', ['train.py', 'c.py', '--amp', '--amp-dtype', 'bfloat16'])
    assert train_tool.parse_args().amp_dtype == 'bfloat16'
    monkeypatch.setattr('sys.argv',
                        ['train.py', 'c.py', '--amp-dtype', 'bfloat16'])
    with pytest.raises(SystemExit) as info:
        train_tool.parse_args()
    assert info.value.code == 2
    assert '--amp-dtype needs --amp' in capsys.readouterr().err


@pytest.mark.slow  # enable_amp's own test covers the error; this the CLI
def test_cli_float16_on_cpu_fails_before_building(tmp_path):
    result = run_python([
        'tools/train.py', DEMO_AKD, '--amp', '--amp-dtype', 'float16',
        '--work-dir',
        str(tmp_path / 'work')
    ], NO_CUDA)
    assert result.returncode != 0
    assert "ValueError: optim_wrapper.dtype='float16'" in result.stderr


@pytest.mark.slow
def test_cli_amp_trains_akd_on_cpu_in_bf16(tmp_path, shapes_root):
    """The demo AKD config (PSPNet-R18, CWD on logits, 4 Avatars), 2
    iterations on CPU with --amp: the bfloat16 wrapper is in the resolved
    config and every logged loss and Avatar weight is finite. (~35-45 s:
    bfloat16 convolutions are slower than float32 on CPUs without native
    bfloat16; add @pytest.mark.slow if it grows.)"""
    work_dir = str(tmp_path / 'work')
    teacher = random_teacher_checkpoint(str(tmp_path / 'teacher.pth'))
    options = demo_options(
        shapes_root,
        iters=2,
        **{
            'model.teacher_ckpt': teacher,
            'train_cfg.val_interval': 100,  # no validation: faster
        })
    result = run_python([
        'tools/train.py', DEMO_AKD, '--amp', '--work-dir', work_dir,
        '--cfg-options'
    ] + cli_options(options), NO_CUDA)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert '--amp without CUDA: bfloat16 autocast on CPU' in log

    dumped = Config.fromfile(osp.join(work_dir, osp.basename(DEMO_AKD)))
    assert dumped.optim_wrapper.type == 'mmrazor.CPUAmpOptimWrapper'
    assert dumped.optim_wrapper.dtype == 'bfloat16'

    records = [r for r in read_scalars(work_dir) if 'loss' in r]
    assert [r['iter'] for r in records] == [1, 2]
    for record in records:
        for key in ('loss', 'distill.loss_cwd', 'distill.akd.cwd.u',
                    'distill.akd.cwd.w0', 'distill.akd.cwd.w3'):
            assert math.isfinite(record[key]), (key, record)
        assert sum(record[f'distill.akd.cwd.w{k}'] for k in range(4)) == \
            pytest.approx(1.0, abs=1e-3)
    assert osp.isfile(osp.join(work_dir, 'iter_2.pth'))
