# Copyright (c) mmakd contributors. All rights reserved.
"""A synthetic dataset in CIFAR-100's on-disk format.

CIFAR-100 cannot be downloaded everywhere (CI, air-gapped machines), yet a
distillation run should exercise MMPretrain's real CIFAR-100 reader,
pipeline and metric. :func:`generate_cifar_like` writes a small dataset in
the format of the official ``cifar-100-python.tar.gz``, extracted::

    ROOT/cifar-100-python/train   pickle: data (N, 3072) uint8, fine_labels,
    ROOT/cifar-100-python/test            coarse_labels, filenames
    ROOT/cifar-100-python/meta    pickle: fine_label_names,
                                          coarse_label_names
    ROOT/cifar-100-python/cifar_like.json   the generator's settings and
                                            each file's MD5

Every 32x32 RGB image shows one class's pattern: each class combines one of
ten pattern families (stripes at four orientations, checks, dots, rings,
sectors, a blob, a grid) with one of ten colour pairs, so classes that share
a family or a colour pair look alike (soft labels carry information, as in
real data). Each image varies the pattern's phase, period, orientation and
centre, jitters the colours and brightness, adds pixel noise, may paste an
occluding patch, and may blend in a faint pattern of another class. The
output is a deterministic function of the arguments.

MMPretrain's ``CIFAR100`` class checks the MD5 of the official files, so it
refuses any other data; :class:`SyntheticCIFAR100` is that class with the
check made against ``cifar_like.json`` instead (and downloading disabled).
Configs use it as ``dict(type='mmrazor.SyntheticCIFAR100',
data_root=ROOT, split='train', pipeline=...)`` with
``custom_imports=dict(imports=['mmakd', 'mmakd.datasets'])``.

Numbers measured on this data are numbers on synthetic data and must be
reported as such.
"""
import hashlib
import json
import os
import os.path as osp
import pickle
from typing import Dict, List, Optional, Tuple

import numpy as np
from mmpretrain.datasets import CIFAR100
from mmrazor.registry import DATASETS

__all__ = [
    'PATTERNS', 'PALETTES', 'class_names', 'class_attributes',
    'render_cifar_like', 'generate_cifar_like', 'SyntheticCIFAR100'
]

FOLDER = 'cifar-100-python'
SPEC_FILE = 'cifar_like.json'
SIZE = 32
#: Pattern families; class ``c`` uses ``PATTERNS[c % 10]``.
PATTERNS: Tuple[str, ...] = ('stripes-h', 'stripes-v', 'stripes-diag',
                             'stripes-anti', 'checks', 'dots', 'rings',
                             'sectors', 'blob', 'grid')
#: Foreground/background colour pairs (RGB).
PALETTES: Tuple[Tuple[str, Tuple[int, int, int], Tuple[int, int, int]],
                ...] = (
                    ('red-on-navy', (220, 40, 40), (20, 30, 90)),
                    ('yellow-on-green', (235, 220, 60), (30, 100, 40)),
                    ('white-on-black', (235, 235, 235), (25, 25, 25)),
                    ('cyan-on-maroon', (60, 210, 220), (100, 20, 40)),
                    ('orange-on-teal', (245, 150, 40), (20, 110, 110)),
                    ('pink-on-olive', (240, 130, 190), (90, 100, 30)),
                    ('lime-on-purple', (150, 230, 60), (80, 30, 120)),
                    ('blue-on-sand', (40, 80, 220), (210, 190, 140)),
                    ('black-on-grey', (20, 20, 20), (150, 150, 150)),
                    ('violet-on-mint', (150, 70, 210), (170, 235, 200)),
                )


def class_attributes(label: int) -> Tuple[int, int]:
    """``(pattern, palette)`` indices of class ``label``.

    Class ``10a + b`` has pattern ``b`` and palette ``(a + 7b) % 10``, so
    the first 100 classes are the 100 distinct combinations and any ten
    consecutive classes differ in both pattern and palette.
    """
    pattern = label % len(PATTERNS)
    palette = (label // len(PATTERNS) + 7 * pattern) % len(PALETTES)
    return pattern, palette


def class_names(num_classes: int) -> List[str]:
    """Names ``'<pattern>_<palette>'`` (with a suffix beyond 100)."""
    names = []
    for label in range(num_classes):
        pattern, palette = class_attributes(label)
        name = f'{PATTERNS[pattern]}_{PALETTES[palette][0]}'
        if label >= len(PATTERNS) * len(PALETTES):
            name += f'_{label // (len(PATTERNS) * len(PALETTES))}'
        names.append(name)
    return names


def _weight(pattern: int, rng: np.random.Generator,
            variant: int) -> np.ndarray:
    """A (32, 32) map in [0, 1]: where the foreground colour goes."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    # Classes beyond 100 reuse a pattern at another base period.
    period = rng.uniform(5.0, 7.0) * (1.0 + 0.45 * variant)
    phase = rng.uniform(0, 2 * np.pi)
    tilt = rng.normal(0, 0.12)
    cy, cx = rng.uniform(10, 22, 2)
    name = PATTERNS[pattern]
    if name.startswith('stripes'):
        angle = {
            'stripes-h': np.pi / 2,
            'stripes-v': 0.0,
            'stripes-diag': np.pi / 4,
            'stripes-anti': -np.pi / 4
        }[name] + tilt
        wave = np.sin(2 * np.pi *
                      (xx * np.cos(angle) + yy * np.sin(angle)) / period +
                      phase)
        return (wave > 0).astype(np.float32)
    if name == 'checks':
        u = xx * np.cos(tilt) + yy * np.sin(tilt)
        v = -xx * np.sin(tilt) + yy * np.cos(tilt)
        return ((np.floor(u / period * 1.4) + np.floor(v / period * 1.4)) %
                2).astype(np.float32)
    if name == 'dots':
        wave = np.sin(2 * np.pi * xx / period + phase) * \
            np.sin(2 * np.pi * yy / period + phase)
        return (wave > 0.45).astype(np.float32)
    radius = np.hypot(yy - cy, xx - cx)
    if name == 'rings':
        return (np.sin(2 * np.pi * radius / period + phase)
                > 0).astype(np.float32)
    if name == 'sectors':
        theta = np.arctan2(yy - cy, xx - cx)
        return (np.sin(6 * theta + phase) > 0).astype(np.float32)
    if name == 'blob':
        size = rng.uniform(5.0, 9.0)
        return np.exp(-(radius / size)**2).astype(np.float32)
    # grid: thin lines
    lines = np.maximum(
        np.abs(np.sin(np.pi * xx / period + phase)),
        np.abs(np.sin(np.pi * yy / period + phase)))
    return (lines > 0.92).astype(np.float32)


def _colours(palette: int,
             rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    _, fg, bg = PALETTES[palette]
    fg = np.asarray(fg, np.float32) + rng.normal(0, 18, 3)
    bg = np.asarray(bg, np.float32) + rng.normal(0, 18, 3)
    return fg, bg


def render_cifar_like(label: int,
                      seed: int,
                      mix_prob: float = 0.3) -> np.ndarray:
    """Render one image of class ``label``.

    Args:
        label (int): The class.
        seed (int): Seed of this image.
        mix_prob (float): Probability of blending a faint pattern of another
            class (a confuser) into the image. Defaults to 0.3.

    Returns:
        np.ndarray: (32, 32, 3) uint8 RGB image.
    """
    rng = np.random.default_rng(seed)
    variant = label // (len(PATTERNS) * len(PALETTES))
    pattern, palette = class_attributes(label)
    fg, bg = _colours(palette, rng)
    weight = _weight(pattern, rng, variant)[..., None]
    image = bg * (1 - weight) + fg * weight
    if rng.random() < mix_prob:
        other = int(rng.integers(len(PATTERNS) * len(PALETTES)))
        o_pattern, o_palette = class_attributes(other)
        o_fg, o_bg = _colours(o_palette, rng)
        o_weight = _weight(o_pattern, rng, 0)[..., None]
        alpha = rng.uniform(0.2, 0.4)
        image = (1 - alpha) * image + alpha * (
            o_bg * (1 - o_weight) + o_fg * o_weight)
    image = image * rng.uniform(0.8, 1.2)
    if rng.random() < 0.5:  # an occluding patch of a random colour
        h, w = rng.integers(6, 14, 2)
        y, x = rng.integers(0, SIZE - h), rng.integers(0, SIZE - w)
        image[y:y + h, x:x + w] = rng.uniform(0, 255, 3)
    image = image + rng.normal(0, 10, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _md5(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def _split(num_classes: int, per_class: int, seed: int, split_index: int,
           progress: bool) -> Dict:
    labels = np.repeat(np.arange(num_classes), per_class)
    order = np.random.default_rng([seed, split_index]).permutation(len(labels))
    labels = labels[order]
    data = np.empty((len(labels), 3 * SIZE * SIZE), np.uint8)
    names = class_names(num_classes)
    filenames = []
    for i, label in enumerate(labels):
        image_seed = (seed * 1_000_003 + split_index) * 1_000_003 + i
        image = render_cifar_like(int(label), image_seed)
        # CIFAR rows hold the R, G and B planes one after another.
        data[i] = image.transpose(2, 0, 1).reshape(-1)
        filenames.append(f'{names[label]}_s{split_index}_{i:06d}.png')
        if progress and (i + 1) % 1000 == 0:
            print(
                f'[cifar-like] split {split_index}: {i + 1}/{len(labels)}',
                flush=True)
    return dict(
        filenames=filenames,
        batch_label=('training' if split_index == 0 else 'testing') +
        ' batch 1 of 1 (mmakd synthetic CIFAR-like data)',
        fine_labels=[int(v) for v in labels],
        coarse_labels=[class_attributes(int(v))[0] for v in labels],
        data=data)


def generate_cifar_like(root: str,
                        num_classes: int = 100,
                        train_per_class: int = 50,
                        test_per_class: int = 10,
                        seed: int = 0,
                        progress: bool = False) -> Dict[str, str]:
    """Write the dataset under ``root`` (idempotent for the same arguments).

    Args:
        root (str): Output folder (the ``data_root`` of the configs).
        num_classes (int): Classes; labels are ``0 .. num_classes - 1``.
            Defaults to 100.
        train_per_class (int): Training images per class. Defaults to 50.
        test_per_class (int): Test images per class. Defaults to 10.
        seed (int): Dataset seed. Defaults to 0.
        progress (bool): Print progress. Defaults to False.

    Returns:
        dict: Paths of the folder and of the ``train``, ``test``, ``meta``
        and ``cifar_like.json`` files.
    """
    for name, value in (('num_classes', num_classes), ('train_per_class',
                                                       train_per_class),
                        ('test_per_class', test_per_class)):
        if isinstance(value, bool) or not isinstance(value, int) \
                or value < 1:
            raise ValueError(f'{name} must be a positive int, got {value!r}')
    folder = osp.join(root, FOLDER)
    paths = dict(
        folder=folder,
        train=osp.join(folder, 'train'),
        test=osp.join(folder, 'test'),
        meta=osp.join(folder, 'meta'),
        spec=osp.join(folder, SPEC_FILE))
    spec = dict(
        generator='mmakd.datasets.cifar_like',
        synthetic=True,
        version=1,
        num_classes=num_classes,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        seed=seed)
    if osp.isfile(paths['spec']):
        with open(paths['spec']) as f:
            old = json.load(f)
        if {
                k: old.get(k)
                for k in spec
        } == spec and all(
                osp.isfile(paths[k]) and _md5(paths[k]) == old['md5'][k]
                for k in ('train', 'test', 'meta')):
            return paths
    os.makedirs(folder, exist_ok=True)
    splits = (('train', train_per_class), ('test', test_per_class))
    for split_index, (split, per_class) in enumerate(splits):
        entry = _split(num_classes, per_class, seed, split_index, progress)
        with open(paths[split], 'wb') as f:
            pickle.dump(entry, f, protocol=4)
    meta = dict(
        fine_label_names=class_names(num_classes),
        coarse_label_names=list(PATTERNS))
    with open(paths['meta'], 'wb') as f:
        pickle.dump(meta, f, protocol=4)
    spec['md5'] = {k: _md5(paths[k]) for k in ('train', 'test', 'meta')}
    with open(paths['spec'], 'w') as f:
        json.dump(spec, f, indent=2)
    return paths


@DATASETS.register_module()
class SyntheticCIFAR100(CIFAR100):
    """MMPretrain's ``CIFAR100`` reading data written by
    :func:`generate_cifar_like` (synthetic data).

    It inherits the reader, the data list and the pipeline from
    ``CIFAR100``; only the integrity check differs: instead of the MD5s of
    the official CIFAR-100 files it checks those recorded in
    ``cifar-100-python/cifar_like.json``, it never downloads, and the class
    names come from the generated ``meta`` file.

    Args:
        data_root (str): The folder given to :func:`generate_cifar_like`.
        split (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.
        **kwargs: Other arguments of ``CIFAR100`` (``pipeline``,
            ``indices``, ``metainfo``...). ``download`` must be False.
    """

    METAINFO: dict = dict()
    train_list = [['train', None]]
    test_list = [['test', None]]
    meta = dict(filename='meta', key='fine_label_names', md5=None)

    def __init__(self,
                 data_root: str = '',
                 split: str = 'train',
                 download: bool = False,
                 **kwargs) -> None:
        if download:
            raise ValueError(
                'SyntheticCIFAR100 cannot download: generate the data with '
                'tools/dataset_converters/make_cifar_like.py DATA_ROOT.')
        super().__init__(
            data_root=data_root, split=split, download=False, **kwargs)

    def _check_integrity(self) -> bool:
        folder = osp.join(self.data_prefix['root'], self.base_folder)
        spec_path = osp.join(folder, SPEC_FILE)
        hint = ('generate it with `python tools/dataset_converters/'
                f'make_cifar_like.py {self.data_prefix["root"]}`')
        if not osp.isfile(spec_path):
            raise FileNotFoundError(
                f'SyntheticCIFAR100: {spec_path} does not exist; {hint}.')
        with open(spec_path) as f:
            spec = json.load(f)
        for name in ('train', 'test', 'meta'):
            path = osp.join(folder, name)
            if not osp.isfile(path) or _md5(path) != spec['md5'][name]:
                raise RuntimeError(
                    f'SyntheticCIFAR100: {path} is missing or does not match '
                    f'{spec_path}; {hint}.')
        return True

    @staticmethod
    def spec(data_root: str) -> Optional[Dict]:
        """The generator settings recorded under ``data_root``, if any."""
        path = osp.join(data_root, FOLDER, SPEC_FILE)
        if not osp.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)
