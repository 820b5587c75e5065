# Copyright (c) mmakd contributors. All rights reserved.
"""The published recipes one-command distillation starts from.

Each default is the setting of a config shipped with MMRazor 1.0.0 (the
file is named in :attr:`Recipe.source`), and the Avatar block is mmakd's
recommended one (``configs/akd/demo``, chosen on selection seeds; see
``docs/evidence.md``).
"""
import copy
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from .probe import PairingError

__all__ = [
    'Recipe', 'RECIPES', 'DEFAULT_DISTILL', 'recipe_for', 'avatar_block',
    'loss_config'
]

#: What is paired for each kind of model.
WHERE = {'det': 'fpn', 'seg': 'logits', 'cls': 'logits'}
#: The loss used when ``--distill`` is not given.
DEFAULT_DISTILL = {'det': 'cwd', 'seg': 'cwd', 'cls': 'kd'}


@dataclass(frozen=True)
class Recipe:
    """A published distillation setting.

    Attributes:
        loss (dict): The loss config of one pair (one FPN level, or the
            logits).
        source (str): The MMRazor config it comes from.
        connector (dict, optional): A connector on the student side of
            every pair, completed with the channels (MGD's generator).
        max_levels (int, optional): Only the first ``max_levels`` neck
            levels are paired (PKD's configs use four).
        two_stage_weight (float, optional): ``loss_weight`` for two-stage
            detectors, where the recipe's config differs.
    """
    loss: Dict[str, Any]
    source: str
    connector: Optional[Dict[str, Any]] = None
    max_levels: Optional[int] = None
    two_stage_weight: Optional[float] = None


_MMRAZOR = 'mmrazor::distill/'
RECIPES: Dict[Tuple[str, str], Recipe] = {
    ('det', 'cwd'):
    Recipe(
        loss=dict(type='ChannelWiseDivergence', tau=1, loss_weight=10),
        source=_MMRAZOR +
        'mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py'),
    ('det', 'pkd'):
    Recipe(
        loss=dict(type='PKDLoss', loss_weight=10),
        source=_MMRAZOR + 'mmdet/pkd/pkd_fpn_retina_x101_retina_r50_2x_coco.py'
        ' (two-stage: pkd_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py)',
        max_levels=4,
        two_stage_weight=6),
    ('det', 'mgd'):
    Recipe(
        loss=dict(type='MGDLoss', alpha_mgd=0.00002),
        source=_MMRAZOR +
        'mmdet/mgd/mgd_fpn_retina_x101_retina_r50_2x_coco.py',
        connector=dict(type='MGDConnector', lambda_mgd=0.65)),
    ('seg', 'cwd'):
    Recipe(
        loss=dict(type='ChannelWiseDivergence', tau=1, loss_weight=5),
        source=_MMRAZOR + 'mmseg/cwd/cwd_logits_pspnet_r101-d8_pspnet_r18-d8_'
        '4xb2-80k_cityscapes-512x1024.py'),
    ('cls', 'kd'):
    Recipe(
        loss=dict(type='KLDivergence', tau=1, loss_weight=3),
        source=_MMRAZOR +
        'mmcls/kd/kd_logits_resnet34_resnet18_8xb32_in1k.py'),
}


def recipe_for(kind: str, distill: str) -> Recipe:
    """The recipe of ``distill`` for a kind of model (``'det'``, ``'seg'``,
    ``'cls'``).

    Raises:
        PairingError: No published recipe; the message names
            ``--distill`` and the losses the kind has.
    """
    recipe = RECIPES.get((kind, distill))
    if recipe is None:
        names = {'det': 'detectors', 'seg': 'segmentors', 'cls': 'classifiers'}
        have = sorted(d for k, d in RECIPES if k == kind)
        raise PairingError(
            f'--distill {distill}: no published recipe for {names[kind]} '
            f'(they have: {", ".join(have)}); pick one of those, or write '
            'a full MMRazor config (README, "Use it on your own models").')
    return recipe


def avatar_block(kind: str, num_avatars: int) -> Dict[str, Any]:
    """mmakd's recommended Avatars for ``num_avatars`` (K >= 1).

    Detection: K dropout Avatars with ``p = 0.1`` (the demo's
    ``akd_cwd_fpn_...`` config). Segmentation with K = 4: strengths
    0.05, 0.1, 0.2, 0.4 (``akd_cwd_logits_...``); other K: ``p = 0.1``
    each. Both on raw features (``normalize=False``), weighted by the
    uncertainty factor with ``tau = 4``.
    """
    if not isinstance(num_avatars, int) or num_avatars < 1:
        raise PairingError(f'--avatars must be a whole number >= 1, got '
                           f'{num_avatars!r}')
    p: Any = 0.1
    if kind == 'seg' and num_avatars == 4:
        p = (0.05, 0.1, 0.2, 0.4)
    return dict(
        num_avatars=num_avatars,
        perturbation=dict(type='AvatarDropout', p=p),
        normalize=False,
        uncertainty=dict(tau=4.0))


def loss_config(recipe: Recipe, two_stage: bool) -> Dict[str, Any]:
    """The loss config of one pair."""
    loss = copy.deepcopy(recipe.loss)
    if two_stage and recipe.two_stage_weight is not None:
        loss['loss_weight'] = recipe.two_stage_weight
    return loss
