# Copyright (c) mmakd contributors. All rights reserved.
"""Helpers shared by the tests (on sys.path through setup.cfg)."""
import os
import os.path as osp
import subprocess
import sys
from typing import List, Sequence

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_python(args: Sequence[str],
               env: dict = None,
               timeout: float = 600,
               cwd: str = REPO,
               path: str = REPO) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` in a fresh interpreter, with ``path`` (the clone
    by default) first on its PYTHONPATH; return the result."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env['PYTHONPATH'] = path + os.pathsep + full_env.get('PYTHONPATH', '')
    return subprocess.run([sys.executable, *args],
                          cwd=cwd,
                          env=full_env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)


def cli_options(overrides: dict) -> List[str]:
    """Render a dict of dotted overrides as ``--cfg-options`` arguments."""

    def fmt(value) -> str:
        if isinstance(value, (tuple, list)):
            inner = ','.join(fmt(v) for v in value)
            return f'({inner})' if isinstance(value, tuple) else f'[{inner}]'
        return str(value)

    args = []
    for key, value in overrides.items():
        if isinstance(value, dict):
            args += [f'{key}.{k}={fmt(v)}' for k, v in value.items()]
        else:
            args.append(f'{key}={fmt(value)}')
    return args


DEMO = 'configs/akd/demo'
DEMO_TEACHER = f'{DEMO}/pspnet_r18-w32_1xb8-1600it_shapes-128.py'
DEMO_STUDENT = f'{DEMO}/pspnet_r18-w8_1xb8-600it_shapes-128.py'
DEMO_CWD = f'{DEMO}/cwd_logits_pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_shapes-128.py'  # noqa: E501
DEMO_AKD = f'{DEMO}/akd_cwd_logits_pspnet-r18-w32_pspnet-r18-w8_1xb8-600it_shapes-128.py'  # noqa: E501

#: An mmakd zoo config that user configs in the tests build on.
AKD_RETINA = 'akd/mmdet/cwd/akd_cwd_fpn_retinanet-r101_retinanet-r50_8xb2-2x_coco.py'  # noqa: E501


def write_user_config(folder) -> str:
    """A user's own config in ``folder`` whose ``_base_`` is the
    ``mmakd::`` path of :data:`AKD_RETINA`; returns its path."""
    path = osp.join(str(folder), 'my_config.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = 'mmakd::{AKD_RETINA}'\n"
                'train_dataloader = dict(batch_size=4)\n')
    return path


def demo_options(data_root: str,
                 iters: int,
                 batch_size: int = 2,
                 **extra) -> dict:
    """--cfg-options that run a demo config for a few iterations on the
    test's generated shapes dataset."""
    options = {}
    for split in ('train', 'val', 'test'):
        options[f'{split}_dataloader.dataset.data_root'] = data_root
    options.update({
        'train_dataloader.batch_size': batch_size,
        'val_dataloader.batch_size': 2,
        'train_cfg.max_iters': iters,
        'train_cfg.val_interval': iters,
        'param_scheduler.0.end': iters,
        'default_hooks.checkpoint.interval': iters,
        'default_hooks.logger.interval': 1,
    })
    options.update(extra)
    return options


def random_teacher_checkpoint(path: str, config: str = DEMO_TEACHER) -> str:
    """Save a randomly initialised teacher of ``config`` to ``path``."""
    import torch

    from mmakd.models.utils import build_model_from_spec
    torch.manual_seed(0)
    model = build_model_from_spec(dict(cfg_path=config), 'teacher')
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return path
