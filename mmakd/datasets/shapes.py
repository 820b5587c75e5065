# Copyright (c) mmakd contributors. All rights reserved.
"""A synthetic dataset of textured shapes in COCO and Cityscapes layouts.

COCO and Cityscapes cannot be downloaded everywhere (CI, air-gapped
machines), yet a distillation run should exercise the real MMDetection and
MMSegmentation dataset classes, pipelines and metrics. This generator writes
a small dataset in their standard formats:

* COCO detection: ``annotations/instances_{split}.json`` with boxes,
  areas and polygon-free RLE masks, for ``mmdet.CocoDataset`` and
  ``CocoMetric``;
* Cityscapes-style segmentation: ``leftImg8bit/{split}/shapes/*_leftImg8bit
  .png`` images and ``gtFine/{split}/shapes/*_gtFine_labelTrainIds.png``
  label maps (0 = background, 255 = ignore on object borders), for
  ``mmseg``'s ``BaseSegDataset`` and ``IoUMetric``.

Both tasks share the images. Every image holds several shapes of
:data:`CLASSES` at several scales, each filled with a random texture and
colour (so that colour says nothing about the class and only the outline
does), drawn over a cluttered background of unlabelled strokes and blobs;
later shapes occlude earlier ones, and boxes and masks describe the visible
part. The output is a deterministic function of ``seed``.

Numbers measured on this data are numbers on synthetic data and must be
reported as such.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

__all__ = ['CLASSES', 'PALETTE', 'generate_shapes', 'render_image']

CLASSES: Tuple[str,
               ...] = ('circle', 'square', 'triangle', 'star', 'ring', 'cross')
#: Colours for visualising segmentation maps: background, then CLASSES.
PALETTE: List[List[int]] = [[0, 0, 0], [220, 20, 60], [0, 130, 200],
                            [60, 180, 75], [255, 225, 25], [145, 30, 180],
                            [245, 130, 48]]
IGNORE_INDEX = 255
CITY = 'shapes'


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 texture: noise, stripes, checks or dots."""
    base = rng.integers(30, 226, 3).astype(np.float32)
    other = rng.integers(30, 226, 3).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.integers(4)
    if kind == 0:  # noisy solid
        weight = np.zeros((size, size), np.float32)
    elif kind == 1:  # stripes at a random angle
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, 12)
        weight = (np.sin(
            (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
                  > 0).astype(np.float32)
    elif kind == 2:  # checks
        period = int(rng.integers(4, 12))
        weight = (((xx // period) + (yy // period)) % 2).astype(np.float32)
    else:  # dots
        period = rng.uniform(5, 10)
        weight = ((np.sin(xx * 2 * np.pi / period) *
                   np.sin(yy * 2 * np.pi / period)) > 0.5).astype(np.float32)
    image = base * (1 - weight[..., None]) + other * weight[..., None]
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, label: int, size: int,
                center: Tuple[float, float], radius: float) -> np.ndarray:
    """Filled mask of shape ``CLASSES[label]`` in a (size, size) canvas."""
    mask = np.zeros((size, size), np.uint8)
    cx, cy = center
    rotation = rng.uniform(0, 2 * np.pi)

    def polygon(radii: Sequence[float], count: int) -> np.ndarray:
        angles = rotation + np.arange(count) * 2 * np.pi / count
        r = np.resize(np.asarray(radii, np.float32), count)
        points = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)],
                          axis=1)
        return np.round(points).astype(np.int32)

    name = CLASSES[label]
    if name == 'circle':
        cv2.circle(mask, (round(cx), round(cy)), round(radius), 1, -1)
    elif name == 'square':
        cv2.fillPoly(mask, [polygon([radius], 4)], 1)
    elif name == 'triangle':
        cv2.fillPoly(mask, [polygon([radius], 3)], 1)
    elif name == 'star':
        cv2.fillPoly(mask, [polygon([radius, radius * 0.45], 10)], 1)
    elif name == 'ring':
        cv2.circle(mask, (round(cx), round(cy)), round(radius), 1, -1)
        cv2.circle(mask, (round(cx), round(cy)), round(radius * 0.55), 0, -1)
    elif name == 'cross':
        arm = radius * 0.35
        rect = np.array(
            [[-radius, -arm], [radius, -arm], [radius, arm], [-radius, arm]],
            np.float32)
        for extra in (0.0, np.pi / 2):
            c, s = np.cos(rotation + extra), np.sin(rotation + extra)
            pts = rect @ np.array([[c, s], [-s, c]], np.float32)
            pts += np.array([cx, cy], np.float32)
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth coloured noise plus unlabelled clutter (strokes and blobs)."""
    low = rng.uniform(40, 200, (4, 4, 3)).astype(np.float32)
    image = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    image += rng.normal(0, 10, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.line(image, p1, p2, color, int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(2, 6))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        center = tuple(int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(2, max(size // 12, 3), 2))
        cv2.ellipse(image, center, axes, float(rng.uniform(0, 180)), 0, 360,
                    color, -1)
    return image


def render_image(seed: int,
                 size: int = 128,
                 max_objects: int = 6,
                 min_visible: float = 0.3) -> Tuple[np.ndarray, List[Dict]]:
    """Render one image and its visible instances.

    Args:
        seed (int): Seed of this image.
        size (int): Side length in pixels. Defaults to 128.
        max_objects (int): At most this many shapes. Defaults to 6.
        min_visible (float): Drop shapes less visible than this fraction.
            Defaults to 0.3.

    Returns:
        tuple: The (size, size, 3) BGR uint8 image and a list of instances,
        each ``dict(label=int, mask=bool array)`` with the visible mask.
    """
    rng = np.random.default_rng(seed)
    image = _background(rng, size)
    owner = np.full((size, size), -1, np.int32)
    shapes = []
    for index in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(CLASSES)))
        radius = size * rng.uniform(0.06, 0.28)  # several scales
        center = tuple(rng.uniform(radius * 0.5, size - radius * 0.5, 2))
        mask = _shape_mask(rng, label, size, center, radius)
        if mask.sum() < 16:
            continue
        texture = _texture(rng, size)
        image[mask] = texture[mask]
        owner[mask] = index
        shapes.append((index, label, mask))
    instances = []
    for index, label, mask in shapes:
        visible = owner == index
        if visible.sum() >= max(min_visible * mask.sum(), 16):
            instances.append(dict(label=label, mask=visible))
    return image, instances


def _coco_annotation(mask: np.ndarray, label: int, image_id: int,
                     ann_id: int) -> Dict:
    from pycocotools import mask as mask_utils
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    w, h = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=label + 1,
        bbox=[x0, y0, w, h],
        area=int(mask.sum()),
        segmentation=rle,
        iscrowd=0)


def _semantic_map(instances: List[Dict], size: int) -> np.ndarray:
    """Label map: 0 background, 1.. classes, 255 on object borders."""
    label_map = np.zeros((size, size), np.uint8)
    border = np.zeros((size, size), bool)
    kernel = np.ones((3, 3), np.uint8)
    for inst in instances:
        label_map[inst['mask']] = inst['label'] + 1
        mask = inst['mask'].astype(np.uint8)
        border |= (cv2.dilate(mask, kernel) - cv2.erode(mask, kernel)) > 0
    label_map[border] = IGNORE_INDEX
    return label_map


def generate_shapes(root: str,
                    num_train: int = 200,
                    num_val: int = 50,
                    size: int = 128,
                    seed: int = 0,
                    max_objects: int = 6,
                    progress: bool = False) -> Dict[str, str]:
    """Write the dataset under ``root`` (idempotent for the same arguments).

    Args:
        root (str): Output folder.
        num_train (int): Training images. Defaults to 200.
        num_val (int): Validation images. Defaults to 50.
        size (int): Image side in pixels. Defaults to 128.
        seed (int): Dataset seed; image ``i`` of split ``s`` uses a seed
            derived from it. Defaults to 0.
        max_objects (int): Most shapes per image. Defaults to 6.
        progress (bool): Print progress. Defaults to False.

    Returns:
        dict: Paths of the written annotation files and folders.
    """
    spec = dict(
        num_train=num_train,
        num_val=num_val,
        size=size,
        seed=seed,
        max_objects=max_objects,
        classes=list(CLASSES),
        version=1)
    stamp = osp.join(root, 'shapes_spec.json')
    paths = dict(
        root=root,
        train_ann=osp.join(root, 'annotations', 'instances_train.json'),
        val_ann=osp.join(root, 'annotations', 'instances_val.json'))
    if osp.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == spec:
                return paths
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(CLASSES)
    ]
    splits = (('train', num_train), ('val', num_val))
    for split_index, (split, count) in enumerate(splits):
        img_dir = osp.join(root, 'leftImg8bit', split, CITY)
        seg_dir = osp.join(root, 'gtFine', split, CITY)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(seg_dir, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            image_seed = (seed * 1_000_003 + split_index) * 1_000_003 + i
            image, instances = render_image(image_seed, size, max_objects)
            name = f'{split}_{i:06d}'
            file_name = f'leftImg8bit/{split}/{CITY}/{name}_leftImg8bit.png'
            cv2.imwrite(osp.join(root, file_name), image)
            cv2.imwrite(
                osp.join(seg_dir, f'{name}_gtFine_labelTrainIds.png'),
                _semantic_map(instances, size))
            image_id = i + 1
            images.append(
                dict(
                    id=image_id, file_name=file_name, height=size, width=size))
            for inst in instances:
                annotations.append(
                    _coco_annotation(inst['mask'], inst['label'], image_id,
                                     len(annotations) + 1))
            if progress and (i + 1) % 50 == 0:
                print(f'[shapes] {split}: {i + 1}/{count} images', flush=True)
        with open(paths[f'{split}_ann'], 'w') as f:
            json.dump(
                dict(
                    info=dict(description='mmakd synthetic shapes ' +
                              '(synthetic data)'),
                    images=images,
                    annotations=annotations,
                    categories=categories), f)
    with open(stamp, 'w') as f:
        json.dump(spec, f)
    return paths


def seg_classes() -> Tuple[str, ...]:
    """Segmentation classes: background, then :data:`CLASSES`."""
    return ('background', ) + CLASSES


def dataset_stats(ann_file: str) -> Optional[Dict[str, float]]:
    """Images, instances and instances per class of a COCO file."""
    with open(ann_file) as f:
        data = json.load(f)
    counts = np.bincount([a['category_id'] - 1 for a in data['annotations']],
                         minlength=len(CLASSES))
    return dict(
        images=len(data['images']),
        instances=len(data['annotations']),
        **{
            name: int(c)
            for name, c in zip(CLASSES, counts)
        })
