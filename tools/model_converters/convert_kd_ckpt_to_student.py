# Copyright (c) mmakd contributors. All rights reserved.
"""Turn a distillation checkpoint into a plain checkpoint of the student,
loadable by the student's own MMDetection / MMSegmentation config.

    python tools/model_converters/convert_kd_ckpt_to_student.py \
        work_dirs/akd/iter_80000.pth --out student.pth
    python tools/test.py STUDENT_CONFIG student.pth
"""
import argparse
import os.path as osp

from mmakd.utils.checkpoint import convert_kd_checkpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('checkpoint', help='distillation checkpoint')
    parser.add_argument(
        '--out', help='output path (default: <checkpoint>_student.pth)')
    parser.add_argument(
        '--prefix',
        default='architecture.',
        help="key prefix of the student (MMRazor's: 'architecture.')")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    out = args.out or osp.splitext(args.checkpoint)[0] + '_student.pth'
    summary = convert_kd_checkpoint(args.checkpoint, out, args.prefix)
    print(f'wrote {out}: {summary["num_tensors"]} tensors, '
          f'{summary["num_params"] / 1e6:.2f}M values; left out '
          f'{", ".join(summary["dropped"]) or "nothing"}')


if __name__ == '__main__':
    main()
