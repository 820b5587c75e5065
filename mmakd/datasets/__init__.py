# Copyright (c) mmakd contributors. All rights reserved.
from .shapes import CLASSES, PALETTE, generate_shapes, render_image, seg_classes

__all__ = ['CLASSES', 'PALETTE', 'generate_shapes', 'render_image', 'seg_classes']
from .cifar_like import (SyntheticCIFAR100, generate_cifar_like,  # noqa: E402
                         render_cifar_like)

__all__ += ['SyntheticCIFAR100', 'generate_cifar_like', 'render_cifar_like']
