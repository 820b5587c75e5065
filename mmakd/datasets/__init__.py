# Copyright (c) mmakd contributors. All rights reserved.
from .shapes import CLASSES, PALETTE, generate_shapes, render_image, seg_classes

__all__ = ['CLASSES', 'PALETTE', 'generate_shapes', 'render_image', 'seg_classes']
