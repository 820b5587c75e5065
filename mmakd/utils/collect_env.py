# Copyright (c) mmakd contributors. All rights reserved.
"""Print the software stack mmakd runs on, for bug reports.

    python -m mmakd.utils.collect_env

Prints what MMDetection's ``collect_env`` prints (Python, PyTorch and the
CUDA it was built with, GCC, OpenCV, MMEngine), then MMCV and whether its
compiled ops load (and with which CUDA), each OpenMMLab package mmakd runs
on, mmakd itself (with the git commit of a source checkout), and what
``import mmakd`` changed in them (:mod:`mmakd.compat`, the ``mmakd::``
config scope).
"""
import importlib
import os.path as osp
import subprocess
from collections import OrderedDict
from typing import Dict

from mmengine.utils import get_installed_path
from mmengine.utils.dl_utils import collect_env as collect_base_env

import mmakd
from mmakd import compat
from mmakd.utils.config import CONFIG_SCOPE, installed_package_path

__all__ = ['collect_env', 'main']

#: Shown as ``name: version``, in this order (display name, module).
PACKAGES = (('MMDetection', 'mmdet'), ('MMSegmentation', 'mmseg'),
            ('MMRazor', 'mmrazor'), ('MMPretrain', 'mmpretrain'))


def mmcv_ops() -> str:
    """Whether MMCV's compiled ops (``mmcv._ext``) load, and how they were
    built; ``'not compiled: <error>'`` for an MMCV installed without ops
    (e.g. ``pip install mmcv`` that skipped the build)."""
    try:
        ext = importlib.import_module('mmcv._ext')
    except ImportError as error:  # also an ABI mismatch with torch
        return f'not compiled ({error})'
    cuda = ext.get_compiling_cuda_version()
    cuda = 'without CUDA' if cuda == 'not available' else f'with CUDA {cuda}'
    return f'compiled {cuda}, {ext.get_compiler_version()}'


def _version(module_name: str) -> str:
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        return f'not importable ({error})'
    return getattr(module, '__version__', 'unknown')


def _mmakd_version() -> str:
    """mmakd's version, with the commit when imported from a git checkout
    (``pip install -e .``)."""
    root = osp.dirname(osp.dirname(osp.abspath(mmakd.__file__)))
    if not osp.exists(osp.join(root, '.git')):
        return mmakd.__version__
    try:
        commit = subprocess.run(
            ['git', '-C', root, 'rev-parse', '--short', 'HEAD'],
            capture_output=True,
            text=True,
            timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ''
    return f'{mmakd.__version__}+{commit}' if commit else mmakd.__version__


def compat_changes() -> Dict[str, str]:
    """What ``import mmakd`` changed, one line per fix (``'nothing'`` when
    this stack needed none of them)."""
    report = compat.apply()  # idempotent: the report of the first call
    lines = OrderedDict()
    lines['fuser helpers back-ported'] = ', '.join(
        report.fuser_helpers) or 'none'
    lines['torch.ao submodules imported'] = ', '.join(
        report.imported_submodules) or 'none'
    lines['MMRazor modules guarded'] = ', '.join(
        report.guarded_modules) or 'none'
    if report.deferred_errors:
        lines['deferred import errors'] = '; '.join(
            f'{name}: {error}'
            for name, error in report.deferred_errors.items())
    lines['weights_only allow-list'] = (f'{len(report.safe_globals)} names'
                                        if report.safe_globals else 'none')
    if report.checkpoint_error:
        lines['checkpoint loading'] = report.checkpoint_error
    configs = osp.join(installed_package_path(CONFIG_SCOPE), '.mim', 'configs')
    mmengine_path = get_installed_path(CONFIG_SCOPE)
    if not osp.isdir(mmengine_path):  # what the editable fallback repairs
        configs += (f' (an editable install: MMEngine alone would look in '
                    f'{mmengine_path})')
    lines['configs (mmakd::)'] = configs
    return lines


def collect_env() -> Dict[str, str]:
    """The environment as ``{name: value}``, MMDetection's keys first.

    Returns:
        dict[str, str]: Ordered name -> description.
    """
    import mmcv
    import torch
    env = OrderedDict()
    for name, value in collect_base_env().items():
        env[name] = value
        if name == 'PyTorch':
            env['PyTorch CUDA'] = torch.version.cuda or 'none (CPU build)'
    env['MMCV'] = mmcv.__version__
    env['MMCV ops'] = mmcv_ops()
    for name, module in PACKAGES:
        env[name] = _version(module)
    env['mmakd'] = _mmakd_version()
    for name, value in compat_changes().items():
        env[f'mmakd.compat {name}'] = value
    return env


def main() -> None:
    for name, value in collect_env().items():
        print(f'{name}: {value}')


if __name__ == '__main__':
    main()
