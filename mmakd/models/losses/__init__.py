# Copyright (c) mmakd contributors. All rights reserved.
from .maskd_loss import MasKDLoss, mask_diversity

__all__ = ['MasKDLoss', 'mask_diversity']
