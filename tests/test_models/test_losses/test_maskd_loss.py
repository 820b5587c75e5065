# Copyright (c) mmakd contributors. All rights reserved.
import json
import os.path as osp

import pytest
import torch
from mmengine.logging import MessageHub

from mmakd.models.losses import MasKDLoss, mask_diversity

pytestmark = pytest.mark.usefixtures('fresh_message_hub')


def test_identical_features_give_zero_loss():
    loss = MasKDLoss(channels=8, num_tokens=4, freeze_masks=True)
    x = torch.randn(2, 8, 6, 6)
    assert loss(x, x).item() == 0.0


def test_value_by_hand_with_one_uniform_token():
    """One token equal to zero gives the mask sigmoid(0) = 0.5 everywhere:
    L = mean_c sum_hw (0.5 (S-T))^2 / sum_hw 0.5 = mean_c mean_hw (S-T)^2
    / 2, averaged over the batch."""
    loss = MasKDLoss(
        channels=3,
        num_tokens=1,
        weight_mask=False,
        custom_mask=False,
        freeze_masks=True)
    with torch.no_grad():
        loss.mask_token.zero_()
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    expected = ((s - t)**2).mean() / 2
    torch.testing.assert_close(loss(s, t), expected)


def test_custom_mask_after_warmup_uses_the_message_hub_iteration():
    torch.manual_seed(0)
    loss = MasKDLoss(
        channels=4, num_tokens=3, custom_mask_warmup=10, freeze_masks=True)
    s, t = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    hub = MessageHub.get_current_instance()
    hub.update_info('iter', 9)
    before = loss(s, t)
    assert loss(s, t) == before  # called twice in one iteration: same
    hub.update_info('iter', 10)
    after = loss(s, t)
    assert after != before


def test_pretrained_masks_load_by_prefix_and_freeze(tmp_path):
    torch.manual_seed(1)
    source = MasKDLoss(channels=8, num_tokens=6)
    state = {
        f'distiller.mask_modules.2.{k}': v
        for k, v in source.state_dict().items()
    }
    state['distiller.mask_modules.0.mask_token'] = torch.zeros(6, 8)
    path = str(tmp_path / 'masks.pth')
    torch.save(dict(state_dict=state), path)
    loss = MasKDLoss(
        channels=8,
        num_tokens=6,
        pretrained=path,
        pretrained_prefix='mask_modules.2.')
    torch.testing.assert_close(loss.mask_token, source.mask_token)
    assert loss.freeze_masks
    assert not any(p.requires_grad for p in loss.parameters())
    with pytest.raises(KeyError, match='pretrained_prefix'):
        MasKDLoss(
            channels=8, pretrained=path, pretrained_prefix='mask_modules.7.')


def test_trainable_tokens_get_gradients_and_diversity_term():
    torch.manual_seed(0)
    loss = MasKDLoss(channels=8, num_tokens=4, diversity_weight=1.0)
    s = torch.randn(2, 8, 6, 6, requires_grad=True)
    t = torch.randn(2, 8, 6, 6)
    value = loss(s, t)
    value.backward()
    assert loss.mask_token.grad.abs().sum() > 0
    assert s.grad.abs().sum() > 0
    frozen = MasKDLoss(channels=8, num_tokens=4, freeze_masks=True)
    frozen.load_state_dict(loss.state_dict())
    masks = loss.masks(t).flatten(2)
    torch.testing.assert_close(
        value - frozen(s, t),
        mask_diversity(masks).detach() + 0 * value.detach(),
        atol=1e-5,
        rtol=1e-5)


def test_mask_diversity_bounds():
    same = torch.rand(2, 1, 16).repeat(1, 3, 1)
    assert mask_diversity(same).item() == pytest.approx(1.0)
    disjoint = torch.eye(3).unsqueeze(0)
    assert mask_diversity(disjoint).item() == 0.0


def test_shape_errors_are_clear():
    loss = MasKDLoss(channels=8)
    with pytest.raises(ValueError, match=r'channels=8.*\(2, 4, 5, 5\)'):
        loss(torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5))
    with pytest.raises(ValueError, match='channels must be a positive int'):
        MasKDLoss(channels=0)


# Golden values from an independent NumPy implementation of the reference
# formulas (tests/data/golden/make_maskd_losses.py), computed here in float64.
GOLDEN_PATH = osp.join(
    osp.dirname(__file__), '..', '..', 'data', 'golden', 'maskd_losses.json')


def _golden():
    with open(GOLDEN_PATH) as f:
        return json.load(f)


def _golden_loss(cfg):
    golden = _golden()
    loss = MasKDLoss(**golden['shape'], **cfg).double()
    state = {
        k: torch.tensor(v, dtype=torch.float64)
        for k, v in golden['params'].items()
    }
    if not loss.weight_mask:
        state = {k: v for k, v in state.items() if not k.startswith('prob')}
    loss.load_state_dict(state, strict=True)
    s, t = (
        torch.tensor(golden['inputs'][k], dtype=torch.float64)
        for k in ('preds_S', 'preds_T'))
    return loss, s, t


@pytest.mark.parametrize('case', [
    'custom_mask_weighted', 'before_warmup_weighted', 'custom_mask_unweighted',
    'diversity', 'diversity_custom_mask'
])
def test_golden_values(case):
    """Student-refined masks after the warm-up (and not before it), with and
    without mask weights; the Dice term of trainable tokens, on the teacher
    masks, also with refined masks."""
    expected = _golden()['losses'][case]
    loss, s, t = _golden_loss(expected['cfg'])
    MessageHub.get_current_instance().update_info('iter',
                                                  expected['iteration'])
    value = loss(s, t)
    assert value.item() == pytest.approx(expected['value'], rel=1e-10)


def test_golden_dice():
    loss, _, t = _golden_loss(dict(freeze_masks=True))
    value = mask_diversity(loss.masks(t).flatten(2))
    assert value.item() == pytest.approx(_golden()['dice'], rel=1e-10)


def test_diversity_gradient_reaches_only_the_tokens_masks():
    """With student-refined masks the Dice term is taken on the teacher
    masks: the student masks carry no gradient into the tokens."""
    loss, s, t = _golden_loss(
        dict(
            custom_mask=True,
            custom_mask_warmup=0,
            freeze_masks=False,
            diversity_weight=1.0,
            weight_mask=False))
    s.requires_grad_(True)
    loss(s, t).backward()
    grad = loss.mask_token.grad.clone()
    loss.zero_grad()
    # By hand: the masked term with the product mask (student mask
    # detached) plus the Dice of the teacher masks.
    mask_t = loss.masks(t)
    mask = mask_t * loss.masks(s).detach()
    per = ((s - t).unsqueeze(1) * mask.unsqueeze(2)).pow(2).sum((3, 4))
    by_hand = (per / mask.sum((2, 3)).unsqueeze(-1)).mean() + \
        mask_diversity(mask_t.flatten(2))
    by_hand.backward()
    torch.testing.assert_close(grad, loss.mask_token.grad)


def test_missing_local_masks_point_to_the_mask_learner(tmp_path):
    with pytest.raises(FileNotFoundError, match='MasKDMaskLearner'):
        MasKDLoss(channels=8, pretrained=str(tmp_path / 'iter_2000.pth'))


def test_mismatched_masks_name_the_settings(tmp_path):
    source = MasKDLoss(channels=8, num_tokens=6)
    path = str(tmp_path / 'masks.pth')
    torch.save(
        dict(state_dict={
            f'mask_modules.0.{k}': v
            for k, v in source.state_dict().items()
        }), path)
    with pytest.raises(RuntimeError, match=r'(?s)num_tokens=4.*mask_token'):
        MasKDLoss(channels=8, num_tokens=4, pretrained=path)
    with pytest.raises(RuntimeError, match='weight_mask=False'):
        MasKDLoss(channels=8, weight_mask=False, pretrained=path)
