# Copyright (c) mmakd contributors. All rights reserved.
"""Write a synthetic dataset in CIFAR-100's on-disk format.

    python tools/dataset_converters/make_cifar_like.py data/cifar-like \\
        --num-classes 10 --train-per-class 120 --test-per-class 30

The result (``ROOT/cifar-100-python/{train,test,meta}``) is read by
``mmrazor.SyntheticCIFAR100`` (MMPretrain's ``CIFAR100`` reader and
pipeline); see ``mmakd/datasets/cifar_like.py``. It is synthetic data:
report anything measured on it as such.
"""
import argparse
import time

from mmakd.datasets.cifar_like import class_names, generate_cifar_like


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate a synthetic CIFAR-100-format dataset')
    parser.add_argument('root', help='output folder (data_root)')
    parser.add_argument(
        '--num-classes', type=int, default=100, help='number of classes')
    parser.add_argument(
        '--train-per-class',
        type=int,
        default=50,
        help='training images per class')
    parser.add_argument(
        '--test-per-class', type=int, default=10, help='test images per class')
    parser.add_argument('--seed', type=int, default=0, help='dataset seed')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start = time.time()
    paths = generate_cifar_like(
        args.root,
        num_classes=args.num_classes,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        seed=args.seed,
        progress=True)
    names = class_names(args.num_classes)
    print(f'[cifar-like] synthetic data: {args.num_classes} classes '
          f'({names[0]}, {names[-1]}, ...), '
          f'{args.num_classes * args.train_per_class} train and '
          f'{args.num_classes * args.test_per_class} test images in '
          f'{paths["folder"]} ({time.time() - start:.1f} s)')


if __name__ == '__main__':
    main()
