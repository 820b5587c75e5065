# Copyright (c) mmakd contributors. All rights reserved.
"""Train a distillation algorithm (or any OpenMMLab model) from a config,
or distil any two models with one command.

Accepts mmakd's configs, local configs and configs shipped by installed
packages, e.g. ``python tools/train.py
mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py`` or
``python tools/train.py
mmakd::akd/mmdet/cwd/akd_cwd_fpn_retinanet-r101_retinanet-r50_8xb2-2x_coco.py``.
"""
import argparse
import logging
import os
from typing import Optional

import torch
from mmengine.config import DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

import mmakd  # noqa: F401  (PyTorch compatibility, registers mmakd)
from mmakd.engine.optimizers import CPUAmpOptimWrapper
from mmakd.utils import (fit_logger_interval, keep_config_file, load_config,
                         prepare_distributed, set_work_dir)
from mmakd.utils.checkpoint import use_teachers_from_checkpoint
from mmakd.utils.resume import (resume_checkpoint, use_atomic_checkpoints,
                                use_random_state_hook)


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
        '--amp-dtype',
        choices=['float16', 'bfloat16'],
        help='autocast dtype for --amp; defaults to float16 with CUDA and '
        'bfloat16 without (CPU autocast supports bfloat16 only)')
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
    pair = parser.add_argument_group(
        'one-command distillation (CONFIG is the student)')
    pair.add_argument(
        '--teacher', help='the teacher\'s plain config (file or pkg::path)')
    pair.add_argument(
        '--teacher-ckpt', help='the teacher\'s checkpoint (path or URL)')
    pair.add_argument(
        '--distill',
        choices=['cwd', 'pkd', 'mgd', 'kd'],
        help='the loss; defaults to cwd (detectors: every neck level; '
        'segmentors: the decode head\'s logits) and kd (classifiers)')
    pair.add_argument(
        '--avatars',
        type=int,
        metavar='K',
        help='add K Avatars (AKD) with mmakd\'s recommended settings')
    pair.add_argument(
        '--aux-head',
        action='store_true',
        help='segmentors: also distil the auxiliary heads\' logits')
    pair.add_argument(
        '--dry-run',
        action='store_true',
        help='write the config and print its table, without training or '
        'downloading anything')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.amp_dtype is not None and not args.amp:
        parser.error('--amp-dtype needs --amp')
    pair_only = [
        f'--{name.replace("_", "-")}'
        for name in ('teacher_ckpt', 'distill', 'avatars', 'aux_head',
                     'dry_run') if getattr(args, name) not in (None, False)
    ]
    if args.teacher is None and pair_only:
        parser.error(f'{", ".join(pair_only)} need --teacher (one-command '
                     'distillation: CONFIG is the student)')
    if args.teacher is not None and not args.teacher_ckpt:
        parser.error('--teacher needs --teacher-ckpt, the teacher\'s trained '
                     'weights (a path or URL)')
    if args.avatars is not None and args.avatars < 1:
        parser.error(f'--avatars must be 1 or more, got {args.avatars}')
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_amp(cfg,
               dtype: Optional[str] = None,
               cuda: Optional[bool] = None) -> None:
    """Switch the optimizer wrapper(s) to mixed precision.

    With CUDA: MMEngine's ``AmpOptimWrapper`` (dynamic loss scaling).
    Without: ``CPUAmpOptimWrapper`` (bfloat16 autocast on CPU, no scaler).

    Args:
        cfg (Config): The config; ``optim_wrapper`` is changed in place.
        dtype (str, optional): ``'float16'`` or ``'bfloat16'``; also set
            in a wrapper the config already makes AMP. Defaults to None:
            float16 with CUDA, bfloat16 without (leaving such a wrapper's
            dtype as it is).
        cuda (bool, optional): Whether CUDA is used. Defaults to None:
            ``torch.cuda.is_available()``.
    """
    if cuda is None:
        cuda = torch.cuda.is_available()
    explicit = dtype is not None
    if dtype is None:
        dtype = 'float16' if cuda else 'bfloat16'
        if not cuda:
            print_log(
                '--amp without CUDA: bfloat16 autocast on CPU '
                '(CPUAmpOptimWrapper).',
                logger='current')
    if not cuda:
        CPUAmpOptimWrapper.check_dtype(dtype)  # fail before building
    target = 'AmpOptimWrapper' if cuda else 'mmrazor.CPUAmpOptimWrapper'

    wrappers = [cfg.optim_wrapper]
    if cfg.optim_wrapper.get('constructor'):
        wrappers = [
            v for v in cfg.optim_wrapper.values()
            if isinstance(v, dict) and 'type' in v
        ]
    for wrapper in wrappers:
        wrapper_type = wrapper.get('type', 'OptimWrapper')
        if wrapper_type.split('.')[-1] == target.split('.')[-1]:
            print_log(
                'AMP training is already enabled in your config.',
                logger='current',
                level=logging.WARNING)
            if explicit:
                wrapper.dtype = dtype
            continue
        if not cuda and wrapper_type == 'AmpOptimWrapper':
            # MMEngine's AmpOptimWrapper needs a GPU; bfloat16 needs no
            # loss scaler.
            for key in ('loss_scale', 'use_fsdp'):
                wrapper.pop(key, None)
            print_log(
                'AmpOptimWrapper needs CUDA: using CPUAmpOptimWrapper.',
                logger='current',
                level=logging.WARNING)
        elif wrapper_type != 'OptimWrapper':
            raise ValueError('--amp needs optim_wrapper.type=OptimWrapper, '
                             f'got {wrapper_type}.')
        wrapper.type = target
        wrapper.dtype = dtype
        if cuda:
            wrapper.setdefault('loss_scale', 'dynamic')


def distill_pair(args: argparse.Namespace) -> Optional[str]:
    """One-command distillation: write the config, print its table;
    returns its path, or None for ``--dry-run``."""
    from mmakd.apis.distill_pair import PairingError, make_pair_config
    try:
        made = make_pair_config(args.config, args.teacher, args.teacher_ckpt,
                                args.work_dir, args.distill, args.avatars,
                                args.aux_head, args.cfg_options)
    except PairingError as err:
        raise SystemExit(f'error: {err}') from None
    args.work_dir = made.work_dir
    if os.environ.get('RANK', '0') != '0':  # the table once per launch
        return None if args.dry_run else made.path
    print(made.table, flush=True)
    if made.replaced:
        print(f'  (a different config of that name was moved to '
              f'{made.replaced})')
    if args.dry_run:
        print(f'dry run: wrote {made.path}; train it with `python '
              f'tools/train.py {made.path}`.')
        return None
    return made.path


def main() -> None:
    args = parse_args()
    config = args.config
    if args.teacher is not None:
        config = distill_pair(args)
        if config is None:
            return
        args.cfg_options = None  # written into the generated config
    cfg = load_config(config, args.cfg_options)
    prepare_distributed(cfg, args.launcher)

    set_work_dir(cfg, args.work_dir)
    cfg, dump_note = keep_config_file(cfg)

    if args.amp:
        enable_amp(cfg, args.amp_dtype)

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise KeyError('--auto-scale-lr needs auto_scale_lr.'
                           'base_batch_size in the config.')
        cfg.auto_scale_lr.enable = True
    log_notes = [
        dump_note,
        fit_logger_interval(cfg),
        use_atomic_checkpoints(cfg),
        use_random_state_hook(cfg)
    ]

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    # find and read the checkpoint to resume from before building anything
    # (after a kill: the newest that loads); the teacher files its
    # teachers' weights replace are not read
    resume_from, warnings = resume_checkpoint(cfg)
    notes = []
    if resume_from:
        cfg.load_from = resume_from
        notes = use_teachers_from_checkpoint(
            cfg, resume_from, '--resume' if args.resume else 'resume')

    runner = Runner.from_cfg(cfg)
    for note in warnings:
        print_log(note, logger='current', level=logging.WARNING)
    for note in notes + [note for note in log_notes if note]:
        print_log(note, logger='current')
    runner.train()


if __name__ == '__main__':
    main()
