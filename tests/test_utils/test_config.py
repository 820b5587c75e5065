# Copyright (c) mmakd contributors. All rights reserved.
"""``mmakd::`` config paths: registered with MMEngine by ``import mmakd``,
resolved from ``mmakd/.mim`` in a source checkout and an editable install
(the wheel is tested in tests/test_packaging.py)."""
import os.path as osp
import textwrap

import mmengine.config.config as mmengine_config
import pytest
from mmengine.config import Config

import mmakd
import mmakd.utils.config as config_module
from mmakd.utils import (fit_logger_interval, installed_package_path,
                         load_config, register_config_scope)
from helpers import AKD_RETINA, REPO, run_python, write_user_config

DEMO_STUDENT = 'akd/demo/pspnet_r18-w8_1xb8-600it_shapes-128.py'


def test_mim_folder_links_to_the_repository():
    mim = osp.join(REPO, 'mmakd', '.mim')
    for name in ('configs', 'tools', 'model-index.yml'):
        assert osp.islink(osp.join(mim, name)), name
        assert osp.samefile(osp.join(mim, name), osp.join(REPO, name))


def test_user_config_bases_an_mmakd_config(tmp_path):
    cfg = Config.fromfile(write_user_config(tmp_path))
    assert cfg.model.type == 'FlexibleTeacherDistill'
    assert cfg.model.distiller.type == 'AvatarDistiller'
    assert cfg.train_dataloader.batch_size == 4
    # The base came from the package's .mim folder.
    shipped = osp.join(
        osp.dirname(mmakd.__file__), '.mim', 'configs', AKD_RETINA)
    assert shipped in cfg.text


def test_load_config_accepts_mmakd_path_for_the_top_file():
    cfg = load_config(f'mmakd::{DEMO_STUDENT}')
    assert osp.samefile(cfg.filename, osp.join(REPO, 'configs', DEMO_STUDENT))
    with pytest.raises(FileNotFoundError, match='no_such.py'):
        load_config('mmakd::akd/no_such.py')


def test_installed_package_path_falls_back_to_the_import_system(monkeypatch):
    """An editable install: MMEngine answers site-packages/mmakd, which
    does not exist; the import system knows the source folder."""
    missing = '/nonexistent/site-packages/mmakd'
    monkeypatch.setattr(config_module, 'get_installed_path',
                        lambda package: missing)
    assert installed_package_path('mmakd') == osp.dirname(mmakd.__file__)


def test_installed_package_path_keeps_mmengines_answer_when_it_exists(
        monkeypatch, tmp_path):
    monkeypatch.setattr(config_module, 'get_installed_path',
                        lambda package: str(tmp_path))
    assert installed_package_path('mmakd') == str(tmp_path)


def test_register_config_scope_is_idempotent():
    assert register_config_scope() == []  # import mmakd did it
    assert mmengine_config.get_installed_path is installed_package_path


def test_mmengine_alone_cannot_resolve_mmakd_paths(tmp_path):
    """Why ``import mmakd`` must come first: MMEngine only knows
    OpenMMLab's own packages."""
    code = textwrap.dedent(f"""
        from mmengine.config import Config
        try:
            Config.fromfile({write_user_config(tmp_path)!r})
        except AssertionError as error:
            print('REFUSED', error)
        import mmakd
        cfg = Config.fromfile({write_user_config(tmp_path)!r})
        print('RESOLVED', cfg.model.distiller.type)
    """)
    result = run_python(['-c', code], cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'REFUSED mmengine does not support to load mmakd config' in \
        result.stdout
    assert 'RESOLVED AvatarDistiller' in result.stdout


@pytest.mark.parametrize('max_iters, interval, expected', [(5, 20, 5),
                                                           (20, 20, 20),
                                                           (400, 20, 20),
                                                           (3, None, 3),
                                                           (30, None, 10)])
def test_fit_logger_interval_on_iteration_runs(max_iters, interval, expected):
    logger = dict(type='LoggerHook')
    if interval is not None:
        logger['interval'] = interval
    cfg = Config(
        dict(
            train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters),
            default_hooks=dict(logger=logger)))
    note = fit_logger_interval(cfg)
    assert cfg.default_hooks.logger.get('interval', 10) == expected
    assert (note is None) == (expected == (interval or 10))
    if note:
        assert f'train_cfg.max_iters={max_iters}' in note


def test_fit_logger_interval_leaves_epoch_runs_alone():
    cfg = Config(
        dict(
            train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=1),
            default_hooks=dict(logger=dict(type='LoggerHook', interval=50))))
    assert fit_logger_interval(cfg) is None
    assert cfg.default_hooks.logger.interval == 50


def test_keep_config_file_moves_the_dump_of_a_config_in_its_work_dir(tmp_path):
    from mmakd.utils import keep_config_file
    path = tmp_path / 'generated.py'
    path.write_text('# readable\na = dict(b=1)\n')
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(tmp_path)
    kept, note = keep_config_file(cfg)
    assert kept.filename == str(tmp_path / 'generated_full.py')
    assert kept.a == dict(b=1) and kept.work_dir == str(tmp_path)
    assert 'generated_full.py' in note
    kept.dump(osp.join(kept.work_dir, osp.basename(kept.filename)))  # Runner
    assert path.read_text().startswith('# readable')

    cfg.work_dir = str(tmp_path / 'elsewhere')  # not there yet, or another
    assert keep_config_file(cfg) == (cfg, None)


def test_set_work_dir_prefers_the_command_line_then_the_config(tmp_path):
    from mmakd.utils import set_work_dir
    path = tmp_path / 'akd_x_y.py'
    path.write_text('a = 1\n')
    cfg = Config.fromfile(str(path))
    set_work_dir(cfg)
    assert cfg.work_dir == osp.join('./work_dirs', 'akd_x_y')
    cfg.work_dir = 'from_config'
    set_work_dir(cfg)
    assert cfg.work_dir == 'from_config'
    set_work_dir(cfg, 'from_cli')
    assert cfg.work_dir == 'from_cli'
