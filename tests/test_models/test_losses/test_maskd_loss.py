# Copyright (c) mmakd contributors. All rights reserved.
import uuid

import pytest
import torch
from mmengine.logging import MessageHub

from mmakd.models.losses import MasKDLoss, mask_diversity


@pytest.fixture(autouse=True)
def fresh_message_hub():
    MessageHub.get_instance(f'maskd-test-{uuid.uuid4()}')


def test_identical_features_give_zero_loss():
    loss = MasKDLoss(channels=8, num_tokens=4, freeze_masks=True)
    x = torch.randn(2, 8, 6, 6)
    assert loss(x, x).item() == 0.0


def test_value_by_hand_with_one_uniform_token():
    """One token equal to zero gives the mask sigmoid(0) = 0.5 everywhere:
    L = mean_c sum_hw (0.5 (S-T))^2 / sum_hw 0.5 = mean_c mean_hw (S-T)^2
    / 2, averaged over the batch."""
    loss = MasKDLoss(channels=3, num_tokens=1, weight_mask=False,
                     custom_mask=False, freeze_masks=True)
    with torch.no_grad():
        loss.mask_token.zero_()
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    expected = ((s - t)**2).mean() / 2
    torch.testing.assert_close(loss(s, t), expected)


def test_custom_mask_after_warmup_uses_the_message_hub_iteration():
    torch.manual_seed(0)
    loss = MasKDLoss(channels=4, num_tokens=3, custom_mask_warmup=10,
                     freeze_masks=True)
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
    state = {f'distiller.mask_modules.2.{k}': v
             for k, v in source.state_dict().items()}
    state['distiller.mask_modules.0.mask_token'] = torch.zeros(6, 8)
    path = str(tmp_path / 'masks.pth')
    torch.save(dict(state_dict=state), path)
    loss = MasKDLoss(channels=8, num_tokens=6, pretrained=path,
                     pretrained_prefix='mask_modules.2.')
    torch.testing.assert_close(loss.mask_token, source.mask_token)
    assert loss.freeze_masks
    assert not any(p.requires_grad for p in loss.parameters())
    with pytest.raises(KeyError, match='pretrained_prefix'):
        MasKDLoss(channels=8, pretrained=path,
                  pretrained_prefix='mask_modules.7.')


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
    torch.testing.assert_close(value - frozen(s, t),
                               mask_diversity(masks).detach()
                               + 0 * value.detach(), atol=1e-5, rtol=1e-5)


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
