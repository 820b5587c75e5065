# Copyright (c) mmakd contributors. All rights reserved.
"""Load configs given as local files or as ``package::path``.

:func:`register_config_scope` (called by ``import mmakd``) lets MMEngine
resolve ``_base_ = 'mmakd::akd/...'`` in any config: it adds mmakd to
MMEngine's table of packages that ship configs, and makes MMEngine find an
installed package's folder for editable installs too.

mmakd has no registry scope of its own: its modules register into MMRazor's
registries, and each of its configs names the scope it is written for
(``default_scope='mmdet'``, ``'mmseg'``, ``'mmpretrain'``). MMEngine stamps
the top-level dicts of a ``package::`` base with ``_scope_=package``; for
``mmakd::`` that scope has no registries, so every lookup would fall back to
MMEngine's root and fail (``EncoderDecoder is not in the mmengine::model
registry``). :func:`register_config_scope` therefore makes an ``mmakd::``
base stamp its dicts with the ``default_scope`` the base file declares, so
they build exactly as when the file is used from the clone.
"""
import importlib.util
import os.path as osp
from typing import List, Optional, Tuple

import mmengine.config.config as mmengine_config
from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.utils import get_installed_path, is_installed

__all__ = [
    'load_config', 'resolve_config_path', 'installed_package_path',
    'mmakd_base_scope', 'register_config_scope', 'fit_logger_interval',
    'keep_config_file', 'set_work_dir'
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


def mmakd_base_scope(path: str) -> Optional[str]:
    """The scope the dicts of an ``mmakd::`` base config build in.

    Args:
        path (str): The resolved file of the base config.

    Returns:
        str | None: The ``default_scope`` the file declares or inherits;
        None (no stamp: the dicts resolve in the inheriting config's default
        scope, as a local base's do) when it declares none.
    """
    scope = Config.fromfile(
        path, import_custom_modules=False).get('default_scope')
    return scope if isinstance(scope, str) else None


_ORIGINAL_GET_CFG_PATH = mmengine_config.Config._get_cfg_path


def _get_cfg_path(cfg_path: str, filename: str) -> Tuple[str, Optional[str]]:
    """``Config._get_cfg_path`` whose scope for an ``mmakd::`` base is the
    base's own ``default_scope`` (:func:`mmakd_base_scope`) instead of
    ``'mmakd'``."""
    path, scope = _ORIGINAL_GET_CFG_PATH(cfg_path, filename)
    if scope == CONFIG_SCOPE:
        scope = mmakd_base_scope(path)
    return path, scope


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
    if Config.__dict__['_get_cfg_path'].__func__ is not _get_cfg_path:
        Config._get_cfg_path = staticmethod(_get_cfg_path)
        changed.append('mmengine.config.Config._get_cfg_path (an mmakd:: '
                       "base's dicts build in its own default_scope)")
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


#: MMEngine's ``LoggerHook`` interval when a config sets none.
DEFAULT_LOG_INTERVAL = 10


def fit_logger_interval(cfg: Config) -> Optional[str]:
    """Make an iteration-based run shorter than its logger interval log.

    MMEngine's ``LoggerHook`` prints the losses every ``interval``
    iterations only, so a run of ``train_cfg.max_iters`` below that interval
    (a first try, a smoke test) printed no loss line at all. The interval
    is then set to ``max_iters``: the run logs once, at its last iteration.
    Epoch-based runs log at the end of each epoch already and are left as
    they are.

    Args:
        cfg (Config): The training config; changed in place.

    Returns:
        str | None: What was changed, for the log; None when nothing was.
    """
    max_iters = (cfg.get('train_cfg') or {}).get('max_iters')
    logger = (cfg.get('default_hooks') or {}).get('logger')
    if not isinstance(max_iters, int) or max_iters < 1 or not isinstance(
            logger, dict):
        return None
    interval = logger.get('interval', DEFAULT_LOG_INTERVAL)
    if interval <= max_iters:
        return None
    logger['interval'] = max_iters
    return (f'default_hooks.logger.interval={interval} is longer than the '
            f'run (train_cfg.max_iters={max_iters}): set to {max_iters}, '
            'so that the losses are logged once, at the last iteration')


def set_work_dir(cfg: Config, work_dir: Optional[str] = None) -> None:
    """Set ``cfg.work_dir`` as OpenMMLab's tools do: ``work_dir`` (the
    command line's ``--work-dir``) if given, else the config's own, else
    ``./work_dirs/<config file name without .py>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(cfg.filename))[0])


def keep_config_file(cfg: Config) -> Tuple[Config, Optional[str]]:
    """Keep MMEngine from overwriting a config that lives in its own work
    directory.

    MMEngine's ``Runner`` dumps the whole, resolved config to
    ``work_dir/<name of the config file>``; for a config inside
    ``cfg.work_dir`` (a one-command distillation config, run again with
    the same work dir) that replaces the readable file by the dump. The
    dump then goes to ``<name>_full.py`` instead.

    Args:
        cfg (Config): The loaded config, with ``work_dir`` set.

    Returns:
        tuple: The config to run (a copy whose dump goes elsewhere, or
        ``cfg``) and a note for the log (None when unchanged).
    """
    filename = cfg.filename
    if not filename or not osp.isdir(cfg.work_dir) or not osp.samefile(
            osp.dirname(osp.abspath(filename)), cfg.work_dir):
        return cfg, None
    dump = osp.splitext(filename)[0] + '_full.py'
    kept = Config(
        cfg._cfg_dict.to_dict(),
        cfg_text=cfg.text,
        filename=dump,
        env_variables=cfg.env_variables)
    return kept, (f'{osp.basename(filename)} is in the work dir: '
                  f'MMEngine\'s dump of the resolved config goes to '
                  f'{osp.basename(dump)}, so that it is kept')
