# Copyright (c) mmakd contributors. All rights reserved.
"""Helpers shared by the tests (on sys.path through setup.cfg)."""
import contextlib
import glob
import importlib.util
import logging
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import Dict, List, Sequence, Tuple

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(path: str, name: str):
    """The script ``path`` (relative to the repository) imported as module
    ``name``, without running its ``__main__`` block."""
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def free_port() -> int:
    """A TCP port nobody listens on now (for a launcher's PORT)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def png_size(path: str) -> Tuple[int, int]:
    """(width, height) of a PNG file, which must be one."""
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG'
    return int.from_bytes(head[16:20],
                          'big'), int.from_bytes(head[20:24], 'big')


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


def random_teacher_checkpoint(path: str,
                              config: str = DEMO_TEACHER,
                              seed: int = 0) -> str:
    """Save a teacher of ``config`` initialised from ``seed`` to
    ``path``."""
    import torch

    from mmakd.models.utils import build_model_from_spec
    torch.manual_seed(seed)
    model = build_model_from_spec(dict(cfg_path=config), 'teacher')
    torch.save(dict(state_dict=model.state_dict(), meta={}), path)
    return path


def _mmrazor_configs_root() -> str:
    """MMRazor's config folder: ``.mim/configs`` of an installed package, or
    the source tree's ``configs`` of an editable one (as
    :func:`mmakd.utils.resolve_config_path` looks them up)."""
    from mmengine.utils import get_installed_path
    root = get_installed_path('mmrazor')
    for candidate in (osp.join(root, '.mim', 'configs'),
                      osp.join(osp.dirname(root), 'configs')):
        if osp.isdir(osp.join(candidate, 'distill')):
            return candidate
    raise FileNotFoundError(f'MMRazor at {root} ships no distill/ configs')


MMRAZOR_CONFIGS_ROOT = _mmrazor_configs_root()
#: The folders of MMRazor's configs that the installed stack can load
#: (``distill/mmcls`` needs MMClassification 1.x and ``distill/mmdet3d``
#: MMDetection3D, neither of which is installed).
MMRAZOR_TASK_FOLDERS = ('distill/mmdet', 'distill/mmseg')


def _mmrazor_distill_configs() -> List[str]:
    found = []
    for folder in MMRAZOR_TASK_FOLDERS:
        found += glob.glob(
            osp.join(MMRAZOR_CONFIGS_ROOT, folder, '**', '*.py'),
            recursive=True)
    # ``_base_`` folders hold fragments, not configs one can train.
    return sorted(
        osp.relpath(p, MMRAZOR_CONFIGS_ROOT).replace(osp.sep, '/')
        for p in found
        if '_base_' not in osp.relpath(p, MMRAZOR_CONFIGS_ROOT).split(osp.sep))


#: MMRazor's detection and segmentation distillation configs, relative to
#: its config folder (``distill/mmdet/pkd/pkd_fpn_....py``; ``mmrazor::``
#: in front loads one), found by globbing the installed package, so that a
#: config a new MMRazor adds is covered without editing the tests.
MMRAZOR_DISTILL_CONFIGS = _mmrazor_distill_configs()

MMRAZOR_CWD_FRCNN = 'distill/mmdet/cwd/cwd_fpn_frcnn_r101_frcnn_r50_1x_coco.py'
#: Configs that do not build as MMRazor 1.0.0 ships them, whatever the
#: distiller: (the error, the ``--cfg-options`` that repair them). The tests
#: use them repaired; ``test_upstream_breakage_is_still_there`` fails once
#: MMRazor fixes one, so that the entry is removed.
MMRAZOR_UPSTREAM_FIXES: Dict[str, Tuple[str, Dict[str, str]]] = {
    # Its student and teacher are MMDetection 2.x file names, which
    # MMDetection 3.x renamed (faster_rcnn_r50_... -> faster-rcnn_r50_...).
    MMRAZOR_CWD_FRCNN: (
        r'faster_rcnn/faster_rcnn_r50_fpn_1x_coco\.py" does not exist',
        {
            'model.architecture.cfg_path':
            'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
            'model.teacher.cfg_path':
            'mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py',
        },
    ),
}


class PerturbationSpy:
    """Records the Avatars an Avatar perturbation module draws, as
    ``(K, ...)`` stacks (its ``draw`` wrapped in place; the distiller draws
    through it)."""

    def __init__(self, perturbation):
        self.outputs = []
        original = perturbation.draw

        def draw(*args, **kwargs):
            out = original(*args, **kwargs)
            self.outputs.append(out.materialize().detach().clone())
            return out

        perturbation.draw = draw


class _Messages(logging.Handler):

    def __init__(self, level: int):
        super().__init__(level)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def logged_messages(level: int = logging.INFO):
    """The messages MMEngine's current logger logs at ``level`` or above
    while the block runs (a list, filled as they come)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    handler = _Messages(level)
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def fbkd_distiller_parts(name: str = 'loss_s0') -> Tuple[dict, dict, dict]:
    """``distill_losses``, ``loss_forward_mappings`` and ``connectors`` of a
    distiller with one FBKD loss ``name`` on the 16-channel recorder
    ``feat``, through FBKD's student (``s0``) and teacher (``t0``)
    connectors."""
    common = dict(
        in_channels=16,
        reduction=4,
        mode='dot_product',
        sub_sample=True,
        maxpool_stride=2)
    losses = {name: dict(type='FBKDLoss')}
    mappings = {
        name:
        dict(
            s_input=dict(from_student=True, recorder='feat', connector='s0'),
            t_input=dict(from_student=False, recorder='feat', connector='t0'))
    }
    connectors = dict(
        s0=dict(type='FBKDStudentConnector', **common),
        t0=dict(type='FBKDTeacherConnector', **common))
    return losses, mappings, connectors


def slow_unless(values: Sequence, fast: Sequence[str]) -> list:
    """``values`` for ``pytest.mark.parametrize``: those whose text contains
    one of the substrings ``fast`` run in ``make test``, the others are
    marked ``slow`` (``make test-slow``). The fast ones stand for the
    capability; each slow one is the same check on a larger model."""
    import pytest
    missing = [f for f in fast if not any(f in str(v) for v in values)]
    assert not missing, f'no value matches {missing}'
    return [
        v if any(f in str(v)
                 for f in fast) else pytest.param(v, marks=pytest.mark.slow)
        for v in values
    ]
