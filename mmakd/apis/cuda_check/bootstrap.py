# Copyright (c) mmakd contributors. All rights reserved.
"""Install what the CUDA check needs from a wheel folder, before ``mmakd``
can be imported.

Standard library only: ``tools/misc/cuda_check.py`` loads this file by its
path on a machine that may not have MMEngine, mmcv or the other OpenMMLab
packages yet (a GPU machine with only PyTorch and no network). The folder
is what ``tools/misc/make_cuda_wheels.py`` writes: wheels and a
``manifest.json`` naming the Python, torch and CUDA they were made for.
"""
import importlib.metadata
import json
import os.path as osp
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

#: The distributions mmakd runs on, with the module each one provides.
STACK = (('mmcv', 'mmcv'), ('mmengine', 'mmengine'), ('mmdet', 'mmdet'),
         ('mmsegmentation', 'mmseg'), ('mmrazor', 'mmrazor'),
         ('mmpretrain', 'mmpretrain'), ('pycocotools', 'pycocotools'))
MANIFEST = 'manifest.json'

#: Run in a fresh interpreter after installing: every stack module imports
#: beside the installed torch, and so does ``mmakd`` with mmcv's ops. Prints
#: the versions (and the GPU) as JSON, or writes them to ``argv[1]``.
VERIFY_CODE = """
import json, sys
import torch
import mmakd, mmcv, mmcv.ops, mmdet, mmengine, mmpretrain, mmrazor, mmseg
cuda = torch.cuda.is_available()
info = dict(python=sys.version.split()[0], torch=torch.__version__,
            torch_cuda=torch.version.cuda, cuda_available=cuda,
            gpu=torch.cuda.get_device_name() if cuda else None,
            mmcv=mmcv.__version__,
            mmcv_ops_cuda=mmcv.ops.get_compiling_cuda_version(),
            mmengine=mmengine.__version__, mmdet=mmdet.__version__,
            mmseg=mmseg.__version__, mmrazor=mmrazor.__version__,
            mmpretrain=mmpretrain.__version__, mmakd=mmakd.__version__)
if len(sys.argv) > 1:
    with open(sys.argv[1], 'w') as f:
        json.dump(info, f, indent=2)
else:
    print(json.dumps(info))
"""


class InstallError(RuntimeError):
    """What is missing cannot be installed; the message says what to do."""


def installed_version(name: str) -> Optional[str]:
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_stack() -> List[str]:
    """The distributions of :data:`STACK` that are not installed."""
    return [name for name, _ in STACK if installed_version(name) is None]


def read_manifest(folder: str) -> Dict[str, Any]:
    """The manifest of a wheel folder made by ``make_cuda_wheels.py``."""
    path = osp.join(folder, MANIFEST)
    if not osp.isfile(path):
        raise InstallError(
            f'no {MANIFEST} in {folder}: make the wheel folder with '
            'tools/misc/make_cuda_wheels.py (docs/performance.md, "CUDA '
            'acceptance kit")')
    with open(path) as f:
        return json.load(f)


def _release(version: str) -> str:
    return version.split('+')[0]


def check_target(manifest: Dict[str, Any], python: str,
                 torch_version: Optional[str]) -> None:
    """Refuse a wheel folder made for another Python or torch: mmcv's ops
    load only with the torch they were compiled against."""
    made_for = (f"Python {manifest['python']}, torch {manifest['torch']}")
    if python != manifest['python']:
        raise InstallError(
            f'the wheels were made for {made_for}; this is Python {python}. '
            'Make a folder for it: tools/misc/make_cuda_wheels.py '
            f'--python {python}')
    if torch_version is None:
        raise InstallError(f'torch is not installed; the wheels need torch '
                           f"{manifest['torch']} (the machine's own)")
    if _release(torch_version) != _release(manifest['torch']):
        raise InstallError(
            f'the wheels were made for {made_for}; this machine has torch '
            f'{torch_version}. Make a folder for it: '
            'tools/misc/make_cuda_wheels.py --torch '
            f'{_release(torch_version)} --build-mmcv')


def wheels_to_install(manifest: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The manifest's wheels whose distribution is missing here or
    installed at another version."""
    return [
        wheel for wheel in manifest['wheels']
        if installed_version(wheel['name']) != wheel['version']
    ]


def install(folder: Optional[str],
            python: str = sys.executable,
            echo: Callable[[str], None] = print) -> Dict[str, Any]:
    """Install from ``folder`` what is missing, then check the stack
    imports in a fresh interpreter.

    Args:
        folder (str, optional): A wheel folder with a manifest. Without one
            nothing is installed, and a missing distribution is an error.
        python (str): The interpreter to install into and check. What is
            missing, and which Python and torch the folder must be for, are
            read in *this* process: ``python`` must be this interpreter or
            one that sees the same packages (a venv over them).
        echo (callable): Prints progress.

    Returns:
        dict: ``installed`` (names), ``bytes``, ``seconds`` and ``versions``
        (what the fresh interpreter imported).
    """
    start = time.time()
    todo: List[Dict[str, Any]] = []
    # A folder without a manifest is an error only when something is missing.
    if folder and (osp.isfile(osp.join(folder, MANIFEST)) or missing_stack()):
        manifest = read_manifest(folder)
        todo = wheels_to_install(manifest)
        if todo:
            check_target(manifest, '.'.join(map(str, sys.version_info[:2])),
                         installed_version('torch'))
    missing = sorted(set(missing_stack()) - {wheel['name'] for wheel in todo})
    if missing:
        where = f'{folder} has no wheel for them' if folder else (
            'give a wheel folder with --wheels')
        raise InstallError(f"not installed: {', '.join(missing)}; {where}")
    if todo:
        echo(f'[cuda-check] installing {len(todo)} wheels from {folder}: ' +
             ', '.join(f"{w['name']}=={w['version']}" for w in todo))
        files = [osp.join(folder, wheel['file']) for wheel in todo]
        proc = subprocess.run(
            [python, '-m', 'pip', 'install', '--no-index', '--no-deps'] +
            files,
            capture_output=True,
            text=True)
        if proc.returncode != 0:
            raise InstallError('pip install failed:\n' +
                               (proc.stdout + proc.stderr)[-3000:])
    proc = subprocess.run(
        [python, '-c', VERIFY_CODE],
        capture_output=True,
        text=True,
        cwd=osp.dirname(
            osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))))
    if proc.returncode != 0:
        raise InstallError('the stack does not import:\n' +
                           proc.stderr[-3000:])
    return dict(
        installed=[wheel['name'] for wheel in todo],
        bytes=sum(wheel['bytes'] for wheel in todo),
        seconds=round(time.time() - start, 1),
        versions=json.loads(proc.stdout.strip().splitlines()[-1]))
