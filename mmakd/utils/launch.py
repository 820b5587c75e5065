# Copyright (c) mmakd contributors. All rights reserved.
"""Distributed set-up that also works on machines without a GPU."""
import os

import torch
import torch.distributed as dist
from mmengine.config import Config

__all__ = ['prepare_distributed']


def prepare_distributed(cfg: Config, launcher: str) -> None:
    """Make ``launcher`` work on CPU-only machines too.

    MMEngine's ``init_dist`` calls ``torch.cuda.set_device`` and its runner
    wraps the model in DDP with ``device_ids=[LOCAL_RANK]``; both fail
    without a GPU. On such a machine this initialises the process group
    with the ``gloo`` backend from the ``torchrun`` environment (the runner
    then skips its own initialisation) and asks for a CPU DDP wrapper. With
    a GPU, or without a launcher, it changes nothing.

    Args:
        cfg (Config): The config the runner will be built from.
        launcher (str): ``'none'``, ``'pytorch'`` or ``'slurm'``.
    """
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher == 'slurm':
        raise RuntimeError(
            '--launcher slurm needs GPUs; on CPU use tools/dist_train.sh '
            '(torchrun with the gloo backend).')
    if not dist.is_initialized():
        for var in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
            if var not in os.environ:
                raise RuntimeError(
                    f'--launcher {launcher} expects torchrun to set {var}; '
                    'start with tools/dist_train.sh CONFIG NUM_PROCS.')
        dist.init_process_group(backend='gloo')
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
