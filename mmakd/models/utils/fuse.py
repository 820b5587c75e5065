# Copyright (c) mmakd contributors. All rights reserved.
"""Fold frozen BatchNorm layers of a frozen teacher into their convolutions.

A distillation teacher that neither trains nor updates its BatchNorm
statistics (MMRazor's ``teacher_trainable=False``, ``teacher_norm_eval=True``)
computes ``bn(conv(x))`` with constants only, which equals one convolution
with rescaled weights and a bias. Folding removes one pass over every
normalised activation map of the teacher's forward.
"""
from typing import Iterable, List, Optional, Set

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ['fuse_frozen_conv_bn']


def _fold(conv: nn.Conv2d, bn: _BatchNorm) -> None:
    """Rewrite ``conv`` in place so that it computes ``bn(conv(x))``."""
    with torch.no_grad():
        std = torch.sqrt(bn.running_var.float() + bn.eps)
        gamma = bn.weight.float(
        ) if bn.weight is not None else torch.ones_like(std)
        beta = bn.bias.float() if bn.bias is not None else torch.zeros_like(
            std)
        factor = gamma / std
        bias = conv.bias.float() if conv.bias is not None else \
            torch.zeros_like(std)
        weight = conv.weight.float() * factor.reshape(
            -1, *([1] * (conv.weight.dim() - 1)))
        new_bias = (bias - bn.running_mean.float()) * factor + beta
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(new_bias.to(dtype), requires_grad=False)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, _BatchNorm)
            and bn.running_mean is not None and bn.running_var is not None
            and conv.out_channels == bn.num_features)


def _convmodule_pair(module: nn.Module) -> Optional[List[str]]:
    """``[conv, norm]`` child names of an mmcv ``ConvModule`` whose forward
    normalises the convolution's output directly, else None."""
    try:
        from mmcv.cnn import ConvModule
    except ImportError:  # pragma: no cover - mmcv is a dependency
        return None
    if not isinstance(module, ConvModule) or not module.with_norm:
        return None
    if tuple(module.order[:2]) != ('conv', 'norm'):
        return None
    return ['conv', module.norm_name]


# yapf: disable
def fuse_frozen_conv_bn(model: nn.Module,
                        keep: Iterable[str] = ()) -> List[str]:
    # yapf: enable
    """Fold every BatchNorm that directly follows a convolution into it.

    A pair is folded when the BatchNorm is the convolution's immediate
    successor among the children of an ``nn.Sequential`` (whose forward
    runs its children in order), of an mmcv ``ConvModule`` with
    ``order=('conv', 'norm', ...)``, or of any other module where the two
    are adjacent children named ``convN``/``normN`` or ``convN``/``bnN``
    (ResNet's basic and bottleneck blocks). The BatchNorm is replaced by an
    ``nn.Identity``, so module paths stay valid; the folded parameters do
    not require gradients.

    Args:
        model (nn.Module): A frozen model whose BatchNorm layers run with
            their running statistics (evaluation mode).
        keep (Iterable[str]): Module paths that must keep their own output
            (e.g. recorder sources): a pair is left alone when either of its
            modules is named here.

    Returns:
        list[str]: Paths of the folded convolutions.
    """
    keep_set: Set[str] = set(keep)
    fused: List[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        children = list(module.named_children())
        pairs = []
        convmodule = _convmodule_pair(module)
        if convmodule is not None:
            pairs.append(tuple(convmodule))
        else:
            sequential = isinstance(module, nn.Sequential)
            for (a, _), (b, _) in zip(children, children[1:]):
                numbered = (
                    a.startswith('conv')
                    and b in ('norm' + a[4:], 'bn' + a[4:])
                    and a[4:].isdigit())
                if sequential or numbered:
                    pairs.append((a, b))
        for a, b in pairs:
            conv, bn = getattr(module, a), getattr(module, b)
            paths = {prefix + a, prefix + b}
            if not _foldable(conv, bn) or paths & keep_set:
                continue
            _fold(conv, bn)
            module._modules[b] = nn.Identity()
            fused.append(prefix + a)
        for name, child in module.named_children():
            if not isinstance(child, nn.Identity):
                visit(child, f'{prefix}{name}.')

    visit(model, '')
    return fused
