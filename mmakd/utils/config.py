# Copyright (c) mmakd contributors. All rights reserved.
"""Load configs given as local files or as ``package::path``.

:func:`register_config_scope` (called by ``import mmakd``) lets MMEngine
resolve ``_base_ = 'mmakd::akd/...'`` in any config: it adds mmakd to
MMEngine's table of packages that ship configs, and makes MMEngine find an
installed package's folder for editable installs too.
"""
import importlib.util
import os.path as osp
from typing import List, Optional

import mmengine.config.config as mmengine_config
from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.utils import get_installed_path, is_installed

__all__ = [
    'load_config', 'resolve_config_path', 'installed_package_path',
    'register_config_scope'
]

#: The ``package::`` prefix of the configs mmakd ships (``mmakd/.mim``).
CONFIG_SCOPE = 'mmakd'


def installed_package_path(package: str) -> str:
    """The folder an installed package is imported from.

    MMEngine's ``get_installed_path`` (and MIM's) joins the distribution's
    location with the module name. For a PEP 660 editable install
    (``pip install -e .``) that location is ``site-packages``, where the
    package is not, so ``package::`` configs do not resolve. This asks the
    import system instead whenever MMEngine's answer does not exist, and
    returns MMEngine's answer otherwise.

    Args:
        package (str): Distribution name, e.g. ``'mmakd'`` or
            ``'mmsegmentation'``.

    Returns:
        str: The package folder (``.../mmakd``).
    """
    path = get_installed_path(package)
    if osp.isdir(path):
        return path
    spec = importlib.util.find_spec(osp.basename(path))
    if spec is not None and spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return path


def register_config_scope() -> List[str]:
    """Make ``mmakd::`` config paths resolve in MMEngine; idempotent.

    Needs ``import mmakd`` before the config is parsed (MMEngine resolves
    ``_base_`` before it runs ``custom_imports``): mmakd's
    ``tools/train.py``, ``tools/test.py`` and ``mim train mmakd`` do that.

    Returns:
        list[str]: What this call changed (empty when already done).
    """
    changed = []
    if MODULE2PACKAGE.get(CONFIG_SCOPE) != CONFIG_SCOPE:
        MODULE2PACKAGE[CONFIG_SCOPE] = CONFIG_SCOPE
        changed.append(
            f'mmengine.config.utils.MODULE2PACKAGE[{CONFIG_SCOPE!r}]')
    if mmengine_config.get_installed_path is not installed_package_path:
        mmengine_config.get_installed_path = installed_package_path
        changed.append('mmengine.config.config.get_installed_path (falls '
                       'back to the import system for editable installs)')
    return changed


def resolve_config_path(path: str) -> str:
    """Return the file a config path names.

    Args:
        path (str): A local file, or ``'mmrazor::distill/mmdet/cwd/x.py'``
            for a config an installed package ships (under its ``.mim``
            folder, or its source tree's ``configs`` for editable installs).

    Returns:
        str: An existing file path.
    """
    if osp.isfile(path) or '::' not in path:
        if not osp.isfile(path):
            raise FileNotFoundError(f'config file {path!r} does not exist.')
        return path
    package, relative = path.split('::', 1)
    distribution = MODULE2PACKAGE.get(package, package)
    if not is_installed(distribution):
        raise FileNotFoundError(
            f'config {path!r}: package {package!r} is not installed '
            f'(pip install {distribution}).')
    root = installed_package_path(distribution)
    candidates = [
        osp.join(root, '.mim', 'configs', relative),
        osp.join(osp.dirname(root), 'configs', relative),
    ]
    for candidate in candidates:
        if osp.isfile(candidate):
            return candidate
    raise FileNotFoundError(f'config {path!r}: none of {candidates} exists.')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Load a config, resolving a ``package::`` prefix for the top file.

    ``Config.fromfile`` resolves ``package::`` only inside ``_base_``; this
    also accepts it for the file itself, so ``tools/train.py
    mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py``
    works.

    Args:
        path (str): Config path, local or ``package::relative``.
        cfg_options (dict, optional): ``--cfg-options`` to merge.

    Returns:
        Config: The loaded config; ``cfg.filename`` is the resolved file.
    """
    cfg = Config.fromfile(resolve_config_path(path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg
