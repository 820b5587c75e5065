# Copyright (c) mmakd contributors. All rights reserved.
"""Multi-granularity distillation, stage 1: train the teacher's tubes."""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from mmrazor.models.task_modules import RecorderManager
from torch import Tensor, nn

from mmakd.registry import MODELS
from ..connectors.mgkd_analyser import MGKDAnalyser
from ..utils.validation import check_recorder_sources
from .frozen_teacher_algorithm import FrozenTeacherAlgorithm

__all__ = ['MGKDAnalyserTrainer']

ModelSpec = Union[BaseModel, Dict[str, Any]]
#: Recorders for MMPretrain's ``LinearClsHead``: the classifier's input (the
#: pooled feature) and output (the logits).
CLS_RECORDERS = dict(
    feature=dict(type='ModuleInputs', source='head.fc'),
    logits=dict(type='ModuleOutputs', source='head.fc'))
#: Default tube losses: KL at temperature 2 (narrow) and 8 (wide).
TUBE_LOSSES = (
    dict(type='MGKDGranularityLoss', tau=2.0),
    dict(type='MGKDGranularityLoss', tau=8.0),
)


def _labels(data_samples: Optional[Sequence[BaseDataElement]]) -> Tensor:
    """Class labels ``(N,)`` or label maps ``(N, H, W)`` of a batch."""
    if not data_samples:
        raise ValueError('MGKDAnalyserTrainer needs data_samples with '
                         'labels (gt_label or gt_sem_seg) to train the '
                         'tubes with cross-entropy.')
    first = data_samples[0]
    if 'gt_label' in first:
        return torch.cat([s.gt_label.reshape(-1)[:1] for s in data_samples])
    if 'gt_sem_seg' in first:
        return torch.stack([s.gt_sem_seg.data[0] for s in data_samples])
    raise ValueError('MGKDAnalyserTrainer: the data samples carry neither '
                     'gt_label (classification) nor gt_sem_seg '
                     f'(segmentation); got fields {sorted(first.keys())}.')


@MODELS.register_module()
class MGKDAnalyserTrainer(FrozenTeacherAlgorithm):
    """Stage 1 of "Multi-granularity for knowledge distillation" (Shao &
    Chen, Image and Vision Computing 2021, https://arxiv.org/abs/2108.06681):
    train the multi-granularity self-analysing module on a frozen teacher.

    The trained teacher is frozen entirely (no gradient, eval mode: BN
    statistics fixed, dropout off). At each iteration it runs on the batch;
    recorders take the feature its classifier reads and its logits ``T``.
    An :class:`~mmakd.models.MGKDAnalyser` turns the feature into each
    tube's code and decoder logits ``D_g``, trained with::

        L_g = KL_tau_g(D_g, T) + ce_weight * CE(D_g, y)

    where ``KL_tau`` is :class:`~mmakd.models.MGKDGranularityLoss` (``tau``
    2 for the narrow tube, 8 for the wide one) and ``y`` the labels. Only
    the tubes learn. The runner's checkpoints hold ``analyser.*``, which
    the distillation stage loads into its teacher-side ``MGKDAnalyser``
    (``checkpoint=...``). Reference code:
    https://github.com/shaoeric/multi-granularity-distillation/blob/8994c737c5abf5c560e741f3999a98b3ee0b721b/train_teacher_wrapper.py

    Logged: ``loss_kl_<tube>``, ``loss_ce_<tube>`` and ``acc_<tube>``
    (training top-1 of the tube's decoder; for dense inputs pixel accuracy
    on labelled pixels), with ``<tube>`` ``narrow`` and ``wide`` for two
    tubes, else ``tube<g>``.

    Note:
        Choices the paper leaves open:

        - Both tubes are trained in one pass with one optimizer; the
          reference trains them in two passes over the data with two SGD
          optimizers of equal settings. The tubes share no parameters, so
          only the data order differs.
        - The runner keeps the last checkpoint; the reference kept the
          epoch with the best test accuracy of each tube (CIFAR-100 has no
          validation split), which selects on the test set.
        - Validation: with ``predict_tube`` set, the predictions of that
          tube's decoder replace the teacher's (classification only), so
          MMPretrain's ``Accuracy`` measures the tube; None keeps the
          teacher's predictions.
        - Dense logits: the cross-entropy upsamples the tube logits to the
          label map bilinearly (as MMSegmentation's decode heads do) and
          ignores ``ignore_index``; the KL is taken at the feature's
          resolution, where teacher and tube logits live.

    Args:
        teacher (dict | BaseModel): The trained teacher (config key
            ``model.teacher``): an inline model dict, a
            ``dict(cfg_path=...)`` package or local config, or a model.
        analyser (dict): The :class:`~mmakd.models.MGKDAnalyser`
            (``model.analyser``); it needs ``num_classes``.
        teacher_ckpt (str, optional): Teacher checkpoint path or URL
            (``model.teacher_ckpt``). Defaults to None.
        teacher_ckpt_strict (bool): Strict loading. Defaults to True.
        recorders (dict): MMRazor recorder configs named ``feature`` (the
            classifier's input) and ``logits`` (its output). Defaults to
            the inputs and outputs of ``head.fc`` (MMPretrain's
            ``LinearClsHead``); for MMSegmentation decode heads use
            ``decode_head.conv_seg``.
        tube_losses (Sequence[dict]): One loss per tube comparing its
            decoder logits to the teacher's. Defaults to
            ``MGKDGranularityLoss`` with ``tau`` 2 and 8.
        ce_weight (float): Weight of each tube's cross-entropy. Defaults to
            1.0 (the reference).
        ignore_index (int): Label ignored by the dense cross-entropy.
            Defaults to 255.
        align_corners (bool): For upsampling dense logits. Defaults to
            False.
        predict_tube (int, optional): Tube whose decoder predicts in
            validation. Defaults to 0 (the narrow tube).
        data_preprocessor (dict | nn.Module, optional): Defaults to None,
            the teacher's own.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
    """

    def __init__(self,
                 teacher: ModelSpec,
                 analyser: Dict[str, Any],
                 teacher_ckpt: Optional[str] = None,
                 teacher_ckpt_strict: bool = True,
                 recorders: Dict[str, Dict] = CLS_RECORDERS,
                 tube_losses: Sequence[Dict] = TUBE_LOSSES,
                 ce_weight: float = 1.0,
                 ignore_index: int = 255,
                 align_corners: bool = False,
                 predict_tube: Optional[int] = 0,
                 data_preprocessor: Optional[Union[Dict, nn.Module]] = None,
                 init_cfg: Optional[Dict] = None) -> None:
        super().__init__(
            teacher,
            teacher_ckpt,
            teacher_ckpt_strict,
            data_preprocessor,
            init_cfg,
            ckpt_hint='; train the teacher first')

        self.analyser = self._build_analyser(analyser)
        names = sorted(recorders) if isinstance(recorders, dict) else None
        if names != ['feature', 'logits']:
            raise KeyError(
                "model.recorders must name exactly two recorders, 'feature' "
                "(the classifier's input) and 'logits' (its output); got "
                f'{names if names is not None else recorders!r}.')
        check_recorder_sources(recorders, self.teacher, 'model.recorders')
        self.recorders = RecorderManager(dict(recorders))
        self.recorders.initialize(self.teacher)
        if len(tube_losses) != self.analyser.num_tubes:
            raise ValueError(
                f'model.tube_losses has {len(tube_losses)} losses for '
                f'{self.analyser.num_tubes} tubes (model.analyser.'
                'bottlenecks); give one per tube.')
        self.tube_losses = nn.ModuleList(
            [MODELS.build(cfg) for cfg in tube_losses])
        self.tube_names = ['narrow', 'wide'] \
            if self.analyser.num_tubes == 2 else [
                f'tube{g}' for g in range(self.analyser.num_tubes)]
        self.ce_weight = float(ce_weight)
        self.ignore_index = ignore_index
        self.align_corners = align_corners
        if predict_tube is not None and not (
                isinstance(predict_tube, int)
                and 0 <= predict_tube < self.analyser.num_tubes):
            raise ValueError(
                f'model.predict_tube must be None or a tube index in '
                f'[0, {self.analyser.num_tubes}), got {predict_tube!r}.')
        self.predict_tube = predict_tube

    @staticmethod
    def _build_analyser(cfg: Any) -> MGKDAnalyser:
        if isinstance(cfg, dict):
            cfg = dict(cfg)
            cfg.setdefault('type', 'MGKDAnalyser')
            analyser = MODELS.build(cfg)
        else:
            analyser = cfg
        if not isinstance(analyser, MGKDAnalyser):
            raise TypeError('model.analyser must build an MGKDAnalyser, got '
                            f'{type(analyser).__name__}.')
        if analyser.num_classes is None:
            raise ValueError(
                'model.analyser.num_classes must be set: the analyser stage '
                "trains the tubes' decoders to predict the teacher's classes.")
        if analyser.frozen:
            raise ValueError('model.analyser is frozen (frozen=True, or a '
                             'checkpoint without frozen=False); the analyser '
                             'stage trains it.')
        return analyser

    def _analyse(self, inputs: Tensor, data_samples: Optional[List[Any]],
                 mode: str) -> Tuple[Any, Tensor, Tuple[Tensor, ...]]:
        """Run the frozen teacher; return its output, logits and tubes."""
        with self.recorders, torch.no_grad():
            out = self.teacher(inputs, data_samples, mode=mode)
        feature = self.recorders.get_recorder('feature').get_record_data()
        logits = self.recorders.get_recorder('logits').get_record_data()
        if isinstance(logits, (tuple, list)) and len(logits) == 1:
            logits = logits[0]
        if isinstance(feature, (tuple, list)) and len(feature) == 1:
            feature = feature[0]
        outputs = self.analyser(feature.detach())
        return out, logits.detach(), outputs[self.analyser.num_tubes:]

    def _to_label_size(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Dense logits resized to the label map; others unchanged."""
        if logits.dim() > 2 and logits.shape[2:] != labels.shape[1:]:
            logits = F.interpolate(
                logits,
                size=labels.shape[1:],
                mode='bilinear',
                align_corners=self.align_corners)
        return logits

    def _ce(self, logits: Tensor, labels: Tensor) -> Tensor:
        logits = self._to_label_size(logits, labels)
        return F.cross_entropy(
            logits.float(), labels.long(), ignore_index=self.ignore_index)

    def _accuracy(self, logits: Tensor, labels: Tensor) -> Tensor:
        with torch.no_grad():
            logits = self._to_label_size(logits, labels)
            valid = labels != self.ignore_index
            correct = (logits.argmax(1) == labels) & valid
            return correct.sum().float() / valid.sum().clamp_min(1) * 100

    def loss(self,
             inputs: Tensor,
             data_samples: Optional[List[Any]] = None) -> Dict[str, Tensor]:
        """Train the tubes on the frozen teacher's feature and logits.

        Args:
            inputs (Tensor): Preprocessed images.
            data_samples (list): Samples with ``gt_label`` or ``gt_sem_seg``.

        Returns:
            dict[str, Tensor]: Per tube ``loss_kl_<tube>``,
            ``loss_ce_<tube>`` and ``acc_<tube>``.
        """
        labels = _labels(data_samples).to(inputs.device)
        _, logits, tube_logits = self._analyse(inputs, data_samples, 'tensor')
        losses: Dict[str, Tensor] = {}
        for name, loss_fn, tube in zip(self.tube_names, self.tube_losses,
                                       tube_logits):
            if tube.shape != logits.shape:
                raise ValueError(
                    f'the {name} tube predicts {tuple(tube.shape)} but the '
                    f'teacher logits are {tuple(logits.shape)}: set '
                    'model.analyser.num_classes to the teacher\'s classes.')
            losses[f'loss_kl_{name}'] = loss_fn(tube, logits)
            losses[f'loss_ce_{name}'] = self.ce_weight * self._ce(tube, labels)
            losses[f'acc_{name}'] = self._accuracy(tube, labels)
        return losses

    def _forward(
            self,
            inputs: Tensor,
            data_samples: Optional[List[Any]] = None) -> Tuple[Tensor, ...]:
        """The tubes' outputs: codes, then decoder logits."""
        with self.recorders, torch.no_grad():
            self.teacher(inputs, data_samples, mode='tensor')
        feature = self.recorders.get_recorder('feature').get_record_data()
        return self.analyser(feature)

    def _predict(self,
                 inputs: Tensor,
                 data_samples: Optional[List[Any]] = None) -> List[Any]:
        """The teacher's predictions, or those of tube ``predict_tube``."""
        preds, _, tube_logits = self._analyse(inputs, data_samples, 'predict')
        if self.predict_tube is None:
            return preds
        scores = tube_logits[self.predict_tube].float().softmax(dim=1)
        for sample, score in zip(preds, scores):
            if not hasattr(sample, 'set_pred_score') or score.dim() != 1:
                raise ValueError(
                    'model.predict_tube predicts with a tube only for '
                    'classification (MMPretrain data samples); set it to '
                    'None for this teacher.')
            sample.set_pred_score(score).set_pred_label(score.argmax())
        return preds
