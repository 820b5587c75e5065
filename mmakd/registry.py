# Copyright (c) mmakd contributors. All rights reserved.
"""mmakd's registries are MMRazor's own.

mmakd adds no scope: every module registers into :mod:`mmrazor.registry`, so
``type='AvatarDistiller'`` resolves under ``_scope_='mmrazor'`` exactly like
MMRazor's own ``ConfigurableDistiller``. If a scope is ever needed, this is
the one place to change.
"""
from mmrazor.registry import HOOKS, LOOPS, MODELS, OPTIM_WRAPPERS, TASK_UTILS

__all__ = ['MODELS', 'TASK_UTILS', 'HOOKS', 'LOOPS', 'OPTIM_WRAPPERS']
