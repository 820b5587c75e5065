# Copyright (c) mmakd contributors. All rights reserved.
"""Train a distillation algorithm (or any OpenMMLab model) from a config.

Accepts mmakd's configs, local configs and configs shipped by installed
packages, e.g.
``python tools/train.py mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py``.
"""
import argparse
import logging
import os
import os.path as osp

from mmengine.config import DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

import mmakd  # noqa: F401  (PyTorch compatibility, registers mmakd)
from mmakd.utils import load_config, prepare_distributed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a distiller')
    parser.add_argument('config', help='config file, or package::path')
    parser.add_argument('--work-dir', help='where to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or, without CKPT, from the latest '
        'checkpoint in the work directory')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='automatic mixed precision (float16 on GPU, bfloat16 on CPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, xxx=yyy (e.g. '
        'model.distiller.type=AvatarDistiller); lists as key="[a,b]"')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_amp(cfg) -> None:
    """Switch the optimizer wrapper(s) to ``AmpOptimWrapper``."""
    wrappers = [cfg.optim_wrapper]
    if cfg.optim_wrapper.get('constructor'):
        wrappers = [
            v for v in cfg.optim_wrapper.values()
            if isinstance(v, dict) and 'type' in v
        ]
    for wrapper in wrappers:
        wrapper_type = wrapper.get('type', 'OptimWrapper')
        if wrapper_type == 'AmpOptimWrapper':
            print_log(
                'AMP training is already enabled in your config.',
                logger='current',
                level=logging.WARNING)
            continue
        if wrapper_type != 'OptimWrapper':
            raise ValueError('--amp needs optim_wrapper.type=OptimWrapper, '
                             f'got {wrapper_type}.')
        wrapper.type = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    prepare_distributed(cfg, args.launcher)

    # work_dir: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(cfg.filename))[0])

    if args.amp:
        enable_amp(cfg)

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise KeyError('--auto-scale-lr needs auto_scale_lr.'
                           'base_batch_size in the config.')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
