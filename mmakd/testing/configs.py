# Copyright (c) mmakd contributors. All rights reserved.
"""Config overrides for building distillation configs offline."""
from typing import Any, Dict

from mmengine.config import Config

__all__ = ['random_weights_overrides', 'shapes_det_overrides']


def random_weights_overrides(cfg: Config) -> Dict[str, Any]:
    """``--cfg-options`` that build ``cfg.model`` with random weights.

    Drops everything that loads weights while the model is built: the
    teacher checkpoint(s), ``pretrained`` of the teacher or student, the
    ``checkpoint`` of distiller connectors and the ``pretrained`` of
    distillation losses (e.g. the output of an earlier training stage, or
    MasKD's mask tokens). Backbone ``init_cfg``s are left alone: they only
    load in ``init_weights()``.

    Args:
        cfg (Config): A distillation config.

    Returns:
        dict: Dotted keys to merge with ``cfg.merge_from_dict``.
    """
    overrides: Dict[str, Any] = {}
    if cfg.model.get('teacher_ckpt'):
        overrides['model.teacher_ckpt'] = None
    if cfg.model.get('teacher_ckpts'):  # MultiTeacherDistill
        overrides['model.teacher_ckpts'] = [None] * len(
            cfg.model.teacher_ckpts)
    for key in ('teacher', 'architecture'):
        sub = cfg.model.get(key)
        if isinstance(sub, dict) and sub.get('pretrained'):
            overrides[f'model.{key}.pretrained'] = False
    distiller = cfg.model.get('distiller') or {}
    for group, key in (('connectors', 'checkpoint'), ('distill_losses',
                                                      'pretrained')):
        for name, module in (distiller.get(group) or {}).items():
            if isinstance(module, dict) and module.get(key):
                overrides[f'model.distiller.{group}.{name}.{key}'] = None
    return overrides


def shapes_det_overrides(cfg: Config,
                         root: str,
                         size: int = 128,
                         batch_size: int = 2,
                         validate: bool = True) -> Dict[str, Any]:
    """``--cfg-options`` that point a COCO detection config at the shapes
    dataset written by :func:`mmakd.datasets.generate_shapes`.

    The overrides keep the config's own dataset class, pipeline, sampler
    and evaluator (``CocoDataset``, ``CocoMetric``) and change only paths,
    class names, image scale, batch size and workers.

    Args:
        cfg (Config): A config built on ``mmdet::_base_/datasets/coco_*``.
        root (str): Root of the generated dataset.
        size (int): Image scale for ``Resize``. Defaults to 128.
        batch_size (int): Training batch size. Defaults to 2.
        validate (bool): Keep validation; False sets ``val_*`` to None (use
            when the model's heads do not have one output per shape class).
            Defaults to True.

    Returns:
        dict: Dotted keys to merge with ``cfg.merge_from_dict``.
    """
    from mmakd.datasets import CLASSES
    overrides: Dict[str, Any] = {}
    for split, ann in (('train', 'train'), ('val', 'val'), ('test', 'val')):
        key = f'{split}_dataloader'
        if cfg.get(key) is None:
            continue
        overrides.update({
            f'{key}.dataset.data_root': root,
            f'{key}.dataset.ann_file': f'annotations/instances_{ann}.json',
            f'{key}.dataset.data_prefix.img': '',
            f'{key}.dataset.metainfo': dict(classes=CLASSES),
            f'{key}.num_workers': 0,
            f'{key}.persistent_workers': False,
        })
        for i, step in enumerate(cfg[key].dataset.pipeline):
            if 'scale' in step:
                overrides[f'{key}.dataset.pipeline.{i}.scale'] = (size, size)
        evaluator = f'{split}_evaluator'
        if split != 'train' and cfg.get(evaluator) is not None:
            overrides[f'{evaluator}.ann_file'] = \
                f'{root}/annotations/instances_val.json'
    overrides['train_dataloader.batch_size'] = batch_size
    if not validate:
        overrides.update(val_dataloader=None, val_evaluator=None, val_cfg=None)
    return overrides
