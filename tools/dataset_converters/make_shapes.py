# Copyright (c) mmakd contributors. All rights reserved.
"""Generate the synthetic shapes dataset (COCO detection + Cityscapes-style
segmentation) used by the demo and the tests.

Example::

    python tools/dataset_converters/make_shapes.py data/shapes \
        --num-train 400 --num-val 100 --size 128 --seed 0

Anything measured on this data is a number on synthetic data.
"""
import argparse
import time

from mmakd.datasets.shapes import dataset_stats, generate_shapes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='output folder, e.g. data/shapes')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=100)
    parser.add_argument('--size', type=int, default=128, help='image side')
    parser.add_argument('--max-objects', type=int, default=6)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    paths = generate_shapes(
        args.out,
        num_train=args.num_train,
        num_val=args.num_val,
        size=args.size,
        seed=args.seed,
        max_objects=args.max_objects,
        progress=True)
    for split in ('train', 'val'):
        stats = dataset_stats(paths[f'{split}_ann'])
        print(f'[shapes] {split}: {stats}')
    print(f'[shapes] wrote {args.out} in {time.perf_counter() - start:.1f} s '
          '(synthetic data)')


if __name__ == '__main__':
    main()
