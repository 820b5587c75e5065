# Copyright (c) mmakd contributors. All rights reserved.
"""Time the parts of AKD losses: the draw, the weights, the loss fused and
per Avatar (:mod:`mmakd.apis.avatar_costs`; synthetic ReLU inputs).

    python tools/analysis_tools/benchmark_avatar_costs.py \
        --shapes 8,64,16,16 8,64,8,8 8,64,4,4 --num-avatars 1 4 8 \
        [--loss "dict(type='ChannelWiseDivergence', tau=1, loss_weight=10)"] \
        [--perturbation "dict(type='AvatarDropout', p=0.1)"] \
        [--iters 20] [--threads 2] [--json OUT] [--markdown OUT]
"""
import argparse
import ast
import json
import os
import sys

import torch

sys.path.insert(
    0,
    os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mmakd.apis.avatar_costs import avatar_costs, markdown  # noqa: E402


def _literal(text: str):
    tree = ast.parse(text, mode='eval').body
    if isinstance(tree, ast.Call) and getattr(tree.func, 'id', '') == 'dict':
        return {kw.arg: ast.literal_eval(kw.value) for kw in tree.keywords}
    return ast.literal_eval(tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--shapes', nargs='+', required=True)
    parser.add_argument(
        '--num-avatars', type=int, nargs='+', default=[1, 4, 8])
    parser.add_argument(
        '--loss',
        default="dict(type='ChannelWiseDivergence', tau=1, loss_weight=10)")
    parser.add_argument(
        '--perturbation', default="dict(type='AvatarDropout', p=0.1)")
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--json', default=None)
    parser.add_argument('--markdown', default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        shapes = [tuple(int(v) for v in s.split(',')) for s in args.shapes]
    except ValueError:
        parser.error('--shapes takes N,C,H,W per AKD loss, e.g. 8,64,16,16')
    result = avatar_costs(shapes, args.num_avatars, _literal(args.loss),
                          _literal(args.perturbation), args.iters)
    table = markdown(result)
    print(table)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(table)


if __name__ == '__main__':
    main()
