# Copyright (c) mmakd contributors. All rights reserved.
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .standardize import _reduce_dims

__all__ = ['AvatarDraw']


class AvatarDraw:
    """The ``K`` Avatars of one teacher tensor (AKD, Zhang et al., ACM MM
    2023, https://arxiv.org/abs/2305.02722), materialised one at a time.

    Either a ``(K, *x.shape)`` stack, or, for a dropout perturbation, its
    boolean keep-masks (one byte per element and Avatar, a quarter of a
    float32 stack; or one per channel) and the Avatar ``k`` is
    ``x * masks[k] / keep[k]``, computed when asked for: the same values as
    the stack, bit for bit. Indexing gives one Avatar; :meth:`moments` the
    per-channel statistics of all.

    Args:
        x (Tensor): The teacher tensor ``(N, C, *spatial)``.
        stack (Tensor, optional): ``(K, *x.shape)`` Avatars.
        masks (Tensor, optional): ``(K, ...)`` bool keep-masks that
            broadcast against ``x``.
        keep (float | Sequence[Tensor], optional): The keep probability, or
            one (a float32 tensor) per Avatar.
    """

    def __init__(self,
                 x: Tensor,
                 stack: Optional[Tensor] = None,
                 masks: Optional[Tensor] = None,
                 keep: Union[float, Sequence[Tensor], None] = None) -> None:
        if (stack is None) == (masks is None):
            raise ValueError('give the Avatars as a stack or as masks')
        self.x, self.stack, self.masks, self.keep = x, stack, masks, keep

    def __len__(self) -> int:
        return len(self.stack if self.stack is not None else self.masks)

    def __getitem__(self, k: int) -> Tensor:
        if self.stack is not None:
            return self.stack[k]
        keep = self.keep if isinstance(self.keep, float) else self.keep[k]
        scale = self.masks[k].to(self.x.dtype).div_(keep)
        if scale.shape != self.x.shape or (self.x.requires_grad
                                           and torch.is_grad_enabled()):
            return self.x * scale
        return scale.mul_(self.x)  # in place: the same values as x * scale

    def materialize(self) -> Tensor:
        """All Avatars as one ``(K, *x.shape)`` stack."""
        if self.stack is not None:
            return self.stack
        return torch.stack([self[k] for k in range(len(self))])

    def moments(self) -> Tuple[Tensor, Tensor]:
        """Per-channel variance (biased) and mean of each Avatar, float32,
        ``(K, C)`` each: ``torch.var_mean`` of the stack, or of each Avatar
        in turn (equal bit for bit on the CPU)."""
        if self.stack is not None:
            return torch.var_mean(
                self.stack.float(),
                dim=_reduce_dims(self.stack, True),
                correction=0)
        dims = _reduce_dims(self.x, False)
        pairs = [
            torch.var_mean(self[k].float(), dim=dims, correction=0)
            for k in range(len(self))
        ]
        return (torch.stack([v for v, _ in pairs]),
                torch.stack([m for _, m in pairs]))
