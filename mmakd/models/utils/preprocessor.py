# Copyright (c) mmakd contributors. All rights reserved.
"""Check that teacher and student see their inputs preprocessed alike.

A distillation algorithm runs one data preprocessor (the student's, unless
the algorithm sets its own) and feeds its output to both networks. A teacher
trained with other normalisation constants or channel order then receives
inputs it never saw in training and teaches nonsense, silently. MMRazor does
not check this; :func:`check_preprocessors_match` fails at build time.
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

__all__ = ['preprocessing_signature', 'check_preprocessors_match']


def preprocessing_signature(preprocessor: Optional[nn.Module]) -> \
        Optional[Dict[str, object]]:
    """What a data preprocessor does to pixel values.

    Args:
        preprocessor (nn.Module, optional): An MMEngine, MMDetection,
            MMSegmentation or MMPretrain data preprocessor.

    Returns:
        dict | None: ``mean`` and ``std`` (tuples, or None when it does not
        normalise) and ``flip_channels`` (BGR<->RGB), or None when the
        preprocessor does not say (e.g. mmengine's ``BaseDataPreprocessor``).
    """
    if preprocessor is None or not hasattr(preprocessor, '_enable_normalize'):
        return None
    flip = False
    for attr in ('_channel_conversion', 'channel_conversion', 'to_rgb'):
        flip = flip or bool(getattr(preprocessor, attr, False))
    mean = std = None
    if preprocessor._enable_normalize:
        mean = tuple(float(v) for v in preprocessor.mean.flatten())
        std = tuple(float(v) for v in preprocessor.std.flatten())
    return dict(mean=mean, std=std, flip_channels=flip)


def _close(a: Optional[Tuple[float, ...]], b: Optional[Tuple[float,
                                                             ...]]) -> bool:
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and torch.allclose(
        torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=1e-4)


def check_preprocessors_match(
        reference: Tuple[str, Optional[nn.Module]],
        others: Sequence[Tuple[str, Optional[nn.Module]]]) -> None:
    """Raise if a model's own preprocessing differs from the one that runs.

    Args:
        reference (tuple[str, nn.Module]): Config key and module of the
            preprocessor the algorithm runs.
        others (Sequence[tuple[str, nn.Module]]): Config keys and modules of
            the preprocessors each model was configured (trained) with.

    Raises:
        ValueError: Naming both config keys and every field that differs.
    """
    ref_key, ref_module = reference
    ref = preprocessing_signature(ref_module)
    if ref is None:
        return
    for key, module in others:
        sig = preprocessing_signature(module)
        if sig is None:
            continue
        diffs = []
        for field in ('mean', 'std'):
            if not _close(sig[field], ref[field]):
                diffs.append(f'{field}: {key}={sig[field]} vs '
                             f'{ref_key}={ref[field]}')
        if sig['flip_channels'] != ref['flip_channels']:
            diffs.append(f'channel order (bgr_to_rgb): '
                         f'{key}={sig["flip_channels"]} vs '
                         f'{ref_key}={ref["flip_channels"]}')
        if diffs:
            raise ValueError(
                f'{key} and {ref_key} preprocess images differently; the '
                f'model would see inputs unlike those it was trained on: ' +
                '; '.join(diffs) + '. Make them agree, or set '
                'model.check_preprocessors=False if this is intended.')
