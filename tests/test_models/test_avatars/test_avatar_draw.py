# Copyright (c) mmakd contributors. All rights reserved.
"""A perturbation's ``draw`` gives the Avatars of its ``forward``, bit for
bit, and their statistics as ``avatar_uncertainty`` takes them from the
stack; dropouts keep boolean masks."""
import pytest
import torch

from mmakd.models.avatars import (AvatarChannelDropout, AvatarDraw,
                                  AvatarDropout, AvatarGaussianNoise,
                                  AvatarPerturbationMix, avatar_uncertainty)

PERTURBATIONS = {
    'dropout':
    lambda: AvatarDropout(p=0.1, num_avatars=8),
    'dropout_per_avatar':
    lambda: AvatarDropout(p=(0.05, 0.1, 0.2, 0.4)),
    'channel':
    lambda: AvatarChannelDropout(p=0.3, num_avatars=4),
    'channel_per_avatar':
    lambda: AvatarChannelDropout(p=(0.1, 0.5)),
    'noise':
    lambda: AvatarGaussianNoise(std=(0.1, 0.2, 0.3)),
    'mix':
    lambda: AvatarPerturbationMix([
        dict(type='AvatarDropout', p=0.1, num_avatars=2),
        dict(type='AvatarGaussianNoise', std=0.2)
    ]),
    'identity':
    lambda: AvatarDropout(p=0.0, num_avatars=3),
}
SHAPES = [(8, 64, 16, 16), (2, 19, 9, 13), (4, 6)]


def _pair(name, shape, dtype=torch.float32, device='cpu'):
    module = PERTURBATIONS[name]()
    x = torch.randn(shape).relu().to(device, dtype)
    g = torch.Generator(device=device).manual_seed(7)
    stack = module(x, generator=g)
    after_forward = torch.rand(3, generator=g, device=device)
    g.manual_seed(7)
    drawn = module.draw(x, generator=g)
    after_draw = torch.rand(3, generator=g, device=device)
    assert torch.equal(after_forward, after_draw)  # same stream consumed
    return module, x, stack, drawn


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('name', sorted(PERTURBATIONS))
def test_draw_gives_the_avatars_of_forward_bit_for_bit(name, shape):
    if name.startswith('channel') and len(shape) < 2:
        pytest.skip('channel dropout needs (N, C, ...)')
    module, x, stack, drawn = _pair(name, shape)
    assert isinstance(drawn, AvatarDraw)
    assert len(drawn) == module.num_avatars == stack.shape[0]
    for k in range(len(drawn)):
        assert torch.equal(drawn[k], stack[k]), k
    # the Avatars' statistics: equal to those of the stack, bit for bit
    u_stack = avatar_uncertainty(x, stack)
    u_drawn = avatar_uncertainty(x, drawn)
    assert torch.equal(u_stack, u_drawn)


@pytest.mark.parametrize('name', ['dropout_per_avatar', 'channel', 'mix'])
def test_draw_gives_the_avatars_of_forward_on_the_device(name, device):
    """The same on ``--device``: the Avatars of ``forward`` bit for bit
    (the same element-wise arithmetic on the same random numbers), their
    statistics equal on the CPU and within float32 rounding on CUDA (which
    reduces the stack and the Avatars one at a time in another order)."""
    module, x, stack, drawn = _pair(name, SHAPES[1], device=device)
    assert stack.device == device and len(drawn) == module.num_avatars
    for k in range(len(drawn)):
        assert drawn[k].device == device
        assert torch.equal(drawn[k], stack[k]), k
    assert not torch.equal(stack[0], x)  # really perturbed
    u_stack = avatar_uncertainty(x, stack)
    u_drawn = avatar_uncertainty(x, drawn)
    assert u_stack.dtype == torch.float32 and (u_stack > 0).all()
    if device.type == 'cpu':
        assert torch.equal(u_stack, u_drawn)
    torch.testing.assert_close(u_drawn, u_stack, rtol=1e-4, atol=0)


@pytest.mark.parametrize('name', ['dropout', 'channel_per_avatar'])
def test_dropouts_keep_boolean_masks(name, device):
    module, x, stack, drawn = _pair(name, SHAPES[0], device=device)
    assert drawn.stack is None and drawn.masks.dtype == torch.bool
    # a quarter of a float32 stack at most (one mask per channel for
    # channel dropout)
    assert drawn.masks.numel() * drawn.masks.element_size() <= \
        stack.numel() * stack.element_size() // 4
    # kept fraction near 1 - p per Avatar
    kept = drawn.masks.float().flatten(1).mean(1)
    expected = 1 - torch.tensor(
        module.p if isinstance(module.p, tuple) else (module.p, ) * len(kept),
        device=device)
    assert torch.allclose(kept, expected, atol=0.05)


def test_draw_in_bfloat16_matches_forward(device):
    _, x, stack, drawn = _pair('dropout_per_avatar', SHAPES[1], torch.bfloat16,
                               device)
    assert stack.dtype == torch.bfloat16 and not torch.equal(stack[0], x)
    for k in range(len(drawn)):
        assert torch.equal(drawn[k], stack[k])


def test_per_avatar_strengths_fix_k_in_draw():
    module = AvatarDropout(p=(0.1, 0.2))
    with pytest.raises(ValueError, match='one strength per Avatar'):
        module.draw(torch.ones(2, 3), num_avatars=3)


def test_a_draw_needs_a_stack_or_masks():
    with pytest.raises(ValueError, match='stack or as masks'):
        AvatarDraw(torch.ones(2, 3))


def test_draw_follows_an_overridden_perturb():
    """Masks reproduce only the class's own perturb: an override (in a
    subclass or on the instance) is drawn through forward."""

    class Halved(AvatarDropout):

        def perturb(self, x, num_avatars, generator):
            return (x / 2).expand(num_avatars, *x.shape)

    x = torch.ones(2, 3, 4)
    drawn = Halved(p=0.1, num_avatars=2).draw(x)
    assert drawn.masks is None and torch.equal(drawn[1], x / 2)
    module = AvatarDropout(p=0.1, num_avatars=3)
    module.perturb = lambda x, k, g: (x * 3).expand(k, *x.shape)
    drawn = module.draw(x)
    assert drawn.masks is None and torch.equal(drawn[2], x * 3)
