# Copyright (c) mmakd contributors. All rights reserved.
"""mmakd as a package: a wheel ships configs, tools and model-index.yml
under ``mmakd/.mim``, and installed without the clone it resolves
``mmakd::`` configs, trains one and tests it through MIM."""
import glob
import json
import os.path as osp
import shutil
import stat
import subprocess
import sys
import textwrap
import zipfile

import pytest
from mmengine.config import Config

from helpers import (AKD_RETINA, DEMO_AKD, DEMO_STUDENT, DEMO_TEACHER, REPO,
                     cli_options, demo_options, random_teacher_checkpoint,
                     run_python, write_user_config)

#: Left out of the copy the wheel is built from (large or machine-local).
NOT_BUILT_FROM = ('.venv', '.venv-torch*', '.cache', '.git', 'work_dirs',
                  'data', 'build', 'dist', '*.egg-info', '__pycache__',
                  '*.pyc', '.pytest_cache', 'docs')


def _pip(*args: str, cwd: str) -> None:
    result = subprocess.run([sys.executable, '-m', 'pip', *args],
                            cwd=cwd,
                            capture_output=True,
                            text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def _repo_files(folder: str):
    """Files under the repository's ``folder`` (no caches)."""
    root = osp.join(REPO, folder)
    return sorted(
        osp.relpath(p, REPO)
        for p in glob.glob(osp.join(root, '**', '*'), recursive=True)
        if osp.isfile(p) and '__pycache__' not in p)


@pytest.fixture(scope='module')
def wheel(tmp_path_factory) -> str:
    """``pip wheel --no-deps`` of a copy of the source tree (so the
    build's ``build/`` and ``*.egg-info`` stay out of the checkout)."""
    tmp = tmp_path_factory.mktemp('wheel')
    source = str(tmp / 'src')
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(*NOT_BUILT_FROM))
    out = str(tmp / 'dist')
    _pip(
        'wheel',
        '--no-deps',
        '--no-build-isolation',
        '-w',
        out,
        source,
        cwd=str(tmp))
    (path, ) = glob.glob(osp.join(out, 'mmakd-*.whl'))
    return path


@pytest.fixture(scope='module')
def target(wheel, tmp_path_factory) -> str:
    """The wheel installed into a throwaway folder (``pip --target``)."""
    folder = str(tmp_path_factory.mktemp('site'))
    _pip(
        'install',
        '--no-deps',
        '--no-build-isolation',
        '--target',
        folder,
        wheel,
        cwd=folder)
    return folder


def _run_installed(args, target: str, cwd: str) -> str:
    """Run ``python ARGS`` from ``cwd`` (not the clone) with only the
    installed wheel on the path for mmakd; return its output."""
    result = run_python(args, cwd=cwd, path=target)
    assert result.returncode == 0, (
        result.stdout[-3000:] + result.stderr[-5000:])
    return result.stdout + result.stderr


def test_wheel_ships_configs_tools_and_model_index(wheel):
    with zipfile.ZipFile(wheel) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        shipped_index = archive.read('mmakd/.mim/model-index.yml')
    expected = _repo_files('configs') + _repo_files('tools')
    mim = sorted(n[len('mmakd/.mim/'):] for n in infos
                 if n.startswith('mmakd/.mim/'))
    assert mim == sorted(expected + ['model-index.yml'])
    with open(osp.join(REPO, 'model-index.yml'), 'rb') as f:
        assert shipped_index == f.read()
    # Copies, not links; shell launchers stay executable.
    for name, info in infos.items():
        assert not stat.S_ISLNK(info.external_attr >> 16), name
    assert infos['mmakd/.mim/tools/dist_train.sh'].external_attr >> 16 \
        & stat.S_IXUSR
    # The package itself, and nothing of the tests or docs.
    assert 'mmakd/models/distillers/avatar_distiller.py' in infos
    assert not [n for n in infos if n.startswith(('tests/', 'docs/'))]
    assert not [n for n in infos if '__pycache__' in n]


def test_installed_wheel_resolves_mmakd_config_in_user_config(
        target, tmp_path):
    """A user's own config ``_base_``s an mmakd:: config; nothing of the
    clone is on the path."""
    write_user_config(tmp_path)
    code = textwrap.dedent("""
        import json, mmakd
        from mmengine.config import Config
        from mmakd.utils import load_config
        cfg = Config.fromfile('my_config.py')
        top = load_config('mmakd::akd/demo/'
                          'pspnet_r18-w8_1xb8-600it_shapes-128.py')
        print('RESULT', json.dumps(dict(
            mmakd=mmakd.__file__, text=cfg.text, top=top.filename,
            distiller=cfg.model.distiller.type,
            batch_size=cfg.train_dataloader.batch_size,
            avatars=cfg.model.distiller.avatars.perturbation.type)))
    """)
    log = _run_installed(['-c', code], target, str(tmp_path))
    result = json.loads(log.split('RESULT ', 1)[1].splitlines()[0])
    mim = osp.join(target, 'mmakd', '.mim', 'configs')
    assert result['mmakd'] == osp.join(target, 'mmakd', '__init__.py')
    assert osp.join(mim, AKD_RETINA) in result['text']
    assert result['top'] == osp.join(
        mim, 'akd/demo/pspnet_r18-w8_1xb8-600it_shapes-128.py')
    assert result['distiller'] == 'AvatarDistiller'
    assert result['avatars'] == 'AvatarDropout'
    assert result['batch_size'] == 4


@pytest.mark.slow
def test_mim_trains_and_tests_an_mmakd_config_from_the_wheel(
        target, tmp_path, shapes_root):
    """``mim train mmakd CONFIG`` and ``mim test mmakd CONFIG --checkpoint``
    with openmim, on the AKD demo config (synthetic shapes data, a random
    teacher), using the tools shipped in the wheel."""
    pytest.importorskip('mim')
    teacher = random_teacher_checkpoint(str(tmp_path / 'teacher.pth'))
    options = cli_options(
        demo_options(shapes_root, iters=2, **{'model.teacher_ckpt': teacher}))
    config = osp.basename(DEMO_AKD)  # found by MIM in mmakd/.mim/configs
    work_dir = str(tmp_path / 'work')
    log = _run_installed([
        '-m', 'mim', 'train', 'mmakd', config, '--work-dir', work_dir,
        '--cfg-options', *options
    ], target, str(tmp_path))
    shipped = osp.join(target, 'mmakd', '.mim')
    assert osp.join(shipped, 'tools', 'train.py') in log
    assert osp.join(shipped, 'configs', DEMO_AKD[len('configs/'):]) in log
    assert 'Iter(train) [2/2]' in log and 'distill.loss_cwd' in log
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(checkpoint)

    log = _run_installed([
        '-m', 'mim', 'test', 'mmakd', config, '--checkpoint', checkpoint,
        '--work-dir',
        str(tmp_path / 'test'), '--cfg-options', *options
    ], target, str(tmp_path))
    assert osp.join(shipped, 'tools', 'test.py') in log
    assert 'Iter(test)' in log and 'mIoU: ' in log
    assert 'Testing finished successfully' in log  # MIM's own report


@pytest.mark.slow
def test_mim_distils_two_models_with_one_command_from_the_wheel(
        target, tmp_path):
    """``mim train mmakd STUDENT --teacher mmakd::TEACHER --teacher-ckpt C
    --dry-run``: MIM finds the student by name and passes the one-command
    options to the wheel's tools/train.py, which writes the config."""
    pytest.importorskip('mim')
    teacher = random_teacher_checkpoint(str(tmp_path / 'teacher.pth'))
    work_dir = str(tmp_path / 'work')
    log = _run_installed([
        '-m', 'mim', 'train', 'mmakd',
        osp.basename(DEMO_STUDENT), '--teacher',
        'mmakd::' + DEMO_TEACHER[len('configs/'):], '--teacher-ckpt', teacher,
        '--avatars', '4', '--work-dir', work_dir, '--dry-run'
    ], target, str(tmp_path))
    [written] = glob.glob(osp.join(work_dir, 'akd_cwd_logits_*.py'))
    assert f'dry run: wrote {written}' in log
    assert 'decode_head.conv_seg' in log and '7x16x16' in log
    text = open(written).read()
    shipped = osp.join(target, 'mmakd', '.mim', 'configs')
    assert osp.join(shipped, DEMO_STUDENT[len('configs/'):]) in text
    avatars = Config.fromfile(written).model.distiller.avatars
    assert avatars.perturbation.p == (0.05, 0.1, 0.2, 0.4)
