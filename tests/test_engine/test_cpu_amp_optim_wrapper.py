# Copyright (c) mmakd contributors. All rights reserved.
"""CPUAmpOptimWrapper: bfloat16 autocast on CPU, and every AKD loss stays
finite and float32 under it (statistics and softmaxes in float32); on
``--device cuda`` the same under MMEngine's float16 AmpOptimWrapper."""
import contextlib
from typing import Dict, Optional

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper, build_optim_wrapper
from torch import nn

from mmakd.engine.optimizers import CPUAmpOptimWrapper
from mmakd.registry import MODELS, OPTIM_WRAPPERS

pytestmark = pytest.mark.usefixtures('fresh_message_hub')

C = 8


def _sgd(model: nn.Module, **wrapper) -> OptimWrapper:
    cfg = dict(
        type='mmrazor.CPUAmpOptimWrapper',
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9),
        **wrapper)
    return build_optim_wrapper(model, cfg)


# ---------------------------------------------------------------------------
# the wrapper
# ---------------------------------------------------------------------------
def test_registered_in_mmrazor_scope():
    assert OPTIM_WRAPPERS.get('CPUAmpOptimWrapper') is CPUAmpOptimWrapper
    assert issubclass(CPUAmpOptimWrapper, OptimWrapper)


@pytest.mark.parametrize('dtype', ['bfloat16', torch.bfloat16, None])
def test_optim_context_is_bf16_cpu_autocast(dtype):
    model = nn.Linear(4, 4)
    wrapper = _sgd(model) if dtype is None else _sgd(model, dtype=dtype)
    assert isinstance(wrapper, CPUAmpOptimWrapper)
    assert not torch.is_autocast_enabled('cpu')
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
        assert torch.get_autocast_dtype('cpu') == torch.bfloat16
        assert model(torch.randn(2, 4)).dtype == torch.bfloat16
    assert not torch.is_autocast_enabled('cpu')


def test_optim_context_keeps_no_sync_while_accumulating():
    """OptimWrapper's own context (super's) still runs: with gradient
    accumulation, a model with ``no_sync`` is entered without sync."""
    entered = []

    class WithNoSync(nn.Linear):

        def no_sync(self):
            entered.append(True)
            return contextlib.nullcontext()

    model = WithNoSync(4, 4)
    wrapper = _sgd(model, accumulative_counts=2)
    wrapper.initialize_count_status(model, 0, 4)
    with wrapper.optim_context(model):
        assert torch.is_autocast_enabled('cpu')
    assert entered == [True]


def test_update_params_without_scaler():
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    wrapper = _sgd(model)
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        loss = model(torch.randn(8, 4)).float().pow(2).mean()
    wrapper.update_params(loss)
    assert model.weight.dtype == torch.float32
    assert not torch.equal(model.weight, before)
    assert 'loss_scaler' not in wrapper.state_dict()


@pytest.mark.parametrize('dtype', ['float16', torch.float16])
def test_float16_on_cpu_is_refused_naming_the_key(dtype):
    with pytest.raises(ValueError, match=r"optim_wrapper.dtype='float16'") \
            as info:
        _sgd(nn.Linear(2, 2), dtype=dtype)
    assert 'GradScaler' in str(info.value)
    assert "'bfloat16'" in str(info.value)


def test_other_dtypes_are_refused():
    with pytest.raises(ValueError, match=r"optim_wrapper.dtype='float32'"):
        _sgd(nn.Linear(2, 2), dtype='float32')


# ---------------------------------------------------------------------------
# AKD losses under the wrapper: a tiny SingleTeacherDistill + AvatarDistiller
# ---------------------------------------------------------------------------
class TinyNet(BaseModel):
    """Conv-BN-ReLU stem and a 1x1 conv ``feat`` (the recorded tensor)."""

    def __init__(self, c: int = C) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.feat = nn.Conv2d(c, c, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.feat(torch.relu(self.bn(self.stem(inputs))))
        if mode == 'loss':
            return dict(loss_task=out.float().pow(2).mean() * 1e-3)
        return out


def _pair(loss_cfg,
          s_key='preds_S',
          t_key='preds_T',
          s_connector=None,
          t_connector=None):
    student = dict(from_student=True, recorder='feat')
    teacher = dict(from_student=False, recorder='feat')
    if s_connector:
        student['connector'] = s_connector
    if t_connector:
        teacher['connector'] = t_connector
    return dict(loss_a=loss_cfg), dict(loss_a={s_key: student, t_key: teacher})


_FBKD = dict(
    in_channels=C,
    reduction=4,
    mode='dot_product',
    sub_sample=True,
    maxpool_stride=2)

# (name, loss, keys, connectors, avatars): the losses of configs/akd and of
# the distiller's tests.
CASES = [
    ('cwd_student',
     dict(type='ChannelWiseDivergence', tau=1.0,
          loss_weight=5.0), ('preds_S', 'preds_T'), None,
     dict(normalize='student')),
    ('cwd_both_tau4', dict(type='ChannelWiseDivergence',
                           tau=4.0), ('preds_S', 'preds_T'), None, dict()),
    ('kl', dict(type='KLDivergence',
                tau=2.0), ('preds_S', 'preds_T'), None, dict()),
    ('l2', dict(type='L2Loss'), ('s_feature', 't_feature'), None, dict()),
    ('pkd', dict(type='PKDLoss',
                 loss_weight=6.0), ('preds_S', 'preds_T'), None, dict()),
    ('mgd', dict(type='MGDLoss', alpha_mgd=2e-5), ('preds_S', 'preds_T'),
     dict(
         s=dict(
             type='MGDConnector',
             student_channels=C,
             teacher_channels=C,
             lambda_mgd=0.65)), dict()),
    ('maskd', dict(type='MasKDLoss', channels=C,
                   num_tokens=4), ('preds_S', 'preds_T'), None, dict()),
    ('fbkd', dict(type='FBKDLoss'), ('s_input', 't_input'),
     dict(
         s=dict(type='FBKDStudentConnector', **_FBKD),
         t=dict(type='FBKDTeacherConnector', **_FBKD)), dict(normalize=False)),
]


def _algorithm(loss_cfg, keys, connectors: Optional[Dict], avatars: Dict):
    losses, mappings = _pair(
        loss_cfg,
        *keys,
        s_connector='s' if connectors and 's' in connectors else None,
        t_connector='t' if connectors and 't' in connectors else None)
    torch.manual_seed(0)
    return MODELS.build(
        dict(
            type='SingleTeacherDistill',
            architecture=TinyNet(),
            teacher=TinyNet(),
            distiller=dict(
                type='AvatarDistiller',
                # p=0.5 scales kept values by 2: bfloat16 Avatars are exact
                avatars=dict(
                    num_avatars=3,
                    perturbation=dict(type='AvatarDropout', p=0.5),
                    **avatars),
                student_recorders=dict(
                    feat=dict(type='ModuleOutputs', source='feat')),
                teacher_recorders=dict(
                    feat=dict(type='ModuleOutputs', source='feat')),
                distill_losses=losses,
                loss_forward_mappings=mappings,
                connectors=connectors)))


def _to_fp32(recorders) -> None:
    for recorder in recorders.recorders.values():
        recorder.data_buffer[:] = [
            x.float() if isinstance(x, torch.Tensor) else type(x)(t.float()
                                                                  for t in x)
            for x in recorder.data_buffer
        ]


def _amp_wrapper(model: nn.Module, device: torch.device) -> OptimWrapper:
    """The mixed-precision wrapper of ``device``: CPUAmpOptimWrapper
    (bfloat16) on the CPU, MMEngine's AmpOptimWrapper (float16, static loss
    scale 1: the tiny model's gradients fit float16) on CUDA."""
    if device.type == 'cpu':
        return _sgd(model)
    return build_optim_wrapper(
        model,
        dict(
            type='AmpOptimWrapper',
            dtype='float16',
            loss_scale=1.0,
            optimizer=dict(type='SGD', lr=0.01, momentum=0.9)))


def _get_rng_state(device: torch.device) -> torch.Tensor:
    """The global RNG state of ``device`` (MGD's masks draw from it)."""
    if device.type == 'cuda':
        return torch.cuda.get_rng_state(device)
    return torch.get_rng_state()


def _set_rng_state(device: torch.device, state: torch.Tensor) -> None:
    if device.type == 'cuda':
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


class Spy:
    """Wraps ``compute_distill_losses``: after the call under autocast, it
    recomputes the losses in float32 without autocast from the same
    recorded features cast to float32, with the same Avatars (same
    generator state and global RNG state of ``device``, e.g. for MGD's
    masks)."""

    def __init__(self, distiller, device=torch.device('cpu')) -> None:
        self.distiller = distiller
        self.device = device
        self.compute = distiller.compute_distill_losses
        self.records = []
        distiller.compute_distill_losses = self

    def __call__(self):
        d, device = self.distiller, self.device
        rng_step, rng = d.avatar_seeds.state, _get_rng_state(device)
        autocast = torch.is_autocast_enabled(device.type)
        out = self.compute()
        dtypes = [d.get_record('feat', s).dtype for s in (True, False)]
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            _to_fp32(d.student_recorders)
            _to_fp32(d.teacher_recorders)
            d.avatar_seeds.state = rng_step
            after = _get_rng_state(device)
            _set_rng_state(device, rng)
            reference = self.compute()
            _set_rng_state(device, after)
        self.records.append(
            dict(
                out={
                    k: v.detach()
                    for k, v in out.items()
                },
                reference=reference,
                autocast=autocast,
                dtypes=dtypes))
        return out


@pytest.mark.parametrize(
    'name,loss_cfg,keys,connectors,avatars', CASES, ids=[c[0] for c in CASES])
def test_akd_losses_train_in_bf16(name, loss_cfg, keys, connectors, avatars,
                                  device, autocast_dtype):
    """Two training steps under the device's mixed-precision wrapper: the
    model runs in ``autocast_dtype``, each AKD loss and its weights in
    float32, equal to the float32 computation on the same features."""
    model = _algorithm(loss_cfg, keys, connectors, avatars).to(device)
    model.train()
    wrapper = _amp_wrapper(model, device)
    spy = Spy(model.distiller, device)
    student0 = {k: v.clone() for k, v in model.student.state_dict().items()}
    torch.manual_seed(1)
    for _ in range(2):
        inputs = (torch.randn(2, 3, 8, 8) * 10).to(device)
        data = dict(inputs=inputs, data_samples=None)
        log = model.train_step(data, wrapper)
        assert all(torch.isfinite(v) for v in log.values()), log
        assert 'distill.loss_a' in log

    assert len(spy.records) == 2
    for record in spy.records:
        # the model ran in bfloat16 ...
        assert record['autocast']
        assert record['dtypes'] == [autocast_dtype, autocast_dtype]
        # ... the AKD loss and its weights did not
        out, reference = record['out'], record['reference']
        assert set(out) == set(reference)
        for key, value in out.items():
            assert value.dtype == torch.float32, key
            assert value.device == device, key
            assert torch.isfinite(value), key
        # Without connectors, the float32 loss of the bfloat16 features is
        # exactly the autocast one (a loss run in bfloat16, e.g. MasKD's
        # einsum, would be off by ~1e-4). Connectors are model layers and
        # run in bfloat16 like the rest of the model.
        tol = dict(rtol=5e-3, atol=1e-6) if connectors else \
            dict(rtol=1e-6, atol=0.0)
        torch.testing.assert_close(out['loss_a'], reference['loss_a'], **tol)
        weights = [k for k in out if k.startswith('akd.')]
        assert len(weights) == 5  # w0..w2, wmax_over_wmin and u
        for key in weights:
            torch.testing.assert_close(
                out[key], reference[key], rtol=1e-6, atol=0.0)
    changed = [
        k for k, v in model.student.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, student0[k])
    ]
    assert 'feat.weight' in changed
    assert all(p.dtype == torch.float32 for p in model.parameters())
