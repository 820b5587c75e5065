# Copyright (c) mmakd contributors. All rights reserved.
"""The batches of an analysis: generated ones or the dataloader's."""
import copy
from typing import Any, Dict, Iterator, Optional, Tuple

from mmengine.config import Config
from torch import nn


def default_fake_size(cfg: Config,
                      model: Optional[nn.Module] = None) -> Tuple[int, int]:
    """The input size a config trains at, for generated batches: the size
    its data preprocessor pads to (a segmentor's crop), else the first
    ``crop_size`` or ``scale`` of the training pipeline (MMDetection's
    ``scale`` is ``(w, h)``), else 224x224.

    Args:
        cfg (Config): The config.
        model (nn.Module, optional): The built algorithm, whose data
            preprocessor is looked at first.

    Returns:
        tuple[int, int]: ``(H, W)``.
    """
    size = getattr(getattr(model, 'data_preprocessor', None), 'size', None)
    if size:
        return int(size[0]), int(size[1])
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    while isinstance(dataset, dict) and 'dataset' in dataset:
        dataset = dataset['dataset']  # RepeatDataset and the like
    for step in (dataset.get('pipeline') or []):
        for key in ('crop_size', 'scale'):
            value = step.get(key) if isinstance(step, dict) else None
            if isinstance(value, int):
                return value, value
            if isinstance(value, (tuple, list)) and len(value) == 2 and \
                    all(isinstance(v, int) for v in value):
                return (value[1], value[0]) if key == 'scale' else \
                    (value[0], value[1])
    return 224, 224


def _fake_batches(model: nn.Module, size: Tuple[int, int],
                  batch_size: int) -> Iterator[Dict[str, Any]]:
    from mmakd.testing import batch_for_model
    seed = 0
    while True:  # a new batch every step: a constant loss means something
        yield batch_for_model(model.student, batch_size, *size, seed=seed)
        seed += 1


def _dataloader_batches(cfg: Config, batch_size: Optional[int],
                        seed: int) -> Iterator[Any]:
    from mmengine.runner import Runner
    loader_cfg = copy.deepcopy(cfg.get('train_dataloader'))
    if not loader_cfg:
        raise KeyError('the config has no train_dataloader; use --fake-data '
                       'to analyse on generated batches.')
    loader_cfg['num_workers'] = 0
    loader_cfg['persistent_workers'] = False
    if batch_size:
        loader_cfg['batch_size'] = batch_size
    try:
        loader = Runner.build_dataloader(loader_cfg, seed=seed)
    except Exception as err:  # noqa: B902 - missing files and the like
        raise RuntimeError(
            f'cfg.train_dataloader could not be built ({type(err).__name__}:'
            f' {err}); point it at the data with --cfg-options '
            'train_dataloader.dataset.data_root=..., or use --fake-data.'
        ) from err
    while True:
        yielded = False
        for batch in loader:
            yielded = True
            yield batch
        if not yielded:
            raise RuntimeError('cfg.train_dataloader yields no batch.')
