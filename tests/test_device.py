# Copyright (c) mmakd contributors. All rights reserved.
"""On ``--device``: the mmcv ops the detectors use, against pure-torch
formulas, and one AKD step under mixed precision (the GPU acceptance kit
runs ``pytest tests -m "device and not slow" --device cuda``)."""
from typing import List

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from torch import nn

from mmakd.models import FlexibleTeacherDistill

pytestmark = pytest.mark.usefixtures('fresh_message_hub')

#: IoUs this close to the threshold are left out of the random boxes: a
#: rounding difference must not decide the comparison.
IOU_MARGIN = 1e-4


def box_iou(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``(n, 4)`` ``x1, y1, x2, y2`` boxes."""
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    return inter / (area[:, None] + area[None, :] - inter)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor,
               iou_threshold: float) -> List[int]:
    """Indices kept by greedy NMS, by decreasing score: a box is dropped
    when its IoU with a kept, higher-scoring box exceeds the threshold."""
    iou = box_iou(boxes.double())
    keep: List[int] = []
    for i in scores.argsort(descending=True).tolist():
        if all(iou[i, j] <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def random_boxes(n: int, seed: int, size: float = 64.0):
    """``n`` seeded, much overlapping boxes inside ``size x size`` and
    their scores."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size * 0.5
    wh = torch.rand(n, 2, generator=g) * size * 0.25 + size * 0.2
    scores = torch.rand(n, generator=g)
    return torch.cat([xy, xy + wh], 1), scores


def clear_of(boxes: torch.Tensor, iou_threshold: float) -> bool:
    """Whether no pair of ``boxes`` has an IoU within IOU_MARGIN of the
    threshold."""
    iou = box_iou(boxes.double())
    return bool(((iou - iou_threshold).abs() > IOU_MARGIN).all())


@pytest.mark.parametrize('iou_threshold', [0.3, 0.6])
def test_mmcv_nms_is_greedy_nms(iou_threshold, device):
    from mmcv.ops import nms
    boxes, scores = random_boxes(80, seed=2)
    assert clear_of(boxes, iou_threshold)
    expected = greedy_nms(boxes, scores, iou_threshold)
    assert 0 < len(expected) < 0.75 * len(boxes)  # many suppressed
    dets, inds = nms(boxes.to(device), scores.to(device), iou_threshold)
    assert inds.device == device and dets.shape == (len(expected), 5)
    assert inds.tolist() == expected
    torch.testing.assert_close(
        dets.cpu(),
        torch.cat([boxes, scores[:, None]], 1)[expected])


def test_mmcv_batched_nms_is_greedy_nms_per_class(device):
    """Boxes of different classes never suppress each other; the kept
    boxes come by decreasing score."""
    from mmcv.ops import batched_nms
    boxes, scores = random_boxes(80, seed=1)
    labels = torch.randint(
        0, 3, (80, ), generator=torch.Generator().manual_seed(2))
    assert clear_of(boxes, 0.5)
    expected = []
    for c in range(3):
        index = (labels == c).nonzero().flatten()
        expected += index[greedy_nms(boxes[index], scores[index],
                                     0.5)].tolist()
    expected.sort(key=lambda i: -scores[i].item())
    # fewer than all, more than class-agnostic NMS keeps
    assert len(greedy_nms(boxes, scores, 0.5)) < len(expected) < len(boxes)
    dets, keep = batched_nms(
        boxes.to(device), scores.to(device), labels.to(device),
        dict(iou_threshold=0.5))
    assert keep.device == device
    assert keep.tolist() == expected
    torch.testing.assert_close(dets[:, 4].cpu(), scores[expected])


def py_sigmoid_focal_loss(logits: torch.Tensor, labels: torch.Tensor,
                          gamma: float, alpha: float) -> torch.Tensor:
    """Element-wise sigmoid focal loss (Lin et al., 2017) of ``(N, C)``
    logits and labels in ``[0, C]`` (``C``: background)."""
    target = F.one_hot(labels, logits.shape[1] + 1)[:, :-1].to(logits)
    p = logits.sigmoid()
    pt = (1 - p) * target + p * (1 - target)
    weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction='none')
    return bce * weight


def test_mmcv_sigmoid_focal_loss_is_the_formula(device):
    """mmcv's op (RetinaNet's loss) and its gradient against the formula
    in float64; mmcv builds it for CUDA only."""
    from mmcv.ops import sigmoid_focal_loss
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 6, generator=g) * 2
    labels = torch.randint(0, 7, (64, ), generator=g)  # 6: background
    x = logits.to(device).requires_grad_()
    try:
        loss = sigmoid_focal_loss(x, labels.to(device), 2.0, 0.25, None,
                                  'none')
    except (NotImplementedError, RuntimeError) as err:
        if device.type == 'cuda':
            raise
        pytest.skip(f'mmcv has no {device.type} sigmoid_focal_loss: {err}')
    reference_x = logits.double().requires_grad_()
    reference = py_sigmoid_focal_loss(reference_x, labels, 2.0, 0.25)
    assert loss.device == device and loss.shape == (64, 6)
    # float32 1 - p cancels for confident logits: about 5e-5 relative here
    torch.testing.assert_close(
        loss.double().cpu(), reference.detach(), rtol=2e-4, atol=1e-5)
    upstream = torch.rand(64, 6, generator=g)
    loss.backward(upstream.to(device))
    reference.backward(upstream.double())
    torch.testing.assert_close(
        x.grad.double().cpu(), reference_x.grad, rtol=2e-4, atol=1e-6)


class Toy(BaseModel):
    """Two 3x3 convolutions (``backbone``), the recorded feature."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1))

    def extract_feat(self, inputs):
        return self.backbone(inputs)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feat = self.extract_feat(inputs)
        if mode == 'loss':
            return dict(loss_task=feat.float().pow(2).mean() * 1e-2)
        return feat


def akd_toy(device: torch.device) -> FlexibleTeacherDistill:
    """AKD's CWD (K = 3 dropout Avatars) from a Toy teacher to a Toy
    student, in training mode on ``device``; the teacher's parameters
    left trainable, so that no gradient reaching them goes unseen."""
    model = FlexibleTeacherDistill(
        architecture=Toy(seed=1),
        teacher=Toy(seed=2),
        distiller=dict(
            type='AvatarDistiller',
            avatars=dict(num_avatars=3),
            student_recorders=dict(
                f=dict(type='ModuleOutputs', source='backbone')),
            teacher_recorders=dict(
                f=dict(type='ModuleOutputs', source='backbone')),
            distill_losses=dict(
                loss_cwd=dict(type='ChannelWiseDivergence', tau=1.0)),
            loss_forward_mappings=dict(
                loss_cwd=dict(
                    preds_S=dict(from_student=True, recorder='f'),
                    preds_T=dict(from_student=False, recorder='f')))),
        check_shapes=False).to(device)
    for p in model.teacher.parameters():
        p.requires_grad_(True)
    return model.train()


def test_akd_step_under_autocast(device, autocast_dtype):
    """One AKD step under autocast (float16 on CUDA, bfloat16 on the CPU):
    the model runs in half precision, the AKD loss in float32, finite and
    close to the float32 step with the same Avatars; its gradients reach
    every student parameter and no teacher parameter."""
    model = akd_toy(device)
    assert model.teacher_forward == 'feat'  # the truncated forward
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    model.distiller.avatar_seeds.state = (None, 0)
    with torch.no_grad():
        reference = model.loss(x)['distill.loss_cwd']
    model.distiller.avatar_seeds.state = (None, 0)  # the same Avatars
    with torch.autocast(device.type, dtype=autocast_dtype):
        losses = model.loss(x)
    assert model.distiller.get_record('f', True).dtype == autocast_dtype
    assert model.distiller.get_record('f', False).dtype == autocast_dtype
    distill = losses['distill.loss_cwd']
    assert distill.dtype == torch.float32 and distill.device == device
    assert torch.isfinite(distill) and distill > 0
    torch.testing.assert_close(distill, reference, rtol=5e-3, atol=0)
    total, _ = model.parse_losses(losses)
    total.backward()
    for name, p in model.student.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in model.teacher.parameters())
