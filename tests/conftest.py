# Copyright (c) mmakd contributors. All rights reserved.
import socket

import pytest
import torch

import mmakd  # noqa: F401  (compatibility layer and registration)
from helpers import REPO

#: The devices ``--device`` accepts.
DEVICES = ('cpu', 'cuda')


def pytest_addoption(parser):
    parser.addoption(
        '--device',
        choices=DEVICES,
        default='cpu',
        help='device of the tests that take the `device` fixture (marked '
        '`device`); default cpu. A GPU check: '
        'pytest tests -m "device and not slow" --device cuda')


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark every test that takes the ``device`` fixture ``device``, before
    ``-m`` selects (so that ``-m device`` finds them all)."""
    for item in items:
        if 'device' in getattr(item, 'fixturenames', ()):
            item.add_marker(pytest.mark.device)


@pytest.fixture
def device(request) -> torch.device:
    """The ``torch.device`` of ``--device`` (cpu by default). With
    ``--device cuda`` and no usable CUDA the test fails (never skips);
    on CUDA, TF32 is off during the test, so float32 results are held to
    the tolerances they have on the CPU."""
    name = request.config.getoption('--device')
    if name == 'cuda':
        if not torch.cuda.is_available():
            pytest.fail(
                '--device cuda: torch.cuda.is_available() is False (torch '
                f'{torch.__version__}, built for CUDA {torch.version.cuda}); '
                'this machine has no usable GPU or its driver does not '
                'match. Run on a GPU machine, or use --device cpu.',
                pytrace=False)
        matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
        saved = matmul.allow_tf32, cudnn.allow_tf32
        matmul.allow_tf32 = cudnn.allow_tf32 = False
        try:
            yield torch.device('cuda', torch.cuda.current_device())
        finally:
            matmul.allow_tf32, cudnn.allow_tf32 = saved
        return
    yield torch.device(name)


@pytest.fixture
def autocast_dtype(device) -> torch.dtype:
    """The mixed-precision dtype of ``device``: float16 on CUDA (as
    ``AmpOptimWrapper``), bfloat16 on the CPU (as ``CPUAmpOptimWrapper``)."""
    return torch.float16 if device.type == 'cuda' else torch.bfloat16


#: Backbone checkpoints the stock configs initialise from.
BACKBONE_CHECKPOINTS = ('torchvision://resnet50', 'torchvision://resnet101',
                        'open-mmlab://resnet18_v1c',
                        'open-mmlab://resnet101_v1c')


@pytest.fixture(autouse=True)
def restore_default_scope():
    """Keep MMEngine's global default scope from leaking between tests
    (``init_default_scope('mmseg')`` in one test would make unscoped builds
    of later tests look in MMSegmentation's registry)."""
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


@pytest.fixture
def fresh_message_hub() -> None:
    """A new current MessageHub, as without a runner: no ``seed`` or
    ``iter`` info left by an earlier test's runner (AKD's Avatars then
    draw from ``torch.initial_seed()`` and a call count). Modules that
    build AKD outside a runner use it for every test (``pytestmark``)."""
    import uuid

    from mmengine.logging import MessageHub
    MessageHub.get_instance(f'mmakd-test-{uuid.uuid4()}')


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory) -> str:
    """A small generated shapes dataset (synthetic), shared by the tests."""
    from mmakd.datasets import generate_shapes
    root = str(tmp_path_factory.mktemp('shapes'))
    generate_shapes(root, num_train=8, num_val=4, size=128, seed=0)
    return root + '/'


@pytest.fixture(scope='session')
def torch_home(tmp_path_factory) -> str:
    """A TORCH_HOME whose cache holds random-weight backbone checkpoints,
    so that configs with ``init_cfg=Pretrained`` run without network."""
    from mmakd.testing import seed_checkpoint_cache
    home = str(tmp_path_factory.mktemp('torch_home'))
    seed_checkpoint_cache(BACKBONE_CHECKPOINTS, home)
    return home


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a network connection (checkpoint
    downloads included)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f'network access attempted: {args}')

    monkeypatch.setattr(socket, 'getaddrinfo', refuse)
    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket.socket, 'connect_ex', refuse)
