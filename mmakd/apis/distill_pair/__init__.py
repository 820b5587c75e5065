# Copyright (c) mmakd contributors. All rights reserved.
"""One-command distillation of two MMDetection, MMSegmentation or
MMPretrain models (``tools/train.py STUDENT --teacher T --teacher-ckpt
C``)."""
from .make import PairConfig, make_pair_config
from .plan import Pair, PairPlan, plan_pair
from .probe import PairingError
from .recipes import RECIPES, Recipe, avatar_block, recipe_for
from .writer import format_table, pair_config_dict, split_options

__all__ = [
    'PairConfig', 'make_pair_config', 'Pair', 'PairPlan', 'plan_pair',
    'PairingError', 'RECIPES', 'Recipe', 'avatar_block', 'recipe_for',
    'format_table', 'pair_config_dict', 'split_options'
]
