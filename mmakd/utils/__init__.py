# Copyright (c) mmakd contributors. All rights reserved.
from .config import (fit_logger_interval, installed_package_path,
                     keep_config_file, load_config, mmakd_base_scope,
                     register_config_scope, set_work_dir)
from .launch import prepare_distributed

__all__ = [
    'fit_logger_interval', 'installed_package_path', 'keep_config_file',
    'load_config', 'mmakd_base_scope', 'prepare_distributed',
    'register_config_scope', 'set_work_dir'
]
