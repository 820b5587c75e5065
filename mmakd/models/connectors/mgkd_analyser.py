# Copyright (c) mmakd contributors. All rights reserved.
"""Multi-granularity distillation: the self-analysing module (tubes)."""
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.runner import CheckpointLoader
from mmrazor.models.architectures.connectors.base_connector import \
    BaseConnector
from torch import Tensor, nn

from mmakd.registry import MODELS

__all__ = ['MGKDAnalyser']

KEY = 'MGKDAnalyser'
_WHERE = ('model.analyser in the analyser stage, '
          'model.distiller.connectors.<name> in the distillation stage')


def _positionwise(layer: nn.Module, x: Tensor) -> Tensor:
    """Apply a layer acting on the last dimension to dimension 1 of x."""
    if x.dim() == 2:
        return layer(x)
    return layer(x.movedim(1, -1)).movedim(-1, 1)


class MGKDTube(nn.Module):
    """One encoder/decoder tube of the self-analysing module.

    ``encoder``: Linear(C, H) - ReLU - Linear(H, B) gives the code;
    ``decoder``: Linear(B, H) - ReLU - Linear(H, K) gives class logits
    (absent when ``num_classes`` is None). ``C`` input channels, ``H``
    hidden units, ``B`` bottleneck, ``K`` classes. Acts on dimension 1 of
    ``(N, C)`` or ``(N, C, *spatial)`` inputs, i.e. position-wise (as 1x1
    convolutions for dense inputs).
    """

    def __init__(self, in_channels: int, hidden_channels: int, bottleneck: int,
                 num_classes: Optional[int]) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(in_channels, hidden_channels), nn.ReLU(inplace=True),
            nn.Linear(hidden_channels, bottleneck))
        self.decoder: Optional[nn.Sequential] = None
        if num_classes is not None:
            self.decoder = nn.Sequential(
                nn.Linear(bottleneck, hidden_channels), nn.ReLU(inplace=True),
                nn.Linear(hidden_channels, num_classes))

    def forward(self, x: Tensor) -> Tuple[Tensor, Optional[Tensor]]:
        code = _positionwise(self.encoder, x)
        logits = None if self.decoder is None else _positionwise(
            self.decoder, code)
        return code, logits


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{KEY}.{name} must be a positive int ({_WHERE}), '
                         f'got {value!r}')
    return value


@MODELS.register_module()
class MGKDAnalyser(BaseConnector):
    """The multi-granularity self-analysing module of "Multi-granularity
    for knowledge distillation" (Shao & Chen, Image and Vision Computing
    2021, https://arxiv.org/abs/2108.06681), as an MMRazor connector.

    Two encoder/decoder *tubes* read a pooled feature (the input of the
    classifier): a narrow one with a 64-d bottleneck and a wide one with a
    256-d bottleneck. Each encoder is Linear(C, C) - ReLU - Linear(C, B) and
    each decoder Linear(B, C) - ReLU - Linear(C, K) predicting the ``K``
    class logits, as in the reference code:
    https://github.com/shaoeric/multi-granularity-distillation/blob/b84f64e0fa021e0e6d58b385a5702f552e161add/wrapper.py

    Its output is the flat tuple ``(code_0, ..., code_{G-1}, logits_0, ...,
    logits_{G-1})`` for ``G`` tubes, i.e. with the default bottlenecks
    ``(narrow_code, wide_code, narrow_logits, wide_logits)``; MMRazor's
    ``connector_idx`` picks one per loss input. Without ``num_classes``
    (the student's tubes) there are no decoders and the output is the
    codes only.

    One class serves three places:

    1. the analyser stage trains it on the frozen teacher
       (``model.analyser`` of :class:`~mmakd.models.MGKDAnalyserTrainer`);
    2. in the distillation stage, a teacher-side connector with
       ``checkpoint`` set to the analyser stage's checkpoint gives the
       teacher's codes and decoder logits, frozen;
    3. a student-side connector without ``num_classes`` gives the student's
       codes, trained with the student.

    Note:
        Choices the paper leaves open:

        - The hidden width of both tubes is the input width (the
          reference's ``feat_dim``); ``hidden_channels`` changes it.
        - Dense inputs ``(N, C, H, W)`` (a segmentation decode head's
          feature) are analysed position-wise: every pixel's feature
          vector goes through the same tubes (1x1 convolutions). The codes
          and logits are then ``(N, B, H, W)`` and ``(N, K, H, W)``.
        - A record of one tensor in a tuple (what MMRazor's
          ``ModuleInputs`` recorder stores) is unwrapped.
        - The student's tubes have no decoders: in the reference code no
          loss reaches the student's decoders, so they would be dead
          weights (and unused parameters under DDP).
        - A teacher-side analyser is frozen (no gradient, eval mode) when
          it is loaded from a checkpoint, unless ``frozen=False``.
        - The output of the last call is reused when the connector is
          called again on the same tensor (the four mappings that read the
          teacher's tubes compute them once per iteration).

    Args:
        in_channels (int): Channels ``C`` of the input feature.
        num_classes (int, optional): Classes ``K`` the decoders predict;
            None builds encoders only. Defaults to None.
        bottlenecks (Sequence[int]): Bottleneck width of each tube, narrow
            first. Defaults to ``(64, 256)``.
        hidden_channels (int, optional): Hidden width of encoders and
            decoders. Defaults to None (``in_channels``).
        checkpoint (str, optional): Path or URL of the analyser stage's
            checkpoint to load the tubes from. Defaults to None.
        checkpoint_prefix (str): Key prefix of the tubes in it. Defaults to
            ``'analyser.'`` (what the analyser stage saves).
        frozen (bool, optional): Keep the tubes fixed (no gradient, eval
            mode). Defaults to None: frozen iff ``checkpoint`` is given.
        init_cfg (dict, optional): Initialisation config. Defaults to None
            (PyTorch's default for ``nn.Linear``, as the reference).
    """

    def __init__(self,
                 in_channels: int,
                 num_classes: Optional[int] = None,
                 bottlenecks: Sequence[int] = (64, 256),
                 hidden_channels: Optional[int] = None,
                 checkpoint: Optional[str] = None,
                 checkpoint_prefix: str = 'analyser.',
                 frozen: Optional[bool] = None,
                 init_cfg: Optional[Union[Dict, List[Dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = _positive_int(in_channels, 'in_channels')
        self.num_classes = None if num_classes is None else _positive_int(
            num_classes, 'num_classes')
        if isinstance(bottlenecks, int) or not bottlenecks:
            raise ValueError(f'{KEY}.bottlenecks must be a non-empty list of '
                             f'ints ({_WHERE}), got {bottlenecks!r}')
        self.bottlenecks = tuple(
            _positive_int(b, 'bottlenecks') for b in bottlenecks)
        self.hidden_channels = self.in_channels if hidden_channels is None \
            else _positive_int(hidden_channels, 'hidden_channels')
        self.tubes = nn.ModuleList([
            MGKDTube(self.in_channels, self.hidden_channels, b,
                     self.num_classes) for b in self.bottlenecks
        ])
        self.checkpoint = checkpoint
        if checkpoint:
            self.load_tubes(checkpoint, checkpoint_prefix)
        self.frozen = bool(checkpoint) if frozen is None else bool(frozen)
        if self.frozen:
            self.requires_grad_(False)
            self.eval()
        self._cache: Optional[Tuple[Tensor, int, bool, Tuple[Tensor,
                                                             ...]]] = None

    @property
    def num_tubes(self) -> int:
        """The number of tubes ``G``."""
        return len(self.tubes)

    def load_tubes(self, checkpoint: str, prefix: str = 'analyser.') -> None:
        """Load the tubes from an analyser-stage checkpoint.

        Args:
            checkpoint (str): Path or URL; a runner checkpoint (with
                ``state_dict``) or a bare state dict.
            prefix (str): Key prefix of the analyser. Defaults to
                ``'analyser.'``.
        """
        if '://' not in checkpoint and not osp.isfile(checkpoint):
            raise FileNotFoundError(
                f'{KEY}.checkpoint={checkpoint!r} does not exist (looked for '
                f'{osp.abspath(checkpoint)}). It is the checkpoint of the '
                'analyser stage (MGKDAnalyserTrainer), set by the config key '
                'model.distiller.connectors.<name>.checkpoint (t_tubes, from '
                "the variable analyser_ckpt, in mmakd's configs); run that "
                'stage first or point the key at its work_dir.')
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) \
            else ckpt
        mine = {
            key[len(prefix):]: value
            for key, value in state.items() if key.startswith(prefix)
        }
        if not mine:
            raise KeyError(
                f'{KEY}.checkpoint={checkpoint!r} has no keys starting with '
                f'{prefix!r} ({KEY}.checkpoint_prefix); is it a checkpoint '
                'of the analyser stage?')
        own = self.state_dict()
        problems = [
            f'{key}: {tuple(mine[key].shape)} in the checkpoint, '
            f'{tuple(own[key].shape)} here'
            for key in sorted(set(own) & set(mine))
            if mine[key].shape != own[key].shape
        ]
        missing = sorted(set(own) - set(mine))
        unexpected = sorted(set(mine) - set(own))
        if problems or missing or unexpected:
            raise ValueError(
                f'{KEY}.checkpoint={checkpoint!r} does not fit this analyser '
                f'(in_channels={self.in_channels}, num_classes='
                f'{self.num_classes}, bottlenecks={list(self.bottlenecks)}, '
                f'hidden_channels={self.hidden_channels}): shape mismatches '
                f'{problems}, missing {missing}, unexpected {unexpected}. '
                'Give the teacher-side connector the settings of the '
                'analyser stage.')
        self.load_state_dict(mine, strict=True)
        # Keep the runner's init_weights() from overwriting the tubes.
        self._is_init = True

    def train(self, mode: bool = True) -> 'MGKDAnalyser':
        """Set the mode; a frozen analyser stays in eval mode."""
        return super().train(mode and not self.frozen)

    def _check_input(self, feature: Any) -> Tensor:
        if isinstance(feature, (tuple, list)) and len(feature) == 1:
            feature = feature[0]
        if not isinstance(feature, Tensor) or feature.dim() < 2:
            got = tuple(feature.shape) if isinstance(feature, Tensor) \
                else type(feature).__name__
            raise TypeError(
                f'{KEY} takes a feature (N, C) or (N, C, *spatial); got '
                f'{got}. Record the input of the classifier (e.g. '
                "dict(type='ModuleInputs', source='head.fc')).")
        if feature.shape[1] != self.in_channels:
            raise ValueError(
                f'{KEY}(in_channels={self.in_channels}) got a feature of '
                f'shape {tuple(feature.shape)}: set in_channels to '
                f'{feature.shape[1]} ({_WHERE}).')
        return feature

    def forward_train(self, feature: Union[Tensor, Sequence[Tensor]]) -> \
            Tuple[Tensor, ...]:
        """Run all tubes.

        Args:
            feature (Tensor | tuple[Tensor]): ``(N, C)`` or
                ``(N, C, *spatial)``, or a 1-tuple of it.

        Returns:
            tuple[Tensor]: ``G`` codes ``(N, B_g, *spatial)``, then (with
            ``num_classes``) ``G`` logits ``(N, K, *spatial)``.
        """
        feature = self._check_input(feature)
        grad = torch.is_grad_enabled()
        cache = self._cache
        if cache is not None and cache[0] is feature \
                and cache[1] == feature._version and cache[2] == grad:
            return cache[3]
        codes, logits = [], []
        for tube in self.tubes:
            code, logit = tube(feature)
            codes.append(code)
            if logit is not None:
                logits.append(logit)
        out = tuple(codes + logits)
        self._cache = (feature, feature._version, grad, out)
        return out

    def __getstate__(self) -> Dict[str, Any]:
        # Deep copies (EMA hooks) and pickles leave the per-call cache out.
        state = self.__dict__.copy()
        state['_cache'] = None
        return state

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, num_classes='
                f'{self.num_classes}, bottlenecks={list(self.bottlenecks)}, '
                f'frozen={self.frozen}')
