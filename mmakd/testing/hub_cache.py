# Copyright (c) mmakd contributors. All rights reserved.
"""Seed the checkpoint cache so that backbone ``init_cfg`` works offline.

Stock OpenMMLab configs initialise backbones from ImageNet checkpoints
(``torchvision://resnet50``, ``open-mmlab://resnet18_v1c``) that the runner
downloads on first use. For tests and demos that must run without network,
:func:`seed_checkpoint_cache` writes **randomly initialised** weights with
the right keys under the cache file names MMEngine looks for, so the
runner's ``init_weights()`` finds them and downloads nothing. The weights
are random: nothing trained with them should be reported as pretrained.
torchvision ResNets are drawn with ``zero_init_residual=True`` (every
residual block starts as the identity), so activations keep a moderate
scale through deep networks, as in a pretrained one; with the plain random
draw a ResNet-101's FPN outputs reach a standard deviation of about 1e4
against about 1e2 for a ResNet-50's, which no trained pair shows.
"""
import os
import os.path as osp
from typing import Dict, Iterable, List
from urllib.parse import urlparse

import torch

__all__ = ['seed_checkpoint_cache']


def _url(name: str) -> str:
    from mmengine.runner.checkpoint import (get_deprecated_model_names,
                                            get_external_models,
                                            get_torchvision_models)
    scheme, model = name.split('://', 1)
    if scheme == 'torchvision':
        return get_torchvision_models()[model]
    if scheme == 'open-mmlab':
        model = get_deprecated_model_names().get(model, model)
        return get_external_models()[model]
    raise ValueError(f'unsupported checkpoint scheme in {name!r}')


def _random_state_dict(name: str) -> Dict[str, torch.Tensor]:
    scheme, model = name.split('://', 1)
    if scheme == 'torchvision':
        import torchvision
        builder = getattr(torchvision.models, model)
        kwargs = dict(zero_init_residual=True) if model.startswith(
            ('resnet', 'resnext', 'wide_resnet')) else {}
        return builder(weights=None, **kwargs).state_dict()
    # open-mmlab://resnet{depth}_v1c: mmseg/mmdet ResNetV1c backbones.
    from mmdet.models.backbones import ResNetV1d
    from mmseg.models.backbones import ResNetV1c
    depth = int(model.split('_')[0].replace('resnet', ''))
    if model.endswith('v1c'):
        return ResNetV1c(depth=depth).state_dict()
    if model.endswith('v1d'):
        return ResNetV1d(depth=depth).state_dict()
    raise ValueError(f'no random weights known for {name!r}')


def seed_checkpoint_cache(names: Iterable[str], torch_home: str) -> List[str]:
    """Write random-weight checkpoints where MMEngine caches downloads.

    Args:
        names (Iterable[str]): Checkpoint names as they appear in configs,
            e.g. ``'torchvision://resnet50'``, ``'open-mmlab://resnet18_v1c'``.
        torch_home (str): The ``TORCH_HOME`` the runner will see.

    Returns:
        list[str]: The written (or already present) files.
    """
    # torch.hub.load_state_dict_from_url caches in $TORCH_HOME/hub/checkpoints
    folder = osp.join(torch_home, 'hub', 'checkpoints')
    os.makedirs(folder, exist_ok=True)
    written = []
    for name in names:
        path = osp.join(folder, osp.basename(urlparse(_url(name)).path))
        if not osp.isfile(path):
            torch.save(_random_state_dict(name), path)
        written.append(path)
    return written
