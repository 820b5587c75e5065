# Copyright (c) mmakd contributors. All rights reserved.
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from mmakd.registry import MODELS
from .base_teacher_avatars import AvatarGroup, BaseTeacherAvatars

__all__ = ['TeacherViews']

JITTER_KEYS = ('brightness', 'contrast')


def _check_scales(scales: Sequence[float]) -> Tuple[float, ...]:
    if isinstance(scales, (int, float)) and not isinstance(scales, bool):
        scales = (scales, )
    if not isinstance(scales, (list, tuple)) or not scales or any(
            isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0
            for s in scales):
        raise ValueError('scales must be a non-empty sequence of numbers > 0,'
                         f' got {scales!r}')
    if len(set(scales)) < len(scales):
        raise ValueError(f'scales has duplicates: {scales!r}')
    if 1.0 not in scales:
        raise ValueError(
            f'scales must hold 1.0, the original view, got {scales!r}')
    return tuple(float(s) for s in scales)


def _check_jitter(jitter: Optional[Dict]) -> Optional[Dict[str, float]]:
    if jitter is None:
        return None
    if not isinstance(jitter, dict) or set(jitter) - set(JITTER_KEYS):
        raise ValueError(f'jitter must be a dict with keys {JITTER_KEYS}, '
                         f'got {jitter!r}')
    out = {}
    for name in JITTER_KEYS:
        value = jitter.get(name, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not 0 <= value < 1:
            raise ValueError(f'jitter.{name} must be a number in [0, 1), '
                             f'got {value!r}')
        out[name] = float(value)
    return out


@MODELS.register_module()
class TeacherViews(BaseTeacherAvatars):
    """Avatars from the teacher run on views of the input: test-time
    augmentation as AKD's inference ensemble (Zhang et al., ACM MM 2023,
    https://arxiv.org/abs/2305.02722, call Avatars "inference ensemble
    models derived from the teacher").

    The views are every scale of ``scales`` without and, with ``flip``,
    with a horizontal flip, in that order: ``K = len(scales) * (1 + flip)``
    (flip-TTA, ``TeacherViews()``, is ``K = 2``: the original and the
    flipped image). The original view (scale 1, not flipped) is always one
    of them, and is the teacher: its records are what the losses without
    Avatars see. Each recorded map of a view is mapped back onto the
    original frame: flipped back (exact on dense maps) and resized
    (bilinear) to the original view's size. A record without spatial layout
    (``(N, C)`` pooled vectors, say) cannot be mapped back from a flipped or
    scaled view, and fails naming its recorder.

    Note:
        A flip maps positions back, not what channels mean: a box
        regression's x offsets change sign under a flip, so flip views suit
        features and class maps, not regression outputs. The views of one
        size run in one teacher forward (``samples_per_forward`` caps it);
        a scaled input is resized bilinearly to ``scale * size`` rounded to
        a multiple of ``size_divisor``. ``jitter`` changes the brightness
        (a shift of the normalised input, in units of its std) and the
        contrast (a factor) of every view but the original, per image,
        from the seeded generator.

    Args:
        flip (bool): Add the horizontally flipped view of every scale.
            Defaults to True.
        scales (Sequence[float]): Input scales; must hold 1.0. Defaults to
            ``(1.0, )``.
        jitter (dict, optional): ``dict(brightness=b, contrast=c)``:
            shifts drawn in ``[-b, b]`` and factors in ``[1 - c, 1 + c]``.
            Defaults to None (none).
        size_divisor (int): Scaled inputs' height and width are multiples
            of it. Defaults to 32.
        samples_per_forward (int, optional): See
            :class:`~mmakd.models.avatars.BaseTeacherAvatars`.
    """

    def __init__(self,
                 flip: bool = True,
                 scales: Sequence[float] = (1.0, ),
                 jitter: Optional[Dict[str, float]] = None,
                 size_divisor: int = 32,
                 samples_per_forward: Optional[int] = None) -> None:
        if not isinstance(flip, bool):
            raise TypeError(f'flip must be True or False, got {flip!r}')
        scales = _check_scales(scales)
        if isinstance(
                size_divisor,
                bool) or not isinstance(size_divisor, int) or size_divisor < 1:
            raise ValueError(
                f'size_divisor must be an int >= 1, got {size_divisor!r}')
        views = [(s, f) for s in scales
                 for f in ((False, True) if flip else (False, ))]
        jitter = _check_jitter(jitter)
        if jitter and len(views) == 1:
            raise ValueError(
                'jitter changes the views besides the original, and there '
                'is none: add flip=True or more scales')
        super().__init__(len(views), samples_per_forward)
        self.flip, self.scales, self.jitter = flip, scales, jitter
        self.size_divisor = size_divisor
        #: ``(scale, flipped)`` of each Avatar.
        self.views: List[Tuple[float, bool]] = views

    @property
    def per_avatar(self) -> bool:
        return True  # K is the number of views

    @property
    def reference_index(self) -> int:
        return self.views.index((1.0, False))

    def view_size(self, scale: float, size: Tuple[int, int]) -> List[int]:
        """The input size of the view at ``scale`` of an input of ``size``."""
        if scale == 1.0:
            return list(size)
        d = self.size_divisor
        return [max(d, int(round(s * scale / d)) * d) for s in size]

    def groups(self, inputs: Tensor,
               generator: Optional[torch.Generator]) -> List[AvatarGroup]:
        size = tuple(inputs.shape[-2:])
        by_size: Dict[Tuple[int, ...], List[int]] = OrderedDict()
        for k, (scale, _) in enumerate(self.views):
            by_size.setdefault(tuple(self.view_size(scale, size)), [])
            by_size[tuple(self.view_size(scale, size))].append(k)
        groups = []
        for view_size, avatars in by_size.items():
            resized = inputs if view_size == size else F.interpolate(
                inputs, size=view_size, mode='bilinear', align_corners=False)
            for chunk in self.chunks(avatars, len(inputs)):
                groups.append(
                    AvatarGroup(
                        chunk,
                        torch.cat([
                            self._view(resized, k, generator) for k in chunk
                        ])))
        return groups

    def _view(self, x: Tensor, k: int,
              generator: Optional[torch.Generator]) -> Tensor:
        scale, flipped = self.views[k]
        if flipped:
            x = x.flip(-1)
        if self.jitter and k != self.reference_index:
            shape = (len(x), ) + (1, ) * (x.dim() - 1)
            draws = torch.rand(
                (2, ) + shape,
                generator=generator,
                device=x.device,
                dtype=x.dtype
                if x.is_floating_point() else torch.float32) * 2 - 1
            contrast = 1 + draws[0] * self.jitter['contrast']
            x = x * contrast + draws[1] * self.jitter['brightness']
        return x

    def map_back(self, record: Tensor, k: int, reference: Tensor,
                 where: str) -> Tensor:
        scale, flipped = self.views[k]
        if scale == 1.0 and not flipped:
            return record
        if record.dim() != 4 or reference.dim() != 4:
            raise ValueError(
                f'{where}: a record of shape {tuple(record.shape)} has no '
                'spatial layout (N, C, H, W), so the view '
                f'{self.describe(k)} cannot be mapped back onto the '
                'original frame; record a feature map, or use Avatars '
                "that need no mapping (type='TeacherDropout', or a "
                'perturbation of the records).')
        if flipped:
            record = record.flip(-1)
        if record.shape[-2:] != reference.shape[-2:]:
            record = F.interpolate(
                record,
                size=reference.shape[-2:],
                mode='bilinear',
                align_corners=False)
        return record

    def describe(self, k: int) -> str:
        scale, flipped = self.views[k]
        return f'{k} (scale {scale:g}{", flipped" if flipped else ""})'

    def extra_repr(self) -> str:
        return (f'num_avatars={self.num_avatars}, flip={self.flip}, '
                f'scales={self.scales}, jitter={self.jitter}')
