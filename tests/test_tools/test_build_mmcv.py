# Copyright (c) mmakd contributors. All rights reserved.
"""tools/misc/build_mmcv.py: the C++ standard read from torch's headers, the
one-flag change to mmcv's setup.py, a real ``pip wheel`` of a small sdist
shaped like mmcv's, the ops check, and the Makefile wiring for ``TORCH``."""
import inspect
import os
import os.path as osp
import re
import subprocess
import sys
import tarfile
import zipfile

import pytest
import torch.utils.cpp_extension

from helpers import REPO, load_tool, run_python

TOOL = 'tools/misc/build_mmcv.py'
ATEN_NEEDS_20 = ('#pragma once\n#if __cplusplus < 202002L\n'
                 '#error C++20 or later compatible compiler is required\n'
                 '#endif\n')

build_mmcv = load_tool(TOOL, 'build_mmcv')


def _headers(root, aten_text: str) -> str:
    os.makedirs(osp.join(root, 'ATen'))
    with open(osp.join(root, 'ATen', 'ATen.h'), 'w') as f:
        f.write(aten_text)
    return str(root)


@pytest.mark.parametrize('aten, expected', [
    ('#pragma once\nint aten_ok;\n', 17),
    (ATEN_NEEDS_20, 20),
    ('#pragma once\n#if __cplusplus < 202100L\n#error needs C++23\n#endif\n',
     23),
])
def test_standard_is_the_lowest_the_header_accepts(tmp_path, aten, expected):
    assert build_mmcv.required_cxx_std([_headers(tmp_path, aten)]) == expected


def test_standard_errors_name_the_cause(tmp_path):
    always = _headers(tmp_path / 'a', '#error this torch wants C++99\n')
    with pytest.raises(build_mmcv.BuildError, match='C\\+\\+99'):
        build_mmcv.required_cxx_std([always])
    with pytest.raises(build_mmcv.BuildError, match='not found: install g'):
        build_mmcv.required_cxx_std([always], compiler='no-such-c++')
    with pytest.raises(build_mmcv.BuildError, match='no ATen/ATen.h'):
        build_mmcv.required_cxx_std([str(tmp_path)])


def test_installed_torch_compiles_with_the_standard_found():
    """On the installed torch the probe's answer holds beyond
    preprocessing: ``ATen/ATen.h`` compiles (``-fsyntax-only``) under it,
    the standard below it (if any) hits torch's ``#error``, and torch's own
    extension builder passes a standard at least as new. 2.13 gives C++17,
    2.14 C++20."""
    include_dirs = build_mmcv.torch_include_dirs()
    std = build_mmcv.required_cxx_std(include_dirs)
    includes = [arg for d in include_dirs for arg in ('-I', d)]

    def syntax_check(standard):
        return subprocess.run(
            ['c++', f'-std=c++{standard}', '-fsyntax-only', '-x', 'c++'] +
            includes + ['-'],
            input='#include <ATen/ATen.h>\n',
            capture_output=True,
            text=True)

    compiled = syntax_check(std)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    if std > 17:
        lower = syntax_check(std - 3)
        assert lower.returncode != 0 and '#error' in lower.stderr
    source = inspect.getsource(torch.utils.cpp_extension)
    assert any(f"'-std=c++{newer}'" in source
               for newer in build_mmcv.CXX_STANDARDS if newer >= std)


# The shapes of mmcv 2.1.0's flags: C++14 for torch <= 1.12 and C++17 after,
# in gcc and MSVC form, for cxx and nvcc.
SETUP_FLAGS = """
if old_torch:
    extra_compile_args['cxx'] = ['-std=c++14']
else:
    extra_compile_args['cxx'] = ['-std=c++17']
windows = ['/std:c++17']
mps = ['-Wall', '-std=c++17']
extra_compile_args['nvcc'] += ['-std=c++14'] if old_torch else ['-std=c++17']
"""


def test_patch_changes_only_the_cxx17_flags():
    patched = build_mmcv.patch_setup(SETUP_FLAGS, 20)
    assert 'c++17' not in patched
    assert patched.count('-std=c++20') == 3
    assert patched.count('/std:c++20') == 1
    assert patched.count('-std=c++14') == SETUP_FLAGS.count('-std=c++14') == 2
    assert patched.replace('c++20', 'c++17') == SETUP_FLAGS
    assert build_mmcv.patch_setup(SETUP_FLAGS, 17) == SETUP_FLAGS


def test_patch_refuses_a_setup_without_the_flag():
    with pytest.raises(build_mmcv.BuildError, match='no -std=c\\+\\+17'):
        build_mmcv.patch_setup("args = ['-O2']\n", 20)


FAKE_SETUP = """
from setuptools import Extension, setup
setup(name='mmcv', version='2.1.0', packages=['mmcv'],
      ext_modules=[Extension('mmcv._ext', ['probe.cpp'],
                             extra_compile_args=['-std=c++17'])])
"""
# Compiles only under C++20: the wheel exists only if the flag was changed.
FAKE_SOURCE = """
#include <Python.h>
static_assert(__cplusplus >= 202002L, "built without C++20");
static struct PyModuleDef ext = {PyModuleDef_HEAD_INIT, "_ext", nullptr, -1};
PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&ext); }
"""


@pytest.fixture(scope='module')
def fake_sdist(tmp_path_factory):
    """``mmcv-2.1.0.tar.gz`` with a C++ extension that needs C++20 while
    its setup.py asks for C++17, as mmcv 2.1.0 against torch 2.14."""
    root = tmp_path_factory.mktemp('sdist')
    src = root / 'mmcv-2.1.0'
    (src / 'mmcv').mkdir(parents=True)
    (src / 'mmcv' / '__init__.py').write_text("__version__ = '2.1.0'\n")
    (src / 'setup.py').write_text(FAKE_SETUP)
    (src / 'probe.cpp').write_text(FAKE_SOURCE)
    sdist = root / 'mmcv-2.1.0.tar.gz'
    with tarfile.open(sdist, 'w:gz') as tar:
        tar.add(src, arcname='mmcv-2.1.0')
    return str(sdist)


def test_builds_the_wheel_with_the_changed_standard(fake_sdist, tmp_path):
    """The recipe end to end on a local sdist (no download, nothing
    installed): patched, built by pip with the compiler, kept in the cache
    folder named after torch, the standard and Python, with its log; a
    second call finds it there instead of building again."""
    cache = tmp_path / 'cache'
    args = [
        TOOL, '--sdist', fake_sdist, '--cxx-std', '20', '--cache',
        str(cache), '--wheel-only'
    ]
    first = run_python(args, timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    wheel = first.stdout.strip().splitlines()[-1]
    assert osp.dirname(wheel) == str(
        cache / build_mmcv.cache_key(torch.__version__, 20))
    assert osp.basename(wheel).startswith(
        f'mmcv-2.1.0-{build_mmcv.python_tag()}')
    with zipfile.ZipFile(wheel) as whl:
        assert any(
            name.startswith('mmcv/_ext') and name.endswith('.so')
            for name in whl.namelist())
    assert 'building a wheel from mmcv-2.1.0.tar.gz with -std=c++20' in (
        first.stdout)
    with open(osp.join(osp.dirname(wheel), 'build.log')) as f:
        assert '-std=c++20' in f.read()

    again = run_python(args, timeout=300)
    assert again.returncode == 0
    assert again.stdout.strip().splitlines()[-1] == wheel
    assert 'building' not in again.stdout


def test_unchanged_flag_fails_with_the_compiler_error(fake_sdist, tmp_path):
    """With C++17 (mmcv's own flag) the source cannot compile: the tool
    exits 1 with the compiler's message and the log's path."""
    result = run_python([
        TOOL, '--sdist', fake_sdist, '--cxx-std', '17', '--cache',
        str(tmp_path), '--wheel-only'
    ],
                        timeout=300)
    assert result.returncode == 1
    assert 'building the wheel failed (full log:' in result.stdout
    assert 'built without C++20' in result.stdout


def test_check_loads_the_installed_ops():
    ok, text = build_mmcv.check_mmcv()
    assert ok, text
    assert text.startswith('mmcv 2.1.0 ops ok with torch ')


def test_check_reports_an_mmcv_without_its_ops(tmp_path):
    """An mmcv without its compiled ops (a pure-Python install) fails the
    check, with the reason."""
    fake = tmp_path / 'mmcv'
    fake.mkdir()
    (fake / '__init__.py').write_text("__version__ = '2.1.0'\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    ok, text = build_mmcv.check_mmcv(sys.executable, env=env)
    assert not ok
    assert 'mmcv has no compiled ops' in text


def test_check_reports_ops_built_for_another_torch(tmp_path):
    """An ``_ext`` that cannot load (here: not a shared library at all, as
    the loader sees an ABI mismatch) fails the check with the loader's
    error."""
    fake = tmp_path / 'mmcv'
    fake.mkdir()
    (fake / '__init__.py').write_text('raise AssertionError("imported")\n')
    (fake / '_ext.cpython-311-x86_64-linux-gnu.so').write_bytes(b'not elf')
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    ok, text = build_mmcv.check_mmcv(sys.executable, env=env)
    assert not ok
    assert 'ImportError' in text and 'imported' not in text


def _make(*args: str) -> subprocess.CompletedProcess:
    """``make ARGS`` as typed in a fresh shell: without the variables that a
    make running these tests exports (``make test PIP_TORCH_FLAGS=...`` in
    CI, ``make test-torch TORCH=...``), i.e. every ``NAME ?=`` of the
    Makefile and make's own."""
    with open(osp.join(REPO, 'Makefile')) as f:
        defaults = re.findall(r'^([A-Z_]+) \?=', f.read(), re.M)
    dropped = set(defaults) | {'MAKEFLAGS', 'MFLAGS', 'MAKELEVEL'}
    env = {
        key: value
        for key, value in os.environ.items() if key not in dropped
    }
    return subprocess.run(['make', *args],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True)


def _make_dry_run(*args: str) -> str:
    """What make would run, with every target out of date (-B): the
    same whether or not that environment was built in this checkout."""
    result = _make('-n', '-B', *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_env_torch_builds_a_second_environment():
    """``make env TORCH=X`` installs torch X with pip's matching
    torchvision into .venv-torchX and builds mmcv with the tool; without
    TORCH the pinned requirements and .venv stay."""
    second = _make_dry_run('env', 'TORCH=2.15.0')
    assert 'python3 -m venv .venv-torch2.15.0' in second
    assert ('.venv-torch2.15.0/bin/python -m pip install  torch==2.15.0 '
            'torchvision\n') in second
    assert '.venv-torch2.15.0/bin/python tools/misc/build_mmcv.py' in second
    default = _make_dry_run('env', 'VENV=.venv-dry-run')
    assert '-r requirements/torch.txt' in default
    assert 'torch==' not in default
    tests = _make_dry_run('test', 'TORCH=2.15.0')
    assert '.venv-torch2.15.0/bin/python -m pytest tests' in tests


def test_make_test_torch_needs_a_version():
    result = _make('-n', 'test-torch')
    assert result.returncode != 0
    assert 'make test-torch TORCH=2.14.1' in result.stderr


def test_progress_reads_ninja_lines_as_pip_streams_them():
    """``pip wheel -v`` indents the build's output; the progress parser
    reads ninja's ``[done/total]`` there (a line from a real mmcv build)."""
    line = ('  [12/77] c++ -MMD -MF build/temp/mmcv/ops/csrc/pytorch/nms.o.d '
            '-O3 -c nms.cpp -o nms.o -std=c++20\n')
    assert build_mmcv.NINJA_STEP.match(line).groups() == ('12', '77')
    assert build_mmcv.NINJA_STEP.match('  copying [1/2] x\n') is None
