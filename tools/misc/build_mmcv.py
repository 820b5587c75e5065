# Copyright (c) mmakd contributors. All rights reserved.
"""Build mmcv 2.1.0 with its compiled ops for the installed PyTorch, and
install it.

PyPI has only mmcv 2.1.0's source distribution, and its ``setup.py``
hard-codes ``-std=c++17``. PyTorch 2.14's headers refuse that standard
(``#error C++20 or later compatible compiler is required to use ATen``), so
``pip install mmcv==2.1.0`` cannot build against torch 2.14 or newer. This
script, run with the interpreter of the environment to build for
(``make env`` does), does what pip would do with one flag changed:

1. **Standard.** Find the lowest of C++17, C++20 and C++23 under which the
   compiler PyTorch's extension builder uses (``$CXX``, else ``c++``)
   preprocesses the installed torch's own ``ATen/ATen.h``. The answer comes
   from the headers, never from a table of torch versions.
2. **Reuse.** Install a wheel already built for this torch, C++ standard and
   Python: from ``--find-links`` or from the cache folder (default
   ``.cache/mmcv`` in the repository), after checking that its ops load.
3. **Build.** Otherwise fetch the sdist with ``pip download``, unpack it in
   a temporary folder, change ``setup.py``'s ``-std=c++17`` to the standard
   from step 1 (nothing else; unchanged when that is C++17), build a wheel
   with ``pip wheel --no-build-isolation`` (10-30 minutes on 2 cores,
   with progress) and keep it in the cache folder.
4. **Install and check.** ``pip install`` the wheel, then run its compiled
   NMS in a fresh interpreter.

Nothing in site-packages is edited and no copy of mmcv is kept in the
repository. Usage::

    python tools/misc/build_mmcv.py [--find-links DIR] [--cache DIR]
        [--sdist FILE] [--cxx-std {17,20,23}] [--wheel-only] [--force]
"""
import argparse
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

MMCV_VERSION = '2.1.0'
#: Standards tried, lowest first.
CXX_STANDARDS = (17, 20, 23)
#: The C++ standard flags in mmcv's ``setup.py`` (gcc/clang and MSVC form).
STD17_FLAG = re.compile(r'([-/]std[=:]c\+\+)17\b')
#: A ninja progress line, as ``pip wheel -v`` streams it.
NINJA_STEP = re.compile(r'^\s*\[(\d+)/(\d+)\]')
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: Run in a fresh interpreter after installing: the compiled ops must load
#: next to the installed torch and give the right answer (box 1 overlaps box
#: 0 with IoU 0.81). The extension is loaded without ``import mmcv``, whose
#: Python dependencies (OpenCV, MMEngine) ``make env`` installs afterwards.
CHECK_CODE = """
import glob, importlib.metadata, importlib.util, os.path as osp
import torch
spec = importlib.util.find_spec('mmcv')
assert spec is not None, 'mmcv is not installed'
found = glob.glob(osp.join(spec.submodule_search_locations[0], '_ext.*'))
assert found, 'mmcv has no compiled ops (no mmcv/_ext.*)'
ext_spec = importlib.util.spec_from_file_location('mmcv._ext', found[0])
ext = importlib.util.module_from_spec(ext_spec)
ext_spec.loader.exec_module(ext)
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.],
                      [20., 20., 30., 30.]])
keep = ext.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5,
               offset=0)
assert keep.tolist() == [0, 2], keep.tolist()
print('mmcv', importlib.metadata.version('mmcv'), 'ops ok with torch',
      torch.__version__)
"""


class BuildError(RuntimeError):
    """The mmcv build cannot go on; the message says why and what to do."""


def log(msg: str) -> None:
    print(f'[mmcv] {msg}', flush=True)


def torch_include_dirs() -> List[str]:
    """The installed torch's header folders (as its extension builder adds
    them for a CPU build)."""
    import torch
    root = osp.join(osp.dirname(torch.__file__), 'include')
    return [root, osp.join(root, 'torch', 'csrc', 'api', 'include')]


def required_cxx_std(include_dirs: Sequence[str],
                     compiler: Optional[str] = None,
                     candidates: Sequence[int] = CXX_STANDARDS) -> int:
    """The lowest C++ standard under which ``compiler`` preprocesses
    ``ATen/ATen.h`` from ``include_dirs``.

    Preprocessing is enough: torch states its minimum standard with an
    ``#error`` at the top of that header, and it takes about a second.

    Raises:
        BuildError: no compiler, no ``ATen/ATen.h``, or no standard works.
    """
    compiler = compiler or os.environ.get('CXX') or 'c++'
    headers = [osp.join(d, 'ATen', 'ATen.h') for d in include_dirs]
    if not any(osp.isfile(header) for header in headers):
        raise BuildError(f'no ATen/ATen.h under {list(include_dirs)}: is '
                         'this a full torch install with its headers?')
    includes = [arg for d in include_dirs for arg in ('-I', d)]
    error = ''
    for std in candidates:
        cmd = [
            compiler, f'-std=c++{std}', '-E', '-x', 'c++', *includes, '-o',
            os.devnull, '-'
        ]
        try:
            result = subprocess.run(
                cmd,
                input='#include <ATen/ATen.h>\n',
                capture_output=True,
                text=True)
        except FileNotFoundError:
            raise BuildError(f'C++ compiler {compiler!r} not found: install '
                             'g++ (or set CXX to your compiler)') from None
        if result.returncode == 0:
            return std
        lines = result.stderr.strip().splitlines() or ['']
        error = next((line for line in lines if 'error' in line), lines[-1])
    raise BuildError(
        f'{compiler} cannot preprocess torch\'s ATen/ATen.h under any of '
        f'{", ".join(f"-std=c++{s}" for s in candidates)}; last error: '
        f'{error}. A newer compiler (or CXX=...) is needed.')


def patch_setup(text: str, std: int) -> str:
    """mmcv's ``setup.py`` text with its C++17 flags set to ``std``.

    Only ``-std=c++17`` / ``/std:c++17`` change; the C++14 flags of the
    torch <= 1.12 branches are left alone.

    Raises:
        BuildError: ``std`` is not 17 and the text holds no C++17 flag (a
            different mmcv release, which this recipe does not know).
    """
    if std == 17:
        return text
    patched, count = STD17_FLAG.subn(rf'\g<1>{std}', text)
    if count == 0:
        raise BuildError('mmcv setup.py has no -std=c++17 flag to change to '
                         f'-std=c++{std}; is it mmcv {MMCV_VERSION}?')
    return patched


def python_tag() -> str:
    return f'cp{sys.version_info.major}{sys.version_info.minor}'


def cache_key(torch_version: str, std: int) -> str:
    """The cache sub-folder of a wheel: one per mmcv, torch (with its local
    build tag, e.g. ``+cu130``), C++ standard and Python."""
    return (f'mmcv-{MMCV_VERSION}_torch-{torch_version}_cxx{std}_'
            f'{python_tag()}')


def pip(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'pip', *args], **kwargs)


def check_mmcv(python: str = sys.executable,
               env: Optional[dict] = None) -> Tuple[bool, str]:
    """Run :data:`CHECK_CODE` in a fresh ``python``; return ``(ok, text)``
    where text is its last output line (the versions, or the error)."""
    result = subprocess.run([python, '-c', CHECK_CODE],
                            capture_output=True,
                            text=True,
                            env=env)
    lines = (result.stdout + result.stderr).strip().splitlines() or ['']
    if result.returncode == 0 and f'mmcv {MMCV_VERSION} ' not in lines[-1]:
        return False, f'installed mmcv is not {MMCV_VERSION}: {lines[-1]}'
    return result.returncode == 0, lines[-1]


def install_and_check(wheel_or_spec: Sequence[str], what: str) -> bool:
    """Install ``wheel_or_spec`` (pip arguments) and check its ops; on a
    failed check say why and return False."""
    result = pip(
        'install',
        '--no-deps',
        '--force-reinstall',
        *wheel_or_spec,
        capture_output=True,
        text=True)
    if result.returncode != 0:
        log(f'{what}: pip could not install it '
            f'({result.stderr.strip().splitlines()[-1:]})')
        return False
    ok, text = check_mmcv()
    log(f'{what}: {"ops load" if ok else "does not load"} ({text})')
    return ok


def fetch_sdist(dest: str) -> str:
    """``pip download`` mmcv's source distribution into ``dest``."""
    log(f'fetching the mmcv {MMCV_VERSION} source distribution with pip')
    result = pip(
        'download',
        '--no-deps',
        '--no-binary',
        'mmcv',
        '--no-build-isolation',
        '-d',
        dest,
        f'mmcv=={MMCV_VERSION}',
        capture_output=True,
        text=True)
    found = glob.glob(osp.join(dest, f'mmcv-{MMCV_VERSION}.tar.gz'))
    if result.returncode != 0 or not found:
        raise BuildError('pip download of the mmcv sdist failed:\n' +
                         (result.stdout + result.stderr)[-2000:])
    return found[0]


def unpack_sdist(sdist: str, dest: str) -> str:
    """Unpack ``sdist`` into ``dest``; return the folder with setup.py."""
    with tarfile.open(sdist) as tar:
        tar.extractall(dest, filter='data')
    found = glob.glob(osp.join(dest, '*', 'setup.py'))
    if len(found) != 1:
        raise BuildError(f'{sdist} holds {len(found)} setup.py files, not 1')
    return osp.dirname(found[0])


def build_wheel(src: str, out_dir: str, log_file: str) -> str:
    """``pip wheel`` the source folder ``src`` into ``out_dir``; stream the
    compile's progress; full output in ``log_file``."""
    env = dict(os.environ, MMCV_WITH_OPS='1')
    cmd = [
        sys.executable, '-m', 'pip', 'wheel', '-v', '--no-deps',
        '--no-build-isolation', '--no-cache-dir', '-w', out_dir, src
    ]
    start, shown = time.time(), -1
    with open(log_file, 'w') as out, subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env) as proc:
        for line in proc.stdout:
            out.write(line)
            step = NINJA_STEP.match(line)
            if step:
                done, total = int(step.group(1)), int(step.group(2))
                tenth = 10 * done // total
                if tenth > shown:
                    shown = tenth
                    log(f'compiling: {done}/{total} files, '
                        f'{(time.time() - start) / 60:.1f} min')
    if proc.returncode != 0:
        with open(log_file) as f:
            tail = ''.join(f.readlines()[-40:])
        raise BuildError(f'building the wheel failed (full log: {log_file}); '
                         f'its end:\n{tail}')
    wheels = glob.glob(osp.join(out_dir, f'mmcv-{MMCV_VERSION}-*.whl'))
    if len(wheels) != 1:
        raise BuildError(f'expected one mmcv wheel in {out_dir}, '
                         f'found {wheels}')
    log(f'built {osp.basename(wheels[0])} in '
        f'{(time.time() - start) / 60:.1f} min')
    return wheels[0]


def cached_wheels(folder: str) -> List[str]:
    return sorted(glob.glob(osp.join(folder, f'mmcv-{MMCV_VERSION}-*.whl')))


def build(args: argparse.Namespace, folder: str, std: int) -> str:
    """Step 3: fetch (or take ``--sdist``), patch and build; the wheel is
    left in ``folder`` (emptied first) with its ``build.log``."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    log_file = osp.join(folder, 'build.log')
    with tempfile.TemporaryDirectory(prefix='mmcv-build-') as tmp:
        sdist = args.sdist or fetch_sdist(tmp)
        src = unpack_sdist(sdist, osp.join(tmp, 'src'))
        setup = osp.join(src, 'setup.py')
        with open(setup) as f:
            text = f.read()
        with open(setup, 'w') as f:
            f.write(patch_setup(text, std))
        log(f'building a wheel from {osp.basename(sdist)} with '
            f'-std=c++{std} (10-30 min on 2 cores; log: {log_file})')
        return build_wheel(src, folder, log_file)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=f'Build mmcv {MMCV_VERSION} with its ops for the '
        'installed torch (C++ standard chosen from torch\'s headers) and '
        'install it.')
    parser.add_argument(
        '--find-links',
        help='a folder with a prebuilt mmcv wheel to try first (kept only '
        'if its ops load with the installed torch)')
    parser.add_argument(
        '--cache',
        default=osp.join(REPO, '.cache', 'mmcv'),
        help='where built wheels are kept (default: '
        '%(default)s)')
    parser.add_argument(
        '--sdist',
        help='a local mmcv source .tar.gz instead of '
        'downloading it with pip')
    parser.add_argument(
        '--cxx-std',
        type=int,
        choices=CXX_STANDARDS,
        help='the C++ standard to build with, instead of '
        'the one found from torch\'s headers')
    parser.add_argument(
        '--wheel-only',
        action='store_true',
        help='build (or find) the wheel and print its path; '
        'install nothing')
    parser.add_argument(
        '--force',
        action='store_true',
        help='rebuild even if a working mmcv is installed '
        'or a wheel is cached')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import torch
    std = args.cxx_std or required_cxx_std(torch_include_dirs())
    why = 'given by --cxx-std' if args.cxx_std else 'its headers need'
    log(f'torch {torch.__version__}: {why} -std=c++{std}')
    if not (args.wheel_only or args.force):
        ok, text = check_mmcv()
        if ok:
            log(f'already installed and working: {text}')
            return 0
        if args.find_links and install_and_check([
                '--no-index', '--find-links', args.find_links,
                f'mmcv=={MMCV_VERSION}'
        ], f'wheel from {args.find_links}'):
            return 0
    folder = osp.join(args.cache, cache_key(torch.__version__, std))
    wheels = [] if args.force else cached_wheels(folder)
    if args.wheel_only:
        print(wheels[-1] if wheels else build(args, folder, std))
        return 0
    if wheels and install_and_check([wheels[-1]], f'cached {wheels[-1]}'):
        return 0
    wheel = build(args, folder, std)
    if not install_and_check([wheel], f'built {wheel}'):
        raise BuildError('the wheel built here does not load; its build '
                         f'log: {osp.join(folder, "build.log")}')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BuildError as err:
        log(f'error: {err}')
        sys.exit(1)
