# Copyright (c) mmakd contributors. All rights reserved.
"""The synthetic CIFAR-100-format dataset: determinism, the on-disk format,
loading through MMPretrain's CIFAR-100 reader and pipeline, learnable
classes, the CLI."""
import hashlib
import os
import os.path as osp
import pickle
import sys

import numpy as np
import pytest

from mmakd.datasets import SyntheticCIFAR100, generate_cifar_like
from mmakd.datasets.cifar_like import class_attributes, class_names
from helpers import REPO

PIPELINE = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]


@pytest.fixture(scope='module')
def cifar_like_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp('cifar-like'))
    generate_cifar_like(
        root, num_classes=10, train_per_class=12, test_per_class=4, seed=0)
    return root


def md5(path):
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def load(path):
    with open(path, 'rb') as f:
        return pickle.load(f, encoding='latin1')


def test_cifar100_on_disk_format(cifar_like_root):
    folder = osp.join(cifar_like_root, 'cifar-100-python')
    train, test = load(osp.join(folder,
                                'train')), load(osp.join(folder, 'test'))
    meta = load(osp.join(folder, 'meta'))
    for entry, count in ((train, 120), (test, 40)):
        assert set(entry) == {
            'filenames', 'batch_label', 'fine_labels', 'coarse_labels', 'data'
        }
        assert entry['data'].shape == (count, 3072)
        assert entry['data'].dtype == np.uint8
        assert sorted(set(entry['fine_labels'])) == list(range(10))
        assert np.bincount(entry['fine_labels']).tolist() == [count // 10] * 10
        assert 'synthetic' in entry['batch_label']
    assert meta['fine_label_names'] == class_names(10)
    # Classes 10a + b: pattern b, palette (a + 7b) % 10: all 100 pairs.
    assert len({class_attributes(c) for c in range(100)}) == 100


def test_deterministic_and_idempotent(cifar_like_root, tmp_path):
    folder = osp.join(cifar_like_root, 'cifar-100-python')
    before = {n: md5(osp.join(folder, n)) for n in ('train', 'test', 'meta')}
    mtime = os.stat(osp.join(folder, 'train')).st_mtime_ns
    generate_cifar_like(
        cifar_like_root,
        num_classes=10,
        train_per_class=12,
        test_per_class=4,
        seed=0)
    assert os.stat(osp.join(folder, 'train')).st_mtime_ns == mtime
    other = str(tmp_path / 'again')
    generate_cifar_like(
        other, num_classes=10, train_per_class=12, test_per_class=4, seed=0)
    after = {
        n: md5(osp.join(other, 'cifar-100-python', n))
        for n in ('train', 'test', 'meta')
    }
    assert after == before
    generate_cifar_like(
        other, num_classes=10, train_per_class=12, test_per_class=4, seed=1)
    assert md5(osp.join(other, 'cifar-100-python', 'train')) != before['train']


def test_loads_through_mmpretrain_cifar100_reader_and_pipeline(
        cifar_like_root, monkeypatch):
    from mmengine.registry import init_default_scope
    from mmpretrain.datasets import CIFAR100
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(
        dict(
            type='mmrazor.SyntheticCIFAR100',
            data_root=cifar_like_root,
            split='train',
            pipeline=PIPELINE))
    assert isinstance(dataset, CIFAR100) and len(dataset) == 120
    assert list(dataset.metainfo['classes']) == class_names(10)
    item = dataset[0]
    assert tuple(item['inputs'].shape) == (3, 32, 32)
    assert 0 <= int(item['data_samples'].gt_label) < 10
    # The data list is what MMPretrain's own CIFAR100 reader produces from
    # these files once its MD5 list (of the official files) is lifted.
    monkeypatch.setattr(CIFAR100, 'train_list', [['train', None]])
    monkeypatch.setattr(CIFAR100, 'test_list', [['test', None]])
    real = CIFAR100(
        data_root=cifar_like_root,
        split='train',
        download=False,
        metainfo=dict(classes=class_names(10)))
    assert len(real) == len(dataset)
    for i in (0, 57, 119):
        ours, theirs = dataset.get_data_info(i), real.get_data_info(i)
        assert ours['gt_label'] == theirs['gt_label']
        assert np.array_equal(ours['img'], theirs['img'])
    test = SyntheticCIFAR100(data_root=cifar_like_root, split='test')
    assert len(test) == 40


def test_mmpretrain_cifar100_refuses_the_files(cifar_like_root):
    """Why SyntheticCIFAR100 exists: CIFAR100 pins the official MD5s."""
    from mmpretrain.datasets import CIFAR100
    with pytest.raises(RuntimeError, match='Cannot find CIFAR100'):
        CIFAR100(data_root=cifar_like_root, split='train', download=False)


def test_missing_or_modified_data_gives_the_command(cifar_like_root, tmp_path):
    with pytest.raises(FileNotFoundError, match='make_cifar_like.py'):
        SyntheticCIFAR100(data_root=str(tmp_path), split='train')
    with pytest.raises(ValueError, match='cannot download'):
        SyntheticCIFAR100(data_root=cifar_like_root, download=True)
    copy = str(tmp_path / 'copy')
    generate_cifar_like(
        copy, num_classes=10, train_per_class=2, test_per_class=1)
    with open(osp.join(copy, 'cifar-100-python', 'test'), 'ab') as f:
        f.write(b'x')
    with pytest.raises(RuntimeError, match='does not match'):
        SyntheticCIFAR100(data_root=copy, split='test')


def test_classes_are_learnable(cifar_like_root):
    """Nearest class mean on 8x8 thumbnails, fitted on the training split,
    beats chance (10%) by far on the test split: the labels follow the
    images."""
    folder = osp.join(cifar_like_root, 'cifar-100-python')
    train, test = load(osp.join(folder,
                                'train')), load(osp.join(folder, 'test'))

    def thumbs(entry):
        x = entry['data'].reshape(-1, 3, 8, 4, 8, 4).mean((3, 5))
        return x.reshape(len(x), -1), np.array(entry['fine_labels'])

    x_train, y_train = thumbs(train)
    x_test, y_test = thumbs(test)
    means = np.stack([x_train[y_train == c].mean(0) for c in range(10)])
    pred = ((x_test[:, None] - means[None])**2).sum(-1).argmin(1)
    assert (pred == y_test).mean() > 0.5


def test_cli(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, osp.join(REPO, 'tools', 'dataset_converters'))
    try:
        import make_cifar_like
    finally:
        sys.path.pop(0)
    root = str(tmp_path / 'data')
    monkeypatch.setattr(sys, 'argv', [
        'make_cifar_like.py', root, '--num-classes', '3', '--train-per-class',
        '2', '--test-per-class', '1'
    ])
    make_cifar_like.main()
    assert 'synthetic data: 3 classes' in capsys.readouterr().out
    assert SyntheticCIFAR100.spec(root)['num_classes'] == 3
    with pytest.raises(ValueError, match='num_classes'):
        generate_cifar_like(root, num_classes=0)
