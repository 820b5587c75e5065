# Copyright (c) mmakd contributors. All rights reserved.
from .fuse import fuse_frozen_conv_bn
from .model_spec import build_model_from_spec, load_model_config
from .preprocessor import check_preprocessors_match, preprocessing_signature

__all__ = [
    'fuse_frozen_conv_bn', 'build_model_from_spec', 'load_model_config',
    'check_preprocessors_match', 'preprocessing_signature'
]
