# Copyright (c) mmakd contributors. All rights reserved.
from .config import load_config
from .launch import prepare_distributed

__all__ = ['load_config', 'prepare_distributed']
