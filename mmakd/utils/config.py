# Copyright (c) mmakd contributors. All rights reserved.
"""Load configs given as local files or as ``package::path``."""
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.utils import get_installed_path, is_installed

__all__ = ['load_config', 'resolve_config_path']


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
    root = get_installed_path(distribution)
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
    also accepts it for the file itself, so
    ``tools/train.py mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py``
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
