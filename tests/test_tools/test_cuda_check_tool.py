# Copyright (c) mmakd contributors. All rights reserved.
"""tools/misc/cuda_check.py and make_cuda_wheels.py as command lines: the
install step before the others, step selection, the whole CPU check as CI
runs it, and ``bootstrap.install`` really installing a wheel into a venv."""
import base64
import hashlib
import importlib.metadata
import json
import os.path as osp
import site
import subprocess
import sys
import zipfile

import pytest
import torch

import mmakd
from mmakd.apis.cuda_check.wheels import manifest_entry, site_packages
from helpers import load_tool, run_python

TOOL = 'tools/misc/cuda_check.py'
STEP_NAMES = [
    'env', 'data', 'det_teacher', 'det_akd', 'det_akd_amp', 'det_test',
    'seg_teacher', 'seg_akd', 'seg_akd_amp', 'doctor', 'unit_tests',
    'bench_retinanet', 'bench_pspnet'
]
PYTHON = '.'.join(map(str, sys.version_info[:2]))


def write_manifest(folder, wheels=()) -> str:
    """A wheel folder's manifest for this Python and torch."""
    folder.mkdir(exist_ok=True)
    (folder / 'manifest.json').write_text(
        json.dumps(
            dict(
                python=PYTHON,
                torch=torch.__version__,
                cuda=str(torch.version.cuda),
                wheels=list(wheels))))
    return str(folder)


def summary_rows(out) -> list:
    """(name, status) of each line of ``summary.txt``."""
    lines = (out / 'summary.txt').read_text().splitlines()
    return [tuple(line.split()[2:4]) for line in lines]


def test_cuda_check_help():
    proc = run_python([TOOL, '--help'], timeout=60)
    assert proc.returncode == 0, proc.stderr
    for flag in ('--keep-going', '--steps', '--wheels', '--device', '--out',
                 '--work'):
        assert flag in proc.stdout


def test_make_cuda_wheels_help():
    proc = run_python(['tools/misc/make_cuda_wheels.py', '--help'],
                      timeout=120)
    assert proc.returncode == 0, proc.stderr
    for flag in ('--mmcv-from', '--build-mmcv', '--python', '--torch',
                 '--include'):
        assert flag in proc.stdout


@pytest.mark.slow  # test_env_step_after_installing_nothing runs the tool
def test_unknown_steps_exit_2_naming_the_steps(tmp_path):
    out = tmp_path / 'out'
    proc = run_python([
        TOOL, '--wheels',
        write_manifest(tmp_path / 'wheels'), '--device', 'cpu', '--out',
        str(out), '--steps', 'env', 'nope'
    ],
                      timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unknown steps: ['nope']" in proc.stdout
    assert str(STEP_NAMES) in proc.stdout
    assert not (out / 'summary.json').exists()


def run_env_step(wheels_dir: str, out):
    """The tool's install and env steps on CPU, with ``--wheels``
    ``wheels_dir``: both must pass."""
    proc = run_python([
        TOOL, '--wheels', wheels_dir, '--device', 'cpu', '--out',
        str(out), '--steps', 'env'
    ],
                      timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary_rows(out) == [('install', 'ok'), ('env', 'ok')]
    return proc


def test_env_step_after_installing_nothing(tmp_path):
    """Nothing is missing here: the install step passes with nothing
    installed, then the env step writes the versions."""
    out = tmp_path / 'out'
    proc = run_env_step(write_manifest(tmp_path / 'wheels'), out)
    lines = (out / 'summary.txt').read_text().splitlines()
    assert lines[0].startswith('[cuda-check]  1/2 install')
    assert lines[0].endswith('nothing missing')
    with open(out / 'env.json') as f:
        env = json.load(f)
    assert env['torch'] == torch.__version__
    assert env['mmakd'] == mmakd.__version__
    with open(out / 'summary.json') as f:
        summary = json.load(f)
    assert summary['ok'] is True and summary['device'] == 'cpu'
    assert summary['versions']['torch'] == torch.__version__
    assert '--steps env' in summary['command']
    assert '[cuda-check] passed: 2/2 steps ok' in proc.stdout


@pytest.mark.slow  # test_env_step_after_installing_nothing runs the tool
def test_env_step_with_a_folder_without_manifest(tmp_path):
    (tmp_path / 'wheels').mkdir()
    run_env_step(str(tmp_path / 'wheels'), tmp_path / 'out')


@pytest.mark.slow
def test_whole_cpu_check(tmp_path):
    """The check as CI runs it (several minutes on 2 cores)."""
    out = tmp_path / 'out'
    proc = run_python([TOOL, '--device', 'cpu', '--out',
                       str(out)],
                      timeout=1500)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    with open(out / 'summary.json') as f:
        summary = json.load(f)
    assert summary['ok'] is True
    assert [s['name'] for s in summary['steps']] == ['install', *STEP_NAMES]
    assert [s['status'] for s in summary['steps']] == ['ok'] * 14
    assert summary_rows(out) == [(s, 'ok') for s in ['install', *STEP_NAMES]]
    for name in ('env.json', 'doctor.json', 'unit_tests.xml',
                 'bench_retinanet.json', 'bench_pspnet.json',
                 'bench_retinanet.md', 'bench_pspnet.md'):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in (out / 'logs').iterdir()) == sorted(
        f'{s}.log' for s in STEP_NAMES)
    details = {s['name']: s['detail'] for s in summary['steps']}
    assert details['det_akd_amp'].endswith(
        'mmrazor.CPUAmpOptimWrapper bfloat16')
    assert details['det_test'].startswith('coco/bbox_mAP ')
    assert ' passed' in details['unit_tests']


def write_pure_wheel(path, name: str, version: str, files: dict) -> None:
    """A pure-Python wheel of ``name`` at ``path`` holding ``files``."""
    info = f'{name}-{version}.dist-info'
    files = dict(
        files, **{
            f'{info}/METADATA':
            f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n'.
            encode(),
            f'{info}/WHEEL': (b'Wheel-Version: 1.0\nGenerator: hand\n'
                              b'Root-Is-Purelib: true\nTag: py3-none-any\n')
        })
    rows = []
    for member, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest())
        rows.append(f"{member},sha256={digest.decode().rstrip('=')},"
                    f'{len(data)}')
    rows.append(f'{info}/RECORD,,')
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as zf:
        for member, data in files.items():
            zf.writestr(member, data)
        zf.writestr(f'{info}/RECORD', '\n'.join(rows) + '\n')


@pytest.mark.slow
def test_bootstrap_installs_into_a_venv(tmp_path):
    """``install(folder, python=VENV)`` installs the manifest's missing
    wheel into the venv and checks the stack imports there.

    What is missing, and the Python and torch the folder must be made for,
    are judged in *this* process (``install`` reads ``sys.version_info``
    and ``importlib.metadata`` here): the probe is not installed here, and
    the manifest names this Python and torch. The venv sees the stack
    through a ``.pth`` file naming this environment's site-packages (a
    venv made from a venv gets the base interpreter's site-packages with
    ``--system-site-packages``, not the outer venv's); pip comes from there
    too, and installs into the venv's own site-packages."""
    bootstrap = load_tool('mmakd/apis/cuda_check/bootstrap.py',
                          'mmakd_cuda_bootstrap_probe')
    venv = tmp_path / 'venv'
    subprocess.run([
        sys.executable, '-m', 'venv', '--system-site-packages',
        '--without-pip',
        str(venv)
    ],
                   check=True)
    vpython = str(venv / 'bin' / 'python')
    vsite = site_packages(vpython)
    with open(osp.join(vsite, 'outer_env.pth'), 'w') as f:
        f.write('\n'.join(site.getsitepackages()) + '\n')

    folder = tmp_path / 'wheels'
    folder.mkdir()
    filename = 'mmakd_probe-1.0-py3-none-any.whl'
    write_pure_wheel(folder / filename, 'mmakd_probe', '1.0',
                     {'mmakd_probe/__init__.py': b'ANSWER = 42\n'})
    entry = manifest_entry(str(folder), filename)
    assert (entry['name'], entry['version']) == ('mmakd-probe', '1.0')
    write_manifest(folder, [entry])
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version('mmakd-probe')

    echoed = []
    result = bootstrap.install(str(folder), python=vpython, echo=echoed.append)
    assert result['installed'] == ['mmakd-probe']
    assert result['bytes'] == osp.getsize(folder / filename)
    assert result['versions']['mmakd'] == mmakd.__version__
    assert result['versions']['torch'] == torch.__version__
    assert echoed == [
        f'[cuda-check] installing 1 wheels from {folder}: mmakd-probe==1.0'
    ]
    probe = ('import importlib.metadata, mmakd_probe; '
             "print(mmakd_probe.ANSWER, importlib.metadata.version("
             "'mmakd-probe'), mmakd_probe.__file__)")
    proc = subprocess.run([vpython, '-c', probe],
                          capture_output=True,
                          text=True,
                          cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    answer, version, where = proc.stdout.split()
    assert (answer, version) == ('42', '1.0')
    assert where.startswith(vsite)
    # not in this environment
    outer = subprocess.run([sys.executable, '-c', probe],
                           capture_output=True,
                           text=True,
                           cwd=str(tmp_path))
    assert outer.returncode != 0
    assert "No module named 'mmakd_probe'" in outer.stderr
    assert not any(
        osp.exists(osp.join(p, 'mmakd_probe')) for p in site.getsitepackages())
