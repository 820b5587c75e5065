# Copyright (c) mmakd contributors. All rights reserved.
"""Helpers that generate small inputs for tests, demos and benchmarks."""
from .batches import (batch_for_model, cls_batch, det_batch, num_classes_of,
                      seg_batch)
from .configs import random_weights_overrides, shapes_det_overrides
from .hub_cache import seed_checkpoint_cache
from .syncs import CountHostSyncs

__all__ = [
    'batch_for_model', 'cls_batch', 'det_batch', 'num_classes_of', 'seg_batch',
    'random_weights_overrides', 'shapes_det_overrides',
    'seed_checkpoint_cache', 'CountHostSyncs'
]
