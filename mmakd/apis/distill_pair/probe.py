# Copyright (c) mmakd contributors. All rights reserved.
"""What one-command distillation pairs in a model, and the shapes it
records: the kind of model, the modules whose outputs are paired, and one
forward of a random batch through the model as built (no weights read)."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = [
    'PairingError', 'model_kind', 'is_two_stage', 'logit_sources',
    'probe_size', 'probe_records'
]

#: The longer side of the probe batch: shapes and strides are checked at
#: this size, not at the training size (a CPU forward of a large teacher at
#: 800x1333 would take many seconds).
PROBE_SIDE = 256


class PairingError(ValueError):
    """Two models, or a model and a loss, that cannot be paired; the
    message names the config key or option and the reason."""


def model_kind(model: nn.Module, key: str) -> str:
    """``'det'`` (a detector with a neck), ``'seg'`` (a segmentor with a
    decode head) or ``'cls'`` (an image classifier).

    Args:
        model (nn.Module): The built model.
        key (str): What the model is to the user, e.g. ``'--teacher
            configs/x.py'``, for the error.

    Raises:
        PairingError: None of the three.
    """
    if getattr(model, 'decode_head', None) is not None:
        return 'seg'
    try:
        from mmdet.models.detectors import BaseDetector
        if isinstance(model, BaseDetector) and getattr(model, 'neck',
                                                       None) is not None:
            return 'det'
    except ImportError:  # pragma: no cover - optional package
        pass
    try:
        from mmpretrain.models.classifiers import ImageClassifier
        if isinstance(model, ImageClassifier) and getattr(model, 'head',
                                                          None) is not None:
            return 'cls'
    except ImportError:  # pragma: no cover
        pass
    raise PairingError(
        f'{key}: {type(model).__name__} has no neck (model.neck) and no '
        'decode head (model.decode_head), and is not an image classifier '
        'with a head (model.head). One-command distillation pairs the neck '
        "levels of detectors, a segmentor's decode-head logits or a "
        "classifier's logits; for other models write a full MMRazor config "
        '(README, "Use it on your own models").')


def is_two_stage(model: nn.Module) -> bool:
    """Whether ``model`` is an MMDetection two-stage detector."""
    try:
        from mmdet.models.detectors import TwoStageDetector
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, TwoStageDetector)


def _last_linear(head: nn.Module, prefix: str) -> Optional[str]:
    names = [n for n, m in head.named_modules() if isinstance(m, nn.Linear)]
    return f'{prefix}.{names[-1]}' if names else None


def logit_sources(model: nn.Module,
                  kind: str,
                  key: str,
                  aux_head: bool = False) -> List[str]:
    """Module paths whose outputs are a segmentor's or classifier's logits.

    Segmentors: the decode head's ``conv_seg`` (the last head of a cascade;
    with ``aux_head`` also every auxiliary head's). Classifiers: the last
    ``nn.Linear`` of ``head``.

    Raises:
        PairingError: No such module; names the config key.
    """
    if kind == 'cls':
        source = _last_linear(model.head, 'head')
        if source is None:
            raise PairingError(
                f'{key}: model.head ({type(model.head).__name__}) has no '
                'linear layer whose outputs are the logits.')
        return [source]
    heads = [('decode_head', model.decode_head)]
    if isinstance(model.decode_head, nn.ModuleList):
        last = len(model.decode_head) - 1
        heads = [(f'decode_head.{last}', model.decode_head[last])]
    if aux_head:
        aux = getattr(model, 'auxiliary_head', None)
        if aux is None:
            raise PairingError(
                f'{key}: --aux-head, but the model has no auxiliary head '
                '(model.auxiliary_head).')
        if isinstance(aux, nn.ModuleList):
            heads += [(f'auxiliary_head.{i}', h) for i, h in enumerate(aux)]
        else:
            heads.append(('auxiliary_head', aux))
    sources = []
    for path, head in heads:
        if not isinstance(getattr(head, 'conv_seg', None), nn.Module):
            raise PairingError(
                f'{key}: model.{path} ({type(head).__name__}) has no '
                '`conv_seg` layer whose outputs are the logits.')
        sources.append(f'{path}.conv_seg')
    return sources


def probe_size(cfg) -> Tuple[int, int]:
    """(H, W) of the probe batch: the segmentor's training crop
    (``model.data_preprocessor.size``), scaled down to fit
    :data:`PROBE_SIDE`, or a square of that side; multiples of 32."""
    size = (cfg.get('model') or {}).get('data_preprocessor', {}).get('size')
    if not size:
        return PROBE_SIDE, PROBE_SIDE
    height, width = size
    scale = min(1.0, PROBE_SIDE / max(height, width))
    return tuple(
        max(32,
            int(round(s * scale / 32)) * 32) for s in (height, width))


def _shapes(value) -> List[Tuple[int, ...]]:
    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _shapes(v)]
    return []


def probe_records(model: nn.Module, kind: str, sources: Sequence[str],
                  size: Tuple[int, int]) -> Dict[str, List[Tuple[int, ...]]]:
    """Run a random (1, 3, H, W) batch through ``model`` in evaluation
    mode, without gradient, and return the shapes each source module
    outputs (a neck: one per level). A module that returns one tensor
    rather than a sequence of them is listed in ``outputs['__tensor__']``
    (its recorder takes no ``data_idx``).

    Detectors run ``extract_feat`` (backbone and neck), segmentors and
    classifiers their tensor forward (and the auxiliary heads their own).
    The model's train/eval state is restored.
    """
    outputs: Dict[str, List[Tuple[int, ...]]] = {}
    handles = []
    for source in sources:

        def hook(module, args, output, source=source):
            outputs[source] = _shapes(output)
            if isinstance(output, torch.Tensor):
                outputs.setdefault('__tensor__', []).append(source)

        handles.append(model.get_submodule(source).register_forward_hook(hook))
    training = model.training
    inputs = torch.randn(
        1, 3, *size, generator=torch.Generator().manual_seed(0))
    model.eval()
    try:
        with torch.no_grad():
            if kind == 'det':
                model.extract_feat(inputs)
            else:
                model(inputs, mode='tensor')
            if any(s.startswith('auxiliary_head') for s in sources):
                feats = model.extract_feat(inputs)
                aux = model.auxiliary_head
                for head in (aux if isinstance(aux, nn.ModuleList) else [aux]):
                    head(feats)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return outputs
