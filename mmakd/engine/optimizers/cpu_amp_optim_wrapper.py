# Copyright (c) mmakd contributors. All rights reserved.
"""Mixed precision training on CPU: bfloat16 autocast."""
from contextlib import contextmanager
from typing import Iterator, Union

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from mmakd.registry import OPTIM_WRAPPERS

__all__ = ['CPUAmpOptimWrapper']


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """An ``OptimWrapper`` that runs the forward pass in bfloat16 autocast
    on CPU.

    MMEngine's ``AmpOptimWrapper`` needs CUDA (or NPU, MLU, MUSA); this is
    its CPU counterpart, which ``tools/train.py --amp`` selects when CUDA is
    not available. bfloat16 has float32's exponent range, so no loss scaler
    is needed: ``backward`` and ``step`` are plain ``OptimWrapper``'s.
    float16 is refused, since it would need one.

    :class:`~mmakd.models.AvatarDistiller` computes its statistics and
    losses in float32 with autocast disabled, whatever the wrapper.

    Example::

        optim_wrapper = dict(
            type='mmrazor.CPUAmpOptimWrapper', dtype='bfloat16',
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9))

    Args:
        dtype (str | torch.dtype): The autocast dtype (config key
            ``optim_wrapper.dtype``); only ``'bfloat16'``. Defaults to
            ``'bfloat16'``.
        **kwargs: ``OptimWrapper`` arguments (``optimizer``,
            ``accumulative_counts``, ``clip_grad``).

    Raises:
        ValueError: If ``dtype`` is not bfloat16.
    """

    def __init__(self,
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 **kwargs) -> None:
        self.cast_dtype = self.check_dtype(dtype)
        super().__init__(**kwargs)

    @staticmethod
    def check_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
        """Return ``dtype`` as ``torch.bfloat16``, or raise.

        Args:
            dtype (str | torch.dtype): ``'bfloat16'`` or ``torch.bfloat16``.

        Returns:
            torch.dtype: ``torch.bfloat16``.

        Raises:
            ValueError: For any other dtype, naming ``optim_wrapper.dtype``.
        """
        name = str(dtype).replace('torch.', '')
        if name == 'bfloat16':
            return torch.bfloat16
        hint = (' float16 needs a GradScaler, and mixed precision on CPU is '
                'bfloat16 only;' if name == 'float16' else '')
        raise ValueError(
            f'optim_wrapper.dtype={name!r} is not supported by '
            f"CPUAmpOptimWrapper:{hint} use optim_wrapper.dtype='bfloat16' "
            '(tools/train.py --amp --amp-dtype bfloat16), or train on a GPU '
            'for float16.')

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """``OptimWrapper``'s context (no gradient synchronisation while
        accumulating) inside bfloat16 CPU autocast.

        Args:
            model (nn.Module): The training model.
        """
        with super().optim_context(model), torch.autocast(
                device_type='cpu', dtype=self.cast_dtype):
            yield
