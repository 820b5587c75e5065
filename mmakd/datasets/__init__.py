# Copyright (c) mmakd contributors. All rights reserved.
from .cifar_like import (SyntheticCIFAR100, generate_cifar_like,
                         render_cifar_like)
from .shapes import (CLASSES, PALETTE, generate_shapes, render_image,
                     seg_classes)

__all__ = [
    'CLASSES', 'PALETTE', 'generate_shapes', 'render_image', 'seg_classes',
    'SyntheticCIFAR100', 'generate_cifar_like', 'render_cifar_like'
]
