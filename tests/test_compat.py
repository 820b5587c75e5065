# Copyright (c) mmakd contributors. All rights reserved.
"""Tests of mmakd.compat: MMRazor and MMEngine on modern PyTorch.

The subprocess tests start a fresh interpreter, so they see exactly what a
user sees; they fail if ``mmakd/__init__.py`` stops applying the layer.
"""
import os
import os.path as osp
import pickle
import textwrap

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model import BaseModel
from mmengine.runner import load_checkpoint

from mmakd import compat
from helpers import run_python

REPORT = compat.apply()


def test_import_mmakd_then_mmrazor_distillation_stack():
    code = textwrap.dedent("""
        import mmakd
        import mmrazor.models, mmrazor.engine
        from mmrazor.models import (
            ConfigurableDistiller, SingleTeacherDistill, FpnTeacherDistill,
            ChannelWiseDivergence, PKDLoss, MGDLoss, MGDConnector, L2Loss,
            KLDivergence)
        from mmrazor.models.task_modules import (ModuleOutputsRecorder,
                                                 MethodOutputsRecorder)
        from mmrazor.registry import MODELS
        assert MODELS.get('ConfigurableDistiller') is ConfigurableDistiller
        assert MODELS.get('FlexibleTeacherDistill') is not None
        print('OK')
    """)
    result = run_python(['-c', code])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('OK')


def test_mmrazor_is_broken_without_compat():
    """Documents why the layer exists: without it, on this PyTorch,
    ``import mmrazor.models`` fails. If this ever passes on a new stack,
    the layer has nothing left to fix there (and the test says so)."""
    if not REPORT.changed:
        pytest.skip('nothing is broken on this PyTorch: compat is a no-op')
    result = run_python(['-c', 'import mmrazor.models'])
    if not REPORT.deferred_errors and not REPORT.fuser_helpers:
        pytest.skip('this PyTorch only needed the checkpoint allow-list')
    assert result.returncode != 0
    assert 'Error' in result.stderr


def test_mmengine_checkpoints_load_with_default_torch_load():
    import mmrazor.models  # noqa: F401  (triggers the guarded import)
    assert compat.apply() is REPORT  # idempotent
    probe = compat._mmengine_like_checkpoint()
    assert compat._default_load_refuses(probe) is None
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ


def test_quantization_fails_clearly_when_used():
    import mmrazor.models  # noqa: F401
    from mmrazor.structures.quantization import BackendConfigs
    if not REPORT.deferred_errors:
        pytest.skip('quantization backend configs build on this PyTorch')
    assert set(BackendConfigs) == {
        'academic', 'native', 'openvino', 'tensorrt'
    }
    with pytest.raises(
            compat.QuantizationUnavailableError,
            match=r"backend 'native' cannot be built on torch"):
        BackendConfigs['native']
    with pytest.raises(KeyError):
        BackendConfigs['no-such-backend']
    # Deferral is per backend: those that do build on this PyTorch still do.
    assert BackendConfigs['openvino'] is BackendConfigs['openvino']


def test_quantizer_build_raises_clear_error():
    """Using MMRazor quantization through its registry, as a config would."""
    import mmrazor.models  # noqa: F401
    from mmrazor.registry import MODELS
    if not REPORT.deferred_errors:
        pytest.skip('quantization backend configs build on this PyTorch')
    # The quantizer of MMRazor's shipped ptq_openvino_resnet18 config.
    qconfig = dict(
        w_observer=dict(type='mmrazor.PerChannelMinMaxObserver'),
        a_observer=dict(type='mmrazor.MovingAverageMinMaxObserver'),
        w_fake_quant=dict(type='mmrazor.FakeQuantize'),
        a_fake_quant=dict(type='mmrazor.FakeQuantize'),
        w_qscheme=dict(
            qdtype='qint8', bit=8, is_symmetry=True, is_symmetric_range=True),
        a_qscheme=dict(
            qdtype='quint8', bit=8, is_symmetry=True, averaging_constant=0.1))
    with pytest.raises(Exception) as info:
        MODELS.build(
            dict(
                type='mmrazor.TorchNativeQuantizer',
                global_qconfig=qconfig,
                tracer=dict(type='mmrazor.CustomTracer')))
    # mmengine re-raises with the class name; ours must be in the chain.
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert any('cannot be built on torch' in str(e) for e in chain)


# ---------------------------------------------------------------------------
# fuser helpers and detection
# ---------------------------------------------------------------------------
def test_backported_fuser_helpers_have_torch_113_semantics():
    calls = []

    def fuser(is_qat, *mods):
        calls.append((is_qat, mods))
        return mods

    assert compat._reverse2(fuser)(True, 'relu', 'conv') == ('conv', 'relu')
    assert compat._reverse3(fuser)(False, 'relu', ('bn', 'conv')) == \
        ('conv', 'bn', 'relu')
    assert compat._reverse_sequential_wrapper2(lambda a, b: (a, b))(
        True, 'relu', 'linear') == ('linear', 'relu')


def test_backport_only_adds_what_is_missing(monkeypatch):
    import types
    fake = types.ModuleType('fake_fuser')
    present = object()
    fake.reverse2 = present
    monkeypatch.setattr(compat, 'FUSER_MODULE', 'fake_fuser')
    monkeypatch.setitem(__import__('sys').modules, 'fake_fuser', fake)
    report = compat.CompatReport()
    compat._backport_fuser_helpers(report)
    assert fake.reverse2 is present
    assert report.fuser_helpers == ['reverse3', 'reverse_sequential_wrapper2']
    report = compat.CompatReport()
    compat._backport_fuser_helpers(report)  # nothing left to do
    assert report.fuser_helpers == []
    assert not report.changed


def test_checkpoint_allow_list_skipped_when_loads_already_work(monkeypatch):
    """Where torch.load does not refuse MMEngine checkpoints (torch < 2.6),
    the layer registers nothing."""
    original = torch.load

    def permissive_load(*args, **kwargs):
        kwargs.setdefault('weights_only', False)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', permissive_load)
    added = []
    monkeypatch.setattr(torch.serialization, 'add_safe_globals', added.append)
    report = compat.CompatReport()
    compat._allow_mmengine_checkpoints(report)
    assert added == [] and report.safe_globals == []


def test_guarded_loader_keeps_working_modules(tmp_path, monkeypatch):
    """The guard runs a module's own code; the fallback only on failure."""
    import sys
    pkg = tmp_path / 'guardpkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'good.py').write_text('VALUE = 1\n')
    (pkg / 'bad.py').write_text('X = 1\nraise AttributeError("boom")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    for name in ('guardpkg.good', 'guardpkg.bad'):
        finder = compat._GuardFinder(
            name, lambda m, e: seen.append((m.__name__, str(e))))
        sys.meta_path.insert(0, finder)
        module = __import__(name, fromlist=['x'])
        assert finder not in sys.meta_path  # one-shot
    assert module.X == 1  # the failing module keeps what ran before
    assert sys.modules['guardpkg.good'].VALUE == 1
    assert seen == [('guardpkg.bad', 'boom')]


# ---------------------------------------------------------------------------
# checkpoints under weights_only
# ---------------------------------------------------------------------------
class _Linear(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)


def test_model_zoo_style_checkpoint_with_numpy_meta_loads(tmp_path):
    path = str(tmp_path / 'zoo.pth')
    model = _Linear()
    torch.save(
        dict(
            meta=dict(
                mmdet_version='3.3.0',
                CLASSES=('person', 'car'),
                epoch=np.int64(24),
                best_score=np.float64(0.398),
                dataset_meta=dict(
                    classes=('person', 'car'),
                    palette=np.array([[220, 20, 60], [0, 0, 142]])),
                history=np.arange(4, dtype=np.float32)),
            state_dict=model.state_dict()), path)
    target = _Linear()
    ckpt = load_checkpoint(target, path, map_location='cpu', strict=True)
    assert torch.equal(target.fc.weight, model.fc.weight)
    assert ckpt['meta']['best_score'] == pytest.approx(0.398)
    assert ckpt['meta']['dataset_meta']['palette'].shape == (2, 3)


def test_message_hub_history_round_trips(tmp_path):
    hub = MessageHub.get_instance('mmakd-compat-test')
    for value in (1.0, 2.0, 3.0):
        hub.update_scalar('train/loss', value)
    hub.update_info('eta', np.float64(12.5))
    path = str(tmp_path / 'hub.pth')
    torch.save(dict(message_hub=hub.state_dict()), path)
    state = torch.load(path)  # default arguments, as MMEngine calls it
    buffer = state['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(2.0)
    assert buffer.current() == 3.0
    assert state['message_hub']['runtime_info']['eta'] == 12.5


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs) if isinstance(inputs, list) else inputs
        target = x.sum(dim=1, keepdim=True)
        return dict(loss=(self.fc(x) - target).pow(2).mean())


class _ToyData(torch.utils.data.Dataset):

    def __len__(self):
        return 16

    def __getitem__(self, index):
        gen = torch.Generator().manual_seed(index)
        return dict(inputs=torch.randn(4, generator=gen))


def _toy_runner(work_dir, max_iters, resume=False, load_from=None):
    from mmengine.runner import Runner
    return Runner(
        model=_ToyModel(),
        work_dir=str(work_dir),
        experiment_name=f'toy-{work_dir.name}-{max_iters}-{resume}',
        train_dataloader=dict(
            dataset=_ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=4,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        param_scheduler=dict(
            type='MultiStepLR', milestones=[3], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        resume=resume,
        load_from=load_from)


def test_runner_checkpoint_saved_loaded_and_resumed(tmp_path):
    """MMEngine's own runner checkpoints (NumPy in meta, HistoryBuffer in the
    message hub) load and resume with torch.load's weights_only default."""
    full = _toy_runner(tmp_path / 'full', max_iters=4)
    full.train()
    ckpt_path = str(tmp_path / 'full' / 'iter_2.pth')
    ckpt = torch.load(ckpt_path)  # default arguments, as MMEngine calls it
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    assert ckpt['meta']['iter'] == 2

    resumed = _toy_runner(
        tmp_path / 'resumed', max_iters=4, resume=True, load_from=ckpt_path)
    resumed.train()
    assert resumed.iter == 4
    loss_history = resumed.message_hub.get_scalar('train/loss')
    assert len(loss_history.data[0]) == 4  # 2 restored + 2 new
    for p_full, p_resumed in zip(full.model.parameters(),
                                 resumed.model.parameters()):
        torch.testing.assert_close(p_full, p_resumed)


class _Exploit:
    """Pickles to ``os.system(<touch a file>)``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_malicious_checkpoint_is_refused(tmp_path):
    marker = str(tmp_path / 'pwned')
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, meta=_Exploit(marker)), path)
    with pytest.raises(pickle.UnpicklingError, match='system'):
        load_checkpoint(_Linear(), path, map_location='cpu')
    assert not osp.exists(marker)


def _crafted_getattr_pickle(target_module: str, target_name: str,
                            attr: str) -> bytes:
    """Protocol-2 pickle of ``getattr(<module>.<name>, attr)``."""
    return (b'\x80\x02c__builtin__\ngetattr\n' +
            f'c{target_module}\n{target_name}\n'.encode() + b'X' +
            len(attr).to_bytes(4, 'little') + attr.encode() + b'\x86R.')


@pytest.mark.parametrize('module,name,attr', [
    ('mmengine.logging.history_buffer', 'HistoryBuffer', 'update'),
    ('mmengine.logging.history_buffer', 'HistoryBuffer', '__init__'),
    ('mmengine.logging.history_buffer', 'HistoryBuffer',
     'register_statistics'),
    ('numpy', 'ndarray', 'tofile'),
])
def test_getattr_is_restricted_to_history_buffer_statistics(
        tmp_path, module, name, attr):
    import io
    import zipfile

    # Build a real zip checkpoint whose data.pkl is the crafted pickle.
    path = str(tmp_path / 'crafted.pth')
    torch.save({}, path)
    with zipfile.ZipFile(path) as src:
        entries = {n: src.read(n) for n in src.namelist()}
    pkl = next(n for n in entries if n.endswith('data.pkl'))
    entries[pkl] = _crafted_getattr_pickle(module, name, attr)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as dst:
        for n, data in entries.items():
            dst.writestr(n, data)
    with open(path, 'wb') as f:
        f.write(buf.getvalue())
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


def test_history_buffer_getattr_allows_only_statistics():
    assert compat.history_buffer_getattr(HistoryBuffer, 'mean') is \
        HistoryBuffer.mean
    for bad_obj, bad_name in ((HistoryBuffer, 'update'),
                              (HistoryBuffer, '_set_default_statistics'),
                              (os, 'system'), (np, 'load')):
        with pytest.raises(pickle.UnpicklingError, match='refused getattr'):
            compat.history_buffer_getattr(bad_obj, bad_name)


def test_failed_allow_list_probe_warns_instead_of_raising(monkeypatch):
    """On a future torch where the allow-list does not make MMEngine
    checkpoints load, importing mmakd must not fail: it warns, names what
    failed, and the teacher-checkpoint loader repeats it."""
    refusal = pickle.UnpicklingError('Unsupported global: future.Thing')
    monkeypatch.setattr(compat, '_default_load_refuses', lambda data: refusal)
    monkeypatch.setattr(torch.serialization, 'add_safe_globals',
                        lambda entries: None)
    report = compat.CompatReport()
    with pytest.warns(RuntimeWarning) as record:
        compat._allow_mmengine_checkpoints(report)
    message = str(record[0].message)
    assert 'Unsupported global: future.Thing' in message
    assert f'torch {torch.__version__}' in message
    assert report.checkpoint_error == message
    assert report.safe_globals  # what it tried is still reported

    def broken():
        raise AttributeError("module 'numpy' has no attribute 'dtypes'")

    monkeypatch.setattr(compat, '_safe_globals', broken)
    report = compat.CompatReport()
    with pytest.warns(
            RuntimeWarning,
            match='the probe itself failed: '
            "AttributeError: module 'numpy'"):
        compat._allow_mmengine_checkpoints(report)


def test_checkpoint_error_is_named_when_a_teacher_fails_to_load(
        monkeypatch, tmp_path):
    from mmakd.models.utils.validation import load_teacher_checkpoint
    path = tmp_path / 'ckpt.pth'
    path.write_bytes(b'not a checkpoint')
    report = compat.CompatReport(checkpoint_error='probe said no')
    monkeypatch.setattr(compat, 'apply', lambda: report)
    with pytest.raises(RuntimeError, match='Note: probe said no'):
        load_teacher_checkpoint(torch.nn.Linear(1, 1), str(path))
