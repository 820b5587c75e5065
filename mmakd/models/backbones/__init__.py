# Copyright (c) mmakd contributors. All rights reserved.
from .cifar_resnet import CifarResNet
from .cifar_wide_resnet import CifarWideResNet

__all__ = ['CifarResNet', 'CifarWideResNet']
