# Copyright (c) mmakd contributors. All rights reserved.
"""mmakd: Avatar Knowledge Distillation and multi-granularity distillation
for MMDetection 3.x and MMSegmentation 1.x through MMRazor 1.x.

Importing this package first makes MMRazor 1.0.0 and MMEngine 0.10.x work
on the installed PyTorch (:mod:`mmakd.compat`), then registers every mmakd
module into MMRazor's own registries (no new scope), so configs written with
``_scope_='mmrazor'`` and configs with
``custom_imports=dict(imports=['mmakd'], allow_failed_imports=False)`` both
find them, and lets MMEngine resolve ``mmakd::`` config paths (the configs
ship in the package, under ``mmakd/.mim``).
"""
from . import compat

compat.apply()

import mmcv  # noqa: E402
import mmengine  # noqa: E402
import mmrazor  # noqa: E402
from mmengine.utils import digit_version  # noqa: E402

from .version import __version__, version_info  # noqa: E402

_REQUIRED = {
    # package: (module, minimum inclusive, maximum exclusive)
    'mmcv': (mmcv, '2.0.0', '2.2.0'),
    'mmengine': (mmengine, '0.8.0', '1.0.0'),
    'mmrazor': (mmrazor, '1.0.0', '1.1.0'),
}
for _name, (_module, _low, _high) in _REQUIRED.items():
    _version = digit_version(_module.__version__)
    if not digit_version(_low) <= _version < digit_version(_high):
        raise ImportError(
            f'mmakd {__version__} needs {_name}>={_low},<{_high}, but '
            f'{_name}=={_module.__version__} is installed.')

from . import engine, models  # noqa: E402,F401  (registers mmakd's modules)
from .utils.config import register_config_scope  # noqa: E402

register_config_scope()  # `_base_ = 'mmakd::...'` in any config

__all__ = ['__version__', 'version_info', 'compat', 'engine', 'models']
