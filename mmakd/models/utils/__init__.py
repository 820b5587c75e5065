# Copyright (c) mmakd contributors. All rights reserved.
from .model_spec import build_model_from_spec, load_model_config
from .preprocessor import check_preprocessors_match, preprocessing_signature
from .statistics import (avatar_uncertainty, avatar_weights, channel_moments,
                         standardize)

__all__ = [
    'build_model_from_spec', 'load_model_config', 'check_preprocessors_match',
    'preprocessing_signature', 'avatar_uncertainty', 'avatar_weights',
    'channel_moments', 'standardize'
]
