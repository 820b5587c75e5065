# Copyright (c) mmakd contributors. All rights reserved.
from .maskd_loss import MasKDLoss, mask_diversity

__all__ = ['MasKDLoss', 'mask_diversity']
from .mgkd_granularity_loss import MGKDGranularityLoss  # noqa: E402
from .mgkd_granularity_loss import mgkd_kl_divergence
from .mgkd_stable_excitation_loss import MGKDStableExcitationLoss  # noqa

__all__ += [
    'MGKDGranularityLoss', 'MGKDStableExcitationLoss', 'mgkd_kl_divergence'
]
