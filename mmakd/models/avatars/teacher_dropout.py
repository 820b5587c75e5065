# Copyright (c) mmakd contributors. All rights reserved.
import difflib
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Sequence

import torch
from torch import Tensor, nn

from mmakd.registry import MODELS
from .base_teacher_avatars import AvatarGroup, BaseTeacherAvatars
from .functional import check_probability

__all__ = ['TeacherDropout', 'default_dropout_modules']


def default_dropout_modules(model: nn.Module) -> List[str]:
    """The outputs of the backbone's stages: ``backbone.layer1`` ... for
    MMDetection's, MMSegmentation's and MMPretrain's ResNets
    (``res_layers``), ``backbone.stages.<i>`` for backbones with a
    ``stages`` list (Swin, ConvNeXt...); empty if neither."""
    backbone = getattr(model, 'backbone', None)
    layers = getattr(backbone, 'res_layers', None)
    if isinstance(layers, (list, tuple)) and layers:
        return [f'backbone.{name}' for name in layers]
    stages = getattr(backbone, 'stages', None)
    if isinstance(stages, (nn.ModuleList, nn.Sequential)) and len(stages):
        return [f'backbone.stages.{i}' for i in range(len(stages))]
    return []


def _apply(value: Any, fn: Any) -> Any:
    if isinstance(value, Tensor) and value.is_floating_point():
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_apply(v, fn) for v in value)
    return value


@MODELS.register_module()
class TeacherDropout(BaseTeacherAvatars):
    """Monte Carlo dropout Avatars: the teacher runs ``K`` times with
    dropout active inside it, each run a different function of the input
    (AKD, Zhang et al., ACM MM 2023, https://arxiv.org/abs/2305.02722:
    Avatars as "inference ensemble models derived from the teacher";
    Gal and Ghahramani, ICML 2016, for dropout at inference).

    Dropout of rate ``p`` (inverted: kept values are divided by ``1 - p``)
    is applied to the outputs of ``modules`` of the teacher, only while it
    draws Avatars, whatever its mode. The ``K`` runs are one teacher forward
    on ``K`` copies of the batch (``samples_per_forward`` splits it), each
    copy with its own masks from the seeded generator. The teacher
    recorders then hold the mean of the ``K`` runs (the Monte Carlo
    estimate of the teacher's prediction) for the losses without Avatars.

    Args:
        p (float): Drop probability in [0, 1). Defaults to 0.1.
        modules (Sequence[str], optional): Names of teacher modules
            (``model.named_modules()``) whose outputs are dropped. Defaults
            to None: the outputs of the backbone's stages
            (:func:`default_dropout_modules`).
        channel (bool): Drop whole channels (``Dropout2d``) instead of
            elements. Defaults to False.
        num_avatars (int): ``K``. Defaults to 4.
        samples_per_forward (int, optional): See
            :class:`~mmakd.models.avatars.BaseTeacherAvatars`.
    """

    def __init__(self,
                 p: float = 0.1,
                 modules: Optional[Sequence[str]] = None,
                 channel: bool = False,
                 num_avatars: int = 4,
                 samples_per_forward: Optional[int] = None) -> None:
        super().__init__(num_avatars, samples_per_forward)
        self.p = check_probability(p)
        if modules is not None and (isinstance(
                modules, str) or not all(isinstance(m, str)
                                         for m in modules) or not modules):
            raise TypeError('modules must be a non-empty list of module '
                            f'names or None, got {modules!r}')
        if not isinstance(channel, bool):
            raise TypeError(f'channel must be True or False, got {channel!r}')
        self.modules_given = None if modules is None else list(modules)
        self.channel = channel
        #: The hooked module names of each attached teacher.
        self.hooked: List[List[str]] = []
        self._handles: List[Any] = []
        self._generator: Optional[torch.Generator] = None
        self._active = False

    def groups(self, inputs: Tensor,
               generator: Optional[torch.Generator]) -> List[AvatarGroup]:
        return [
            AvatarGroup(chunk,
                        inputs.repeat(len(chunk), *([1] * (inputs.dim() - 1))))
            for chunk in self.chunks(range(self.num_avatars), len(inputs))
        ]

    def attach(self, models: Sequence[nn.Module], key: str) -> None:
        """Hook the dropout onto ``modules`` of every teacher, before any
        other forward hook (so recorders of those modules see it)."""
        for handle in self._handles:
            handle.remove()
        self._handles, self.hooked = [], []
        for model in models:
            names = self.modules_given or default_dropout_modules(model)
            if not names:
                raise ValueError(
                    f'{key}.modules: no default for a teacher whose backbone '
                    f'is {type(getattr(model, "backbone", None)).__name__} '
                    '(neither ResNet res_layers nor a stages list); name the '
                    "modules, e.g. modules=['backbone.layer3'].")
            found = dict(model.named_modules())
            for name in names:
                if name not in found:
                    close = difflib.get_close_matches(name, list(found), 3)
                    raise ValueError(
                        f'{key}.modules: the teacher has no module {name!r}' +
                        (f'; did you mean {close}?' if close else '.'))
                self._handles.append(found[name].register_forward_hook(
                    self._hook, prepend=True))
            self.hooked.append(list(names))

    def _hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        if not self._active or self.p == 0:
            return None
        return _apply(output, self._drop)

    def _drop(self, x: Tensor) -> Tensor:
        shape = x.shape[:2] + (1, ) * (x.dim() - 2) if self.channel and \
            x.dim() > 2 else x.shape
        keep = torch.rand(
            shape, generator=self._generator, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)

    @contextmanager
    def active(self, generator: Optional[torch.Generator]) -> Iterator[None]:
        """Dropout on while inside, drawn from ``generator`` (None: the
        global one)."""
        self._active, self._generator = True, generator
        try:
            yield
        finally:
            self._active, self._generator = False, None

    def extra_repr(self) -> str:
        return (f'num_avatars={self.num_avatars}, p={self.p}, '
                f'modules={self.modules_given or "backbone stages"}, '
                f'channel={self.channel}')
