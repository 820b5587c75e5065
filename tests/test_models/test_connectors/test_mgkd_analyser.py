# Copyright (c) mmakd contributors. All rights reserved.
"""MGKDAnalyser: tube architecture, outputs by hand, dense inputs, loading
the analyser stage's checkpoint, freezing, the per-call cache."""
import copy

import pytest
import torch
from torch import nn

from mmakd.models import MGKDAnalyser
from mmakd.registry import MODELS


def test_reference_architecture():
    """Encoder Linear(C, C)-ReLU-Linear(C, B), decoder Linear(B, C)-ReLU-
    Linear(C, K); bottlenecks 64 and 256 by default."""
    analyser = MGKDAnalyser(in_channels=32, num_classes=100)
    assert analyser.bottlenecks == (64, 256) and analyser.num_tubes == 2
    shapes = {k: tuple(v.shape) for k, v in analyser.state_dict().items()}
    for g, b in enumerate((64, 256)):
        assert shapes[f'tubes.{g}.encoder.0.weight'] == (32, 32)
        assert shapes[f'tubes.{g}.encoder.2.weight'] == (b, 32)
        assert shapes[f'tubes.{g}.decoder.0.weight'] == (32, b)
        assert shapes[f'tubes.{g}.decoder.2.weight'] == (100, 32)
    assert isinstance(analyser.tubes[0].encoder[1], nn.ReLU)
    out = analyser(torch.randn(4, 32))
    assert [tuple(o.shape) for o in out] == [(4, 64), (4, 256), (4, 100),
                                             (4, 100)]


def test_student_tubes_have_no_decoders():
    analyser = MGKDAnalyser(in_channels=16)
    assert all(t.decoder is None for t in analyser.tubes)
    out = analyser(torch.randn(3, 16))
    assert [tuple(o.shape) for o in out] == [(3, 64), (3, 256)]


def _set_by_hand(analyser):
    """One tube, C = 2, hidden 2, B = 1, K = 2:
    encoder: h = relu(x), code = h0 - h1;
    decoder: g = relu((code, -code)), logits = (g0, 2 * g1)."""
    enc0, enc2 = analyser.tubes[0].encoder[0], analyser.tubes[0].encoder[2]
    dec0, dec2 = analyser.tubes[0].decoder[0], analyser.tubes[0].decoder[2]
    with torch.no_grad():
        enc0.weight.copy_(torch.eye(2))
        enc0.bias.zero_()
        enc2.weight.copy_(torch.tensor([[1.0, -1.0]]))
        enc2.bias.zero_()
        dec0.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        dec0.bias.zero_()
        dec2.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        dec2.bias.zero_()


def test_outputs_by_hand_and_position_wise_on_dense_inputs():
    """x = (3, -1): h = (3, 0), code = 3, g = (3, 0), logits = (3, 0).
    x = (1, 4): h = (1, 4), code = -3, g = (0, 3), logits = (0, 6).
    A (1, 2, 1, 2) map holding both vectors as pixels gives the same
    values per pixel."""
    analyser = MGKDAnalyser(2, num_classes=2, bottlenecks=(1, ))
    _set_by_hand(analyser)
    code, logits = analyser(torch.tensor([[3.0, -1.0], [1.0, 4.0]]))
    torch.testing.assert_close(code, torch.tensor([[3.0], [-3.0]]))
    torch.testing.assert_close(logits, torch.tensor([[3.0, 0.0], [0.0, 6.0]]))
    dense = torch.tensor([[[[3.0, 1.0]], [[-1.0, 4.0]]]])  # (1, 2, 1, 2)
    code, logits = analyser((dense, ))  # a ModuleInputs record: 1-tuple
    torch.testing.assert_close(code, torch.tensor([[[[3.0, -3.0]]]]))
    torch.testing.assert_close(logits,
                               torch.tensor([[[[3.0, 0.0]], [[0.0, 6.0]]]]))


def _stage1_checkpoint(path, **kwargs):
    """What the analyser stage saves: the trainer's state dict, with the
    teacher under `architecture.` and the tubes under `analyser.`."""
    torch.manual_seed(3)
    source = MGKDAnalyser(**kwargs)
    state = {f'analyser.{k}': v for k, v in source.state_dict().items()}
    state['architecture.head.fc.weight'] = torch.zeros(3, 3)
    torch.save(dict(meta=dict(epoch=1), state_dict=state), path)
    return source


def test_loads_the_analyser_stage_checkpoint_frozen(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    source = _stage1_checkpoint(path, in_channels=8, num_classes=5)
    teacher_tubes = MODELS.build(
        dict(
            type='MGKDAnalyser', in_channels=8, num_classes=5,
            checkpoint=path))
    for key, value in source.state_dict().items():
        assert torch.equal(teacher_tubes.state_dict()[key], value), key
    assert teacher_tubes.frozen and not teacher_tubes.training
    assert not any(p.requires_grad for p in teacher_tubes.parameters())
    teacher_tubes.train()
    assert not teacher_tubes.training  # stays in eval mode
    teacher_tubes.init_weights()  # the runner's call overwrites nothing
    for key, value in source.state_dict().items():
        assert torch.equal(teacher_tubes.state_dict()[key], value), key
    x = torch.randn(2, 8, requires_grad=True)
    sum(o.sum() for o in teacher_tubes(x)).backward()
    assert all(p.grad is None for p in teacher_tubes.parameters())
    unfrozen = MGKDAnalyser(8, 5, checkpoint=path, frozen=False)
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_checkpoint_errors_name_the_key(tmp_path):
    with pytest.raises(FileNotFoundError, match='checkpoint'):
        MGKDAnalyser(8, 5, checkpoint=str(tmp_path / 'missing.pth'))
    path = str(tmp_path / 'stage1.pth')
    _stage1_checkpoint(path, in_channels=8, num_classes=5)
    with pytest.raises(KeyError, match='checkpoint_prefix'):
        MGKDAnalyser(8, 5, checkpoint=path, checkpoint_prefix='tubes.')
    with pytest.raises(ValueError, match='in_channels=16'):
        MGKDAnalyser(16, 5, checkpoint=path)
    with pytest.raises(ValueError, match='missing'):
        MGKDAnalyser(8, 5, bottlenecks=(64, 256, 32), checkpoint=path)


@pytest.mark.parametrize('kwargs', [
    dict(in_channels=0),
    dict(in_channels=8, num_classes=0),
    dict(in_channels=8, bottlenecks=()),
    dict(in_channels=8, bottlenecks=64),
    dict(in_channels=8, hidden_channels=-1)
])
def test_bad_settings(kwargs):
    with pytest.raises(ValueError, match='MGKDAnalyser'):
        MGKDAnalyser(**kwargs)


def test_wrong_input_channels_or_type():
    analyser = MGKDAnalyser(8, 5)
    with pytest.raises(ValueError, match='set in_channels to 4'):
        analyser(torch.randn(2, 4))
    with pytest.raises(TypeError, match='ModuleInputs'):
        analyser([torch.randn(2, 8), torch.randn(2, 8)])


def test_trainable_tubes_pass_gradient_to_the_feature():
    analyser = MGKDAnalyser(8)
    x = torch.randn(3, 8, requires_grad=True)
    sum(o.sum() for o in analyser(x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in analyser.parameters())


def test_cache_reuses_outputs_for_the_same_tensor_only():
    analyser = MGKDAnalyser(8, 5)
    x = torch.randn(2, 8)
    out = analyser(x)
    assert analyser(x) is out and analyser((x, )) is out
    assert analyser(x.clone()) is not out
    y = torch.randn(2, 8)
    first = analyser(y)
    y.mul_(2)  # in-place change: recomputed
    second = analyser(y)
    assert second is not first
    torch.testing.assert_close(second[0], analyser.tubes[0](y)[0])
    with torch.no_grad():
        no_grad = analyser(y)
    assert no_grad is not second  # grad mode is part of the key
    clone = copy.deepcopy(analyser)  # EMA-style deep copies drop the cache
    assert clone._cache is None and analyser._cache is not None
