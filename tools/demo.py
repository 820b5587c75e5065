# Copyright (c) mmakd contributors. All rights reserved.
"""A short CPU distillation run of MMRazor's shipped CWD RetinaNet config.

Builds ``mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py``
through mmakd's tooling with random weights (no download), and trains the
R50 student against the frozen R101 teacher for a few SGD steps on one
generated batch, printing the losses. It shows the whole stack (PyTorch
2.13 + MMRazor 1.0.0 through mmakd's compatibility layer) working; it is not
a benchmark and its numbers mean nothing beyond "it trains".
"""
import argparse
import os
import os.path as osp
import tempfile
import time

import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmakd  # noqa: F401
from mmakd.registry import MODELS
from mmakd.testing import (det_batch, random_weights_overrides,
                           seed_checkpoint_cache)
from mmakd.utils import load_config

CONFIG = 'mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py'  # noqa: E501


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    cfg = load_config(args.config)
    cfg.merge_from_dict(random_weights_overrides(cfg))
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    print(f'[demo] building {args.config} (random weights)', flush=True)
    model = MODELS.build(cfg.model)
    # init_weights() sets the heads' priors and loads ImageNet backbones;
    # here the backbone files are random weights in a private, temporary
    # TORCH_HOME (never the user's cache), so nothing is downloaded.
    with tempfile.TemporaryDirectory() as torch_home:
        seed_checkpoint_cache(
            ['torchvision://resnet50', 'torchvision://resnet101'],
            torch_home)
        previous = os.environ.get('TORCH_HOME')
        os.environ['TORCH_HOME'] = torch_home
        try:
            model.init_weights()
        finally:
            if previous is None:
                del os.environ['TORCH_HOME']
            else:
                os.environ['TORCH_HOME'] = previous
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    # Train at the learning rate the config's linear warm-up starts from.
    warmup = [
        s for s in cfg.get('param_scheduler', [])
        if s.get('type') == 'LinearLR'
    ]
    factor = warmup[0].get('start_factor', 1.0) if warmup else 1.0
    for group in optim.param_groups:
        group['lr'] *= factor
    batch = det_batch(2, args.size, args.size, seed=args.seed)
    model.train()
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        log = model.train_step(batch, optim)
        seconds = time.perf_counter() - start
        distill = sum(v.item() for k, v in log.items()
                      if k.startswith('distill.'))
        print(f'[demo] step {step}/{args.steps}  loss {log["loss"]:.3f}  '
              f'distill {distill:.3f}  '
              f'student {log["loss"].item() - distill:.3f}  '
              f'({seconds:.2f} s)', flush=True)
    print('[demo] done: teacher frozen, student trained with CWD on CPU.')


if __name__ == '__main__':
    main()
