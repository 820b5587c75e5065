# Copyright (c) mmakd contributors. All rights reserved.
"""Statistical tests of the Avatar perturbations under fixed seeds; those
that take ``device`` run on ``--device`` too (CUDA draws other numbers from
the same seed: they assert statistics, not values)."""
import pytest
import torch

from mmakd.models.avatars import (avatar_channel_dropout, avatar_dropout,
                                  avatar_gaussian_noise)


def gen(seed: int = 0, device=None) -> torch.Generator:
    return torch.Generator(device=device or 'cpu').manual_seed(seed)


@pytest.mark.parametrize('p', [0.1, 0.3, 0.5])
def test_dropout_drop_ratio_and_rescaling(p, device):
    x = (torch.rand(4, 16, 32, 32) + 0.5).to(device)  # strictly positive
    avatars = avatar_dropout(x, p, num_avatars=8, generator=gen(0, device))
    assert avatars.device == device
    assert avatars.shape == (8, 4, 16, 32, 32)
    dropped = (avatars == 0).float().mean().item()
    n = avatars.numel()
    assert abs(dropped - p) < 5 * (p * (1 - p) / n)**0.5
    kept = avatars != 0
    expected = (x / (1 - p)).expand_as(avatars)
    torch.testing.assert_close(avatars[kept], expected[kept])


@pytest.mark.parametrize('fn,strength', [(avatar_dropout, 0.3),
                                         (avatar_channel_dropout, 0.3),
                                         (avatar_gaussian_noise, 0.5)])
def test_expectation_is_preserved(fn, strength, device):
    x = torch.randn(2, 3, 4, 4).to(device)
    avatars = fn(x, strength, num_avatars=20000, generator=gen(1, device))
    mean = avatars.mean(0)
    # standard error of the mean of 20000 draws, 6 sigma
    spread = avatars.std(0) / 20000**0.5
    assert ((mean - x).abs() <= 6 * spread + 1e-6).all()


def test_channel_dropout_zeroes_whole_channels(device):
    x = (torch.rand(3, 32, 5, 5) + 0.1).to(device)
    avatars = avatar_channel_dropout(
        x, 0.4, num_avatars=6, generator=gen(0, device))
    zero = (avatars == 0).flatten(3)
    per_channel = zero.float().mean(-1)
    assert set(per_channel.unique().tolist()) <= {0.0, 1.0}
    ratio = per_channel.mean().item()
    assert abs(ratio - 0.4) < 5 * (0.4 * 0.6 / per_channel.numel())**0.5
    kept = ~zero.any(-1)
    torch.testing.assert_close(
        avatars.flatten(3)[kept],
        (x / 0.6).expand_as(avatars).flatten(3)[kept])


def test_channel_dropout_on_logits():
    logits = torch.rand(4, 10) + 0.1
    avatars = avatar_channel_dropout(logits, 0.5, 3, generator=gen())
    assert avatars.shape == (3, 4, 10)


def test_gaussian_noise_scaled_by_channel_std(device):
    x = torch.randn(8, 4, 16, 16) * torch.tensor([0.1, 1.0, 5.0, 20.0]).view(
        1, 4, 1, 1)
    x = x.to(device)
    avatars = avatar_gaussian_noise(
        x, 0.2, num_avatars=16, generator=gen(0, device))
    noise = avatars - x
    sigma = x.std(dim=(0, 2, 3), correction=0)
    rel = noise.std(dim=(0, 1, 3, 4)) / sigma
    torch.testing.assert_close(
        rel, torch.full((4, ), 0.2, device=device), atol=0.01, rtol=0)


@pytest.mark.parametrize(
    'fn', [avatar_dropout, avatar_channel_dropout, avatar_gaussian_noise])
def test_zero_strength_is_identity(fn):
    x = torch.randn(2, 3, 4, 4)
    avatars = fn(x, 0.0, 5, generator=gen())
    assert avatars.shape == (5, 2, 3, 4, 4)
    assert all(torch.equal(a, x) for a in avatars)


@pytest.mark.parametrize(
    'fn', [avatar_dropout, avatar_channel_dropout, avatar_gaussian_noise])
def test_same_seed_same_avatars(fn, device):
    x = torch.randn(2, 16, 8, 8).to(device)
    a = fn(x, 0.2, 4, generator=gen(7, device))
    b = fn(x, 0.2, 4, generator=gen(7, device))
    c = fn(x, 0.2, 4, generator=gen(8, device))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(3)
    d = fn(x, 0.2, 4)
    torch.manual_seed(3)
    assert torch.equal(d, fn(x, 0.2, 4))  # global generator when none given
    assert not torch.equal(d[0], d[1])  # Avatars differ from each other


@pytest.mark.parametrize('fn', [avatar_dropout, avatar_channel_dropout])
@pytest.mark.parametrize(
    'strength,num_avatars,k',
    [
        (0.1, 8, 8),
        ((0.05, 0.1, 0.2, 0.4), None,
         4),  # heterogeneous: K from the strengths
    ])
def test_k_avatars_from_one_random_draw(fn, strength, num_avatars, k,
                                        monkeypatch):
    calls = []
    original = torch.Tensor.bernoulli_

    def counting(self, *args, **kwargs):
        calls.append(self.shape)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, 'bernoulli_', counting)
    fn(torch.randn(2, 3, 8, 8), strength, num_avatars=num_avatars)
    assert len(calls) == 1 and calls[0][0] == k


def test_gaussian_k_avatars_from_one_draw(monkeypatch):
    calls = []
    original = torch.randn

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, 'randn', counting)
    avatar_gaussian_noise(torch.ones(2, 3, 8, 8), 0.1, num_avatars=8)
    assert calls == [(8, 2, 3, 8, 8)]


@pytest.mark.parametrize('kwargs,match', [
    (dict(p=1.0), r'p must be a number in \[0, 1\), got 1.0'),
    (dict(p=-0.1), r'p must be'),
    (dict(p=True), r'p must be'),
    (dict(num_avatars=0), r'num_avatars must be an integer >= 1, got 0'),
    (dict(num_avatars=2.0), r'num_avatars must be an integer'),
])
def test_invalid_arguments(kwargs, match):
    args = dict(p=0.1, num_avatars=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        avatar_dropout(torch.ones(2, 2), **args)


def test_invalid_std():
    with pytest.raises(ValueError, match='std must be a number >= 0'):
        avatar_gaussian_noise(torch.ones(2, 2), -0.5)


def test_gradient_flows_to_input_not_through_mask():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    avatars = avatar_dropout(x, 0.5, 3, generator=gen())
    avatars.sum().backward()
    # d/dx sum_k mask_k * x / (1-p) = sum_k mask_k / (1-p)
    expected = (avatars.detach() != 0).float().sum(0) / 0.5
    torch.testing.assert_close(x.grad, expected)


# ---------------------------------------------------------------------------
# heterogeneous Avatars: one strength per Avatar, still one random draw
# ---------------------------------------------------------------------------
P4 = (0.05, 0.1, 0.2, 0.4)


def test_dropout_per_avatar_drop_ratios():
    x = torch.rand(4, 16, 32, 32) + 0.5
    avatars = avatar_dropout(x, P4, generator=gen())
    assert avatars.shape == (4, 4, 16, 32, 32)  # K from len(p)
    n = avatars[0].numel()
    for k, p in enumerate(P4):
        dropped = (avatars[k] == 0).float().mean().item()
        assert abs(dropped - p) < 5 * (p * (1 - p) / n)**0.5
        kept = avatars[k] != 0
        torch.testing.assert_close(avatars[k][kept], (x / (1 - p))[kept])


def test_channel_dropout_per_avatar_drop_ratios():
    x = torch.rand(64, 32, 3, 3) + 0.1
    avatars = avatar_channel_dropout(x, P4, generator=gen())
    zero = (avatars == 0).flatten(3).all(-1).float()  # (K, N, C)
    for k, p in enumerate(P4):
        ratio = zero[k].mean().item()
        assert abs(ratio - p) < 5 * (p * (1 - p) / zero[k].numel())**0.5


def test_gaussian_noise_per_avatar_std():
    x = torch.randn(8, 4, 16, 16) * 3
    stds = (0.0, 0.1, 0.5)
    avatars = avatar_gaussian_noise(x, stds, generator=gen())
    sigma = x.std(dim=(0, 2, 3), correction=0)
    for k, std in enumerate(stds):
        rel = (avatars[k] - x).std(dim=(0, 2, 3), correction=0) / sigma
        torch.testing.assert_close(
            rel, torch.full((4, ), std), atol=0.02, rtol=0)


@pytest.mark.parametrize(
    'fn', [avatar_dropout, avatar_channel_dropout, avatar_gaussian_noise])
def test_per_avatar_strengths_are_seeded_and_match_scalar_draws(fn):
    """The same seed gives the same heterogeneous Avatars; for noise, a
    sequence of equal values draws exactly the scalar's Avatars (the same
    random tensor; ``bernoulli_`` samples a tensor of probabilities by
    another algorithm than a scalar one)."""
    x = torch.randn(2, 16, 8, 8)
    if fn is avatar_gaussian_noise:
        torch.testing.assert_close(
            fn(x, (0.2, 0.2, 0.2), generator=gen(3)),
            fn(x, 0.2, 3, generator=gen(3)))
    a = fn(x, (0.1, 0.3), generator=gen(5))
    assert torch.equal(a, fn(x, (0.1, 0.3), generator=gen(5)))
    assert fn(x, (0.0, 0.0), generator=gen()).shape == (2, 2, 16, 8, 8)


@pytest.mark.parametrize('kwargs,match', [
    (dict(p=(0.1, 1.0)), r'p\[1\] must be a number in \[0, 1\), got 1.0'),
    (dict(p=()), r'p must be a number or a non-empty sequence'),
    (dict(p=(0.1, 0.2), num_avatars=3),
     r'p gives 2 values \(one per Avatar\) but num_avatars=3'),
])
def test_invalid_per_avatar_strengths(kwargs, match):
    with pytest.raises(ValueError, match=match):
        avatar_dropout(torch.ones(2, 2), **kwargs)
