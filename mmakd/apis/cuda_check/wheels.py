# Copyright (c) mmakd contributors. All rights reserved.
"""The wheel folder the CUDA check installs from on a GPU machine without
network: which distributions, how they are fetched, and mmcv's CUDA build
made small enough to travel.

``tools/misc/make_cuda_wheels.py`` is the command line. The distributions
are the closure of mmakd's stack in *this* environment (the versions the
tests run with), less what the GPU machine already has; pure-Python
packages and those with wheels for the target Python come from PyPI with
``pip download``; mmcv 2.1.0 with CUDA ops is a wheel compiled for the
target torch (reused from a folder, or built by ``build_mmcv.py`` in a venv
of the target Python), with its debug information stripped.
"""
import base64
import csv
import glob
import hashlib
import importlib.metadata
import io
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from packaging.requirements import Requirement

__all__ = [
    'STACK_ROOTS', 'GPU_IMAGE', 'stack_closure', 'download_wheel',
    'strip_wheel', 'wheel_name_version', 'sha256', 'find_mmcv_wheel',
    'build_mmcv_wheel', 'site_packages', 'travel_bytes'
]

#: What mmakd needs at run time beyond torch (requirements/mminstall.txt,
#: runtime.txt, tests.txt); the check runs the unit tests too.
STACK_ROOTS = ('mmengine', 'mmdet', 'mmsegmentation', 'mmrazor', 'mmpretrain',
               'ftfy', 'regex', 'joblib', 'matplotlib', 'pytest',
               'pytest-timeout')
#: Distributions the GPU machine's image ('cuda') already holds, from its
#: package list as read on 2026-11-17 (the device tool's KINDS.md), where
#: they meet mmakd's stack; the check installs only what is missing, so a
#: newer image needs no change unless it drops one of these.
GPU_IMAGE = ('torch', 'torchvision', 'numpy', 'opencv-python-headless',
             'opencv-python', 'pillow', 'pyyaml', 'matplotlib', 'scipy',
             'rich', 'tqdm', 'regex', 'packaging', 'six', 'click', 'joblib',
             'pytest', 'pytest-timeout', 'pluggy', 'iniconfig', 'pygments',
             'markdown', 'markdown-it-py', 'mdurl', 'einops', 'cloudpickle',
             'contourpy', 'cycler', 'fonttools', 'kiwisolver', 'pyparsing',
             'python-dateutil', 'zipp', 'tabulate', 'typing-extensions',
             'setuptools', 'wheel', 'filelock', 'fsspec', 'requests')
#: Linux platform tags ``pip download`` may take for the target.
PLATFORMS = ('manylinux_2_28_x86_64', 'manylinux_2_27_x86_64',
             'manylinux_2_17_x86_64', 'manylinux2014_x86_64',
             'manylinux1_x86_64', 'linux_x86_64')


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r'[-_.]+', '-', name).lower()


def stack_closure(roots: Iterable[str] = STACK_ROOTS,
                  present: Iterable[str] = GPU_IMAGE,
                  extra: Iterable[str] = (),
                  python_version: str = '3.12') -> List[Tuple[str, str]]:
    """``(name, version)`` of every distribution ``roots`` need, as
    installed here, with the environment markers of Python
    ``python_version`` (the target's), less those in ``present`` (whose own
    needs the target is trusted to meet). mmcv's needs are followed but
    mmcv itself is left out: :func:`find_mmcv_wheel` makes its wheel.

    Raises:
        RuntimeError: A needed distribution is not installed here.
    """
    skip = {normalize(name) for name in present}
    # Markers as the target evaluates them (its Python, no extras).
    environment = {
        'extra': '',
        'python_version': python_version,
        'python_full_version': python_version + '.0'
    }
    todo = ['mmcv', *roots, *extra]
    found: Dict[str, str] = {}
    while todo:
        name = normalize(todo.pop())
        if name in found or name in skip:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise RuntimeError(f'{name} is needed but not installed here; '
                               'run make env first') from None
        found[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(environment):
                todo.append(req.name)
    return sorted((n, v) for n, v in found.items() if n != 'mmcv')


def _pip(python: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, '-m', 'pip', *args],
                          capture_output=True,
                          text=True)


def download_wheel(name: str,
                   version: str,
                   out: str,
                   python_version: str,
                   python: str = sys.executable) -> str:
    """Fetch the wheel of ``name==version`` for CPython ``python_version``
    on x86-64 Linux into ``out``; a distribution PyPI has only as source
    is built here, and must then be pure Python.

    Returns:
        str: The wheel's file name.
    """
    before = set(os.listdir(out))
    spec = f'{name}=={version}'
    args = [
        'download', '--no-deps', '--only-binary=:all:', '--dest', out,
        '--python-version', python_version, '--implementation', 'cp'
    ]
    for platform in PLATFORMS:
        args += ['--platform', platform]
    proc = _pip(python, *args, spec)
    if proc.returncode != 0:
        proc = _pip(python, 'wheel', '--no-deps', '--wheel-dir', out, spec)
        if proc.returncode != 0:
            raise RuntimeError(f'cannot get a wheel of {spec}:\n' +
                               proc.stderr[-2000:])
    new = sorted(set(os.listdir(out)) - before)
    wheels = [f for f in new if f.endswith('.whl')]
    if not wheels:  # already there from an earlier run
        wheels = [
            f for f in os.listdir(out)
            if f.endswith('.whl') and wheel_name_version(f) == (
                normalize(name), version)
        ]
    if len(wheels) != 1:
        raise RuntimeError(f'{spec}: expected one wheel, got {wheels}')
    # pip download chose a wheel for the target; one built here must be
    # pure Python to run there.
    if proc.args[3] == 'wheel' and not wheels[0].endswith('-none-any.whl'):
        raise RuntimeError(f'{spec} has no wheel for Python {python_version} '
                           f'and the one built here is for this machine '
                           f'({wheels[0]})')
    return wheels[0]


def wheel_name_version(filename: str) -> Tuple[str, str]:
    """The normalized distribution name and version of a wheel file."""
    name, version = osp.basename(filename).split('-')[:2]
    return normalize(name), version


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return 'sha256=' + base64.urlsafe_b64encode(digest).rstrip(b'=').decode()


def strip_wheel(src: str, dst: str, strip: str = 'strip') -> Dict[str, int]:
    """Copy wheel ``src`` to ``dst`` with the debug information of its
    shared libraries removed (``strip --strip-debug``: symbols and code are
    kept) and its RECORD hashes rewritten to match.

    Returns:
        dict: ``before`` and ``after`` sizes of the wheel in bytes.
    """
    partial = dst + '.partial'  # ``dst`` may be ``src``
    before = osp.getsize(src)
    with tempfile.TemporaryDirectory() as tmp, \
            zipfile.ZipFile(src) as zin, \
            zipfile.ZipFile(partial, 'w', zipfile.ZIP_DEFLATED) as zout:
        names = zin.namelist()
        contents: Dict[str, bytes] = {}
        for name in names:
            data = zin.read(name)
            if name.endswith('.so') or '.so.' in osp.basename(name):
                path = osp.join(tmp, 'lib.so')
                with open(path, 'wb') as f:
                    f.write(data)
                subprocess.run([strip, '--strip-debug', path], check=True)
                with open(path, 'rb') as f:
                    data = f.read()
            contents[name] = data
        record = next(n for n in names if n.endswith('.dist-info/RECORD'))
        rows = []
        for row in csv.reader(io.StringIO(contents[record].decode())):
            if row and row[0] != record and row[0] in contents:
                data = contents[row[0]]
                row = [row[0], _record_hash(data), str(len(data))]
            rows.append(row)
        text = io.StringIO()
        csv.writer(text, lineterminator='\n').writerows(rows)
        contents[record] = text.getvalue().encode()
        for name in names:
            info = zin.getinfo(name)
            zout.writestr(info, contents[name], zipfile.ZIP_DEFLATED)
    os.replace(partial, dst)
    return dict(before=before, after=osp.getsize(dst))


def find_mmcv_wheel(folders: Sequence[str],
                    python_version: str) -> Optional[str]:
    """An mmcv 2.1.0 wheel for CPython ``python_version`` in ``folders``."""
    tag = 'cp' + python_version.replace('.', '')
    for folder in folders:
        found = sorted(
            glob.glob(osp.join(folder, f'mmcv-2.1.0-{tag}-{tag}-*.whl')))
        if found:
            return found[-1]
    return None


def build_mmcv_wheel(python: str, torch: str, arch: str, venv: str, cache: str,
                     repo: str) -> str:
    """Compile mmcv 2.1.0 with CUDA ops for ``torch`` and the GPU
    architecture ``arch`` (``9.0``: Hopper) with ``build_mmcv.py``, in a
    venv of interpreter ``python`` (made if missing; torch from PyPI, a
    CUDA build of several GB). Needs nvcc (``CUDA_HOME`` or on PATH); CUDA
    library headers come from torch's ``nvidia`` packages. 20-30 minutes
    on 2 cores.

    Returns:
        str: The built wheel.
    """
    vpython = osp.join(venv, 'bin', 'python')
    if not osp.exists(vpython):
        if shutil.which(python) is None:
            raise RuntimeError(f'no interpreter {python} to build mmcv with: '
                               'give one with --build-python')
        subprocess.run([python, '-m', 'venv', venv], check=True)
    subprocess.run([
        vpython, '-m', 'pip', 'install', f'torch=={torch}', '-r',
        osp.join(repo, 'requirements', 'build.txt')
    ],
                   check=True)
    nvcc = shutil.which('nvcc')
    cuda_home = os.environ.get('CUDA_HOME') or (osp.dirname(osp.dirname(nvcc))
                                                if nvcc else None)
    if not cuda_home:
        raise RuntimeError('no CUDA toolkit: set CUDA_HOME or put nvcc on '
                           'PATH')
    includes = glob.glob(
        osp.join(site_packages(vpython), 'nvidia', '*', 'include'))
    env = dict(
        os.environ,
        FORCE_CUDA='1',
        TORCH_CUDA_ARCH_LIST=arch,
        CUDA_HOME=cuda_home,
        MAX_JOBS=os.environ.get('MAX_JOBS', '2'),
        CPATH=os.pathsep.join(includes + [os.environ.get('CPATH', '')]))
    proc = subprocess.run([
        vpython,
        osp.join(repo, 'tools', 'misc', 'build_mmcv.py'), '--wheel-only',
        '--force', '--cache', cache
    ],
                          env=env,
                          stdout=subprocess.PIPE,
                          text=True,
                          check=True)
    return proc.stdout.strip().splitlines()[-1]


def site_packages(python: str) -> str:
    """The pure-Python ``site-packages`` folder of interpreter
    ``python``."""
    return subprocess.run([
        python, '-c',
        "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    ],
                          capture_output=True,
                          text=True,
                          check=True).stdout.strip()


def travel_bytes(repo: str, extra: Iterable[str] = ()) -> int:
    """Bytes that travel to the device machine: tracked and untracked,
    not ignored files of ``repo`` plus every file under ``extra`` (the
    carried paths)."""
    listed = subprocess.run([
        'git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'
    ],
                            cwd=repo,
                            capture_output=True,
                            check=True).stdout.decode().split('\0')
    total = sum(
        osp.getsize(osp.join(repo, f)) for f in listed
        if f and osp.isfile(osp.join(repo, f))
        and not osp.islink(osp.join(repo, f)))
    for path in extra:
        for root, _, files in os.walk(path):
            total += sum(osp.getsize(osp.join(root, f)) for f in files)
    return total


def manifest_entry(folder: str, filename: str) -> Dict[str, Any]:
    """One wheel of the manifest."""
    name, version = wheel_name_version(filename)
    path = osp.join(folder, filename)
    return dict(
        file=filename,
        name=name,
        version=version,
        bytes=osp.getsize(path),
        sha256=sha256(path))
