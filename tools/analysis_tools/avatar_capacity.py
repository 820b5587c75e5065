# Copyright (c) mmakd contributors. All rights reserved.
"""Working capacity of a teacher's Avatars: its test metric with one
recorded tensor replaced by the weighted mixture of its Avatars.

    python tools/analysis_tools/avatar_capacity.py CONFIG CKPT \
        --target neck --metric coco/bbox_mAP --out DIR \
        [--rows vanilla dropout_k4 flip mc_k4 ...] [--tau 4] [--seed 0] \
        [--cfg-options ...]

CONFIG is the teacher's own config (e.g. the demo's
``configs/akd/demo/retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128.py``),
CKPT its checkpoint. For every row (``--rows``; default: all of
:data:`mmakd.apis.avatar_capacity.CAPACITY_ROWS`: the teacher, feature
dropout p = 0.1 at K = 1, 4, 8, heterogeneous dropout at K = 4, 8, flip and
scale views, in-network dropout at K = 1, 4, 8), the config's test set is
evaluated with the output of ``--target`` (a detector's ``neck``: its FPN
levels feed its own head; a segmentor's ``decode_head.conv_seg``: its
logits are the prediction) replaced by the uncertainty-weighted mixture of
that row's Avatars (``--tau``; ``--tau 0`` for equal weights). ``--out``
receives ``capacity.md`` (the table, with the teacher forwards each row
costs per step), ``capacity.json`` and ``capacity.log``.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmakd.apis.avatar_capacity import CAPACITY_ROWS  # noqa: E402
from mmakd.apis.avatar_capacity import capacity_table  # noqa: E402
from mmakd.apis.avatar_capacity import write_report  # noqa: E402
from mmakd.apis.experiment import portable_text  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    names = [r['name'] for r in CAPACITY_ROWS]
    parser = argparse.ArgumentParser(
        description='A teacher evaluated with its Avatars mixed in place '
        'of one recorded tensor')
    parser.add_argument('config', help='the teacher config')
    parser.add_argument('checkpoint', help='the teacher checkpoint')
    parser.add_argument(
        '--target',
        required=True,
        help="module whose output is replaced, e.g. 'neck' or "
        "'decode_head.conv_seg'")
    parser.add_argument(
        '--metric',
        required=True,
        help="the test metric, e.g. 'coco/bbox_mAP' or 'mIoU'")
    parser.add_argument(
        '--rows',
        nargs='+',
        choices=names,
        default=names,
        metavar='ROW',
        help=f'rows to evaluate, of: {", ".join(names)} (default: all)')
    parser.add_argument('--tau', type=float, default=4.0)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--scale',
        type=float,
        default=None,
        help='points per metric unit in the table (default: 100 for COCO '
        'fractions, 1 otherwise)')
    parser.add_argument('--title', default='')
    parser.add_argument('--note', default='', help='a line under the title')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument(
        '--work-dir',
        default='work_dirs/avatar_capacity',
        help="the runner's work directory")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    log = open(osp.join(args.out, 'capacity.log'), 'w')

    def echo(line: str) -> None:
        print(line, flush=True)
        log.write(portable_text(line) + '\n')
        log.flush()

    rows = [r for r in CAPACITY_ROWS if r['name'] in args.rows]
    report = capacity_table(
        args.config,
        args.checkpoint,
        args.target,
        args.metric,
        rows=rows,
        tau=args.tau or None,
        seed=args.seed,
        work_dir=args.work_dir,
        cfg_options=args.cfg_options,
        echo=echo)
    scale = args.scale if args.scale is not None else (
        100.0 if args.metric.startswith('coco/') else 1.0)
    write_report(
        report, args.out, scale=scale, title=args.title, note=args.note)
    echo(f'wrote {osp.join(args.out, "capacity.md")}')
    log.close()


if __name__ == '__main__':
    main()
