# Copyright (c) mmakd contributors. All rights reserved.
"""Make the wheel folder of the CUDA check (behind
``tools/misc/make_cuda_wheels.py``)."""
import datetime
import json
import os
import os.path as osp
import sys
from typing import Any, Callable, Dict, Iterable, Optional, Sequence

from .bootstrap import MANIFEST
from .wheels import (GPU_IMAGE, build_mmcv_wheel, download_wheel,
                     find_mmcv_wheel, manifest_entry, normalize, stack_closure,
                     strip_wheel, wheel_name_version)

__all__ = ['make_wheelhouse', 'DEFAULT_MMCV_FOLDER']

#: Where a prebuilt mmcv wheel for the target is looked for first
#: (``{cuda}``, ``{python}`` (3.12), ``{py}`` (312) and ``{torch}`` filled
#: in), relative to the repository: the shared wheelhouse beside the
#: checkout.
DEFAULT_MMCV_FOLDER = osp.join('..', 'shared', 'wheelhouse',
                               'cuda{cuda}-py{py}-torch{torch}')


def make_wheelhouse(out: str,
                    repo: str,
                    python_version: str = '3.12',
                    torch: str = '2.11.0',
                    cuda: str = '13.0',
                    arch: str = '9.0',
                    mmcv_folders: Sequence[str] = (),
                    build_mmcv: bool = False,
                    build_python: Optional[str] = None,
                    cache: Optional[str] = None,
                    present: Iterable[str] = GPU_IMAGE,
                    include: Iterable[str] = (),
                    command: str = '',
                    echo: Callable[[str], None] = print) -> Dict[str, Any]:
    """Fill ``out`` with the wheels the CUDA check installs and write its
    manifest; wheels already in ``out`` at the right version are kept.

    Args:
        out (str): The wheel folder (git-ignored, carried to the GPU).
        repo (str): The repository (for ``build_mmcv.py`` and the cache).
        python_version (str): The GPU machine's Python, ``3.12``.
        torch (str): Its torch release, ``2.11.0`` (mmcv's ops must be
            compiled against it).
        cuda (str): The CUDA version of that torch and of nvcc.
        arch (str): ``TORCH_CUDA_ARCH_LIST`` for a build (``9.0``: Hopper).
        mmcv_folders (list[str]): Folders to take a prebuilt mmcv wheel for
            the target from; the first match wins.
        build_mmcv (bool): Compile mmcv even if a prebuilt wheel exists.
        build_python (str, optional): Interpreter of ``python_version`` for
            the build venv (default ``python{python_version}``).
        cache (str, optional): Where the build venv and wheel are kept
            (default ``.cache/cuda-wheels`` in ``repo``).
        present (list[str]): Distributions the GPU machine already has.
        include (list[str]): Distributions to add although ``present``.
        command (str): The command line, for the manifest.
        echo (callable): Progress output.

    Returns:
        dict: The manifest (also written to ``out/manifest.json``).
    """
    os.makedirs(out, exist_ok=True)
    include = list(include)
    wanted = {normalize(name) for name in include}
    present = [p for p in present if normalize(p) not in wanted]
    wheels = []
    pinned = stack_closure(
        present=present, extra=include, python_version=python_version)
    echo(f'[wheels] {len(pinned)} distributions for Python {python_version} '
         f'(versions as installed here; the GPU image has {len(present)} '
         'of the stack already)')
    for index, (name, version) in enumerate(pinned, 1):
        have = [
            f for f in os.listdir(out)
            if f.endswith('.whl') and wheel_name_version(f) == (name, version)
        ]
        filename = have[0] if have else download_wheel(name, version, out,
                                                       python_version)
        echo(f'[wheels] {index}/{len(pinned)} {filename}' +
             (' (kept)' if have else ''))
        wheels.append(manifest_entry(out, filename))

    tag = 'cp' + python_version.replace('.', '')
    target = osp.join(out, f'mmcv-2.1.0-{tag}-{tag}-linux_x86_64.whl')
    folders = [
        f.format(
            cuda=cuda,
            python=python_version,
            py=python_version.replace('.', ''),
            torch=torch) for f in mmcv_folders
    ]
    source = None if build_mmcv else find_mmcv_wheel(folders, python_version)
    if source is None:
        cache = cache or osp.join(repo, '.cache', 'cuda-wheels')
        echo(f'[wheels] compiling mmcv 2.1.0 with CUDA ops for torch {torch}'
             f', arch {arch} (20-30 min on 2 cores)')
        source = build_mmcv_wheel(
            build_python or f'python{python_version}', torch, arch,
            osp.join(cache, f'venv-py{python_version}-torch{torch}'),
            osp.join(cache, 'mmcv'), repo)
    sizes = strip_wheel(source, target)
    echo(f'[wheels] mmcv from {source}: {sizes["before"] / 1e6:.1f} MB, '
         f'{sizes["after"] / 1e6:.1f} MB without debug information')
    entry = manifest_entry(out, osp.basename(target))
    entry.update(source=osp.basename(source), source_bytes=sizes['before'])
    wheels.append(entry)

    keep = {w['file'] for w in wheels}
    for stale in os.listdir(out):
        if stale.endswith('.whl') and stale not in keep:
            os.remove(osp.join(out, stale))
    manifest = dict(
        python=python_version,
        torch=torch,
        cuda=cuda,
        arch=arch,
        made_with=dict(
            python=sys.version.split()[0],
            date=datetime.date.today().isoformat(),
            command=command),
        assumed_present=sorted(present),
        total_bytes=sum(w['bytes'] for w in wheels),
        wheels=wheels)
    with open(osp.join(out, MANIFEST), 'w') as f:
        json.dump(manifest, f, indent=2)
    return manifest
