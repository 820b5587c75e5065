# Copyright (c) mmakd contributors. All rights reserved.
"""Tiny generated batches in the formats MMDetection and MMSegmentation
data preprocessors expect (what their dataloaders would produce)."""
from typing import Dict, List

import torch

__all__ = [
    'det_batch', 'seg_batch', 'cls_batch', 'batch_for_model', 'num_classes_of'
]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _image(gen: torch.Generator, height: int, width: int) -> torch.Tensor:
    """A random (3, H, W) uint8 image."""
    return torch.randint(
        0, 256, (3, height, width), generator=gen).to(torch.uint8)


def det_batch(batch_size: int = 2,
              height: int = 64,
              width: int = 64,
              num_classes: int = 80,
              boxes_per_image: int = 2,
              seed: int = 0) -> Dict[str, List]:
    """A detection batch: uint8 images and ``DetDataSample``s with boxes.

    Args:
        batch_size (int): Number of images. Defaults to 2.
        height (int): Image height. Defaults to 64.
        width (int): Image width. Defaults to 64.
        num_classes (int): Labels are drawn from ``range(num_classes)``.
            Defaults to 80.
        boxes_per_image (int): Ground-truth boxes per image. Defaults to 2.
        seed (int): Seed of the generator. Defaults to 0.

    Returns:
        dict: ``inputs`` (list of (3, H, W) uint8 tensors) and
        ``data_samples`` (list of ``DetDataSample``).
    """
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    gen = _generator(seed)
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(_image(gen, height, width))
        xy = torch.rand(boxes_per_image, 2, generator=gen) * 0.6
        wh = 0.15 + torch.rand(boxes_per_image, 2, generator=gen) * 0.25
        scale = torch.tensor([width, height], dtype=torch.float32)
        boxes = torch.cat([xy * scale, (xy + wh) * scale], dim=1)
        sample = DetDataSample(
            metainfo=dict(
                img_shape=(height, width),
                ori_shape=(height, width),
                pad_shape=(height, width),
                batch_input_shape=(height, width),
                scale_factor=(1.0, 1.0),
                flip=False))
        sample.gt_instances = InstanceData(
            bboxes=boxes,
            labels=torch.randint(
                0, num_classes, (boxes_per_image, ), generator=gen))
        sample.ignored_instances = InstanceData(
            bboxes=torch.zeros(0, 4), labels=torch.zeros(0).long())
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def seg_batch(batch_size: int = 2,
              height: int = 64,
              width: int = 64,
              num_classes: int = 19,
              seed: int = 0) -> Dict[str, List]:
    """A segmentation batch: uint8 images and ``SegDataSample``s.

    Args:
        batch_size (int): Number of images. Defaults to 2.
        height (int): Image height. Defaults to 64.
        width (int): Image width. Defaults to 64.
        num_classes (int): Labels are drawn from ``range(num_classes)``.
            Defaults to 19 (Cityscapes).
        seed (int): Seed of the generator. Defaults to 0.

    Returns:
        dict: ``inputs`` and ``data_samples`` (``SegDataSample`` with
        ``gt_sem_seg``).
    """
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = _generator(seed)
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(_image(gen, height, width))
        # Blocky labels, so that they are learnable rather than pure noise.
        coarse = torch.randint(
            0,
            num_classes, (1, 1, max(height // 8, 1), max(width // 8, 1)),
            generator=gen).float()
        labels = torch.nn.functional.interpolate(
            coarse, size=(height, width), mode='nearest')[0].long()
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(height, width),
                ori_shape=(height, width),
                pad_shape=(height, width),
                scale_factor=(1.0, 1.0),
                flip=False))
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def cls_batch(batch_size: int = 2,
              height: int = 32,
              width: int = 32,
              num_classes: int = 100,
              seed: int = 0) -> Dict[str, List]:
    """A classification batch: uint8 images and MMPretrain ``DataSample``s
    with one ``gt_label`` each.

    Args:
        batch_size (int): Number of images. Defaults to 2.
        height (int): Image height. Defaults to 32.
        width (int): Image width. Defaults to 32.
        num_classes (int): Labels are drawn from ``range(num_classes)``.
            Defaults to 100 (CIFAR-100).
        seed (int): Seed of the generator. Defaults to 0.

    Returns:
        dict: ``inputs`` and ``data_samples``.
    """
    from mmpretrain.structures import DataSample
    gen = _generator(seed)
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(_image(gen, height, width))
        label = int(torch.randint(0, num_classes, (1, ), generator=gen))
        samples.append(
            DataSample(metainfo=dict(img_shape=(height,
                                                width))).set_gt_label(label))
    return dict(inputs=inputs, data_samples=samples)


def num_classes_of(model: torch.nn.Module) -> int:
    """The class count of a model's (first) head: the first submodule with
    a positive integer ``num_classes``, its data preprocessor left out."""
    for name, module in model.named_modules():
        if name.split('.')[0] == 'data_preprocessor':
            continue  # e.g. MMPretrain's, for batch augmentations
        value = getattr(module, 'num_classes', None)
        if isinstance(value,
                      int) and not isinstance(value, bool) and value > 0:
            return value
    raise ValueError(f'cannot find num_classes in {type(model).__name__}')


def batch_for_model(model: torch.nn.Module,
                    batch_size: int,
                    height: int,
                    width: int,
                    seed: int = 0) -> Dict[str, List]:
    """A generated batch in the format ``model``'s task expects: a detector
    (MMDetection), a segmentor (MMSegmentation) or a classifier
    (MMPretrain), with labels below its ``num_classes``.

    Args:
        model (nn.Module): The student (or any model of the task).
        batch_size (int): Number of images.
        height (int): Image height.
        width (int): Image width.
        seed (int): Seed of the generator. Defaults to 0.

    Returns:
        dict: ``inputs`` and ``data_samples``.
    """
    kinds = []
    try:
        from mmdet.models.detectors import BaseDetector
        kinds.append((BaseDetector, det_batch))
    except ImportError:  # pragma: no cover - optional package
        pass
    try:
        from mmseg.models.segmentors import BaseSegmentor
        kinds.append((BaseSegmentor, seg_batch))
    except ImportError:  # pragma: no cover
        pass
    try:
        from mmpretrain.models.classifiers import BaseClassifier
        kinds.append((BaseClassifier, cls_batch))
    except ImportError:  # pragma: no cover
        pass
    for cls, make in kinds:
        if isinstance(model, cls):
            return make(
                batch_size,
                height,
                width,
                num_classes=num_classes_of(model),
                seed=seed)
    raise TypeError(
        f'cannot generate a batch for {type(model).__name__}: known are '
        'MMDetection detectors, MMSegmentation segmentors and MMPretrain '
        'classifiers')
