# Copyright (c) mmakd contributors. All rights reserved.
"""Count device-to-host synchronisations, on any device."""
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['CountHostSyncs']


class CountHostSyncs(TorchDispatchMode):
    """Count calls of ``aten::_local_scalar_dense`` inside the block.

    That op is what ``tensor.item()``, ``bool(tensor)``, ``float(tensor)``
    and one-element ``tolist()`` run: on an accelerator each one waits for
    the device to finish (a synchronisation). The count is the same on the
    CPU, where it costs nothing, so tests and benchmarks can check it
    without a GPU::

        with CountHostSyncs() as syncs:
            model.train_step(batch, optim)
        print(syncs.count)

    Attributes:
        count (int): Synchronisations counted so far.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self,
                           func: Any,
                           types: Any,
                           args: Any = (),
                           kwargs: Any = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))
