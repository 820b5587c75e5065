# Copyright (c) mmakd contributors. All rights reserved.
"""Every module mmakd registers: builds from a dict, runs forward and
backward on (2, C, 8, 8), and no gradient reaches a teacher tensor.

A registered class without an entry in EXAMPLES fails here, so a new
module cannot be added untested."""
import pytest
import torch

import mmakd  # noqa: F401
from mmakd.registry import MODELS

C = 8
EXAMPLES = {
    'AvatarDropout': dict(kind='perturbation', cfg=dict(p=0.2)),
    'AvatarChannelDropout': dict(kind='perturbation', cfg=dict(p=0.2)),
    'AvatarGaussianNoise': dict(kind='perturbation', cfg=dict(std=0.2)),
    # A list of perturbations; K is the sum of their Avatars.
    'AvatarPerturbationMix': dict(kind='perturbation mix'),
    # Run the teacher itself (tests/test_models/test_distillers/
    # test_avatar_distiller_teacher_sources.py); a recorded tensor is
    # refused.
    'TeacherViews': dict(kind='teacher source', cfg=dict(), k=2),
    'TeacherDropout': dict(kind='teacher source', cfg=dict(p=0.2), k=4),
    'AvatarConnector': dict(kind='connector', cfg=dict()),
    'MasKDLoss': dict(kind='loss', cfg=dict(channels=C)),
    'AvatarDistiller': dict(kind='distiller'),
    'FlexibleTeacherDistill': dict(kind='algorithm'),
    'MGKDGranularityLoss': dict(kind='loss', cfg=dict(tau=2.0)),
    # Three teacher inputs (logits and two tube decoders).
    'MGKDStableExcitationLoss': dict(kind='loss with tube inputs'),
    # Returns a tuple of codes (and decoder logits).
    'MGKDAnalyser': dict(kind='tuple connector'),
    'MGKDAnalyserTrainer': dict(kind='algorithm'),
    'MasKDMaskLearner': dict(kind='algorithm'),
    'MultiTeacherDistill': dict(kind='algorithm'),
    'CifarResNet': dict(kind='backbone'),
    'CifarWideResNet': dict(kind='backbone'),
}


def mmakd_registered():
    names = []
    for name, cls in MODELS.module_dict.items():
        if cls.__module__.startswith('mmakd.'):
            names.append(name)
    return sorted(names)


def test_every_registered_module_has_an_example():
    missing = set(mmakd_registered()) - set(EXAMPLES)
    assert not missing, f'add test examples for {sorted(missing)}'


@pytest.mark.parametrize('name', mmakd_registered())
def test_registered_module(name):
    example = EXAMPLES[name]
    kind = example['kind']
    torch.manual_seed(0)
    student = torch.randn(2, C, 8, 8, requires_grad=True)
    teacher = torch.randn(2, C, 8, 8, requires_grad=True)
    if kind == 'perturbation':
        module = MODELS.build(dict(type=name, num_avatars=3, **example['cfg']))
        out = module(teacher.detach())
        assert out.shape == (3, 2, C, 8, 8)
        (out * student).sum().backward()
        assert student.grad is not None and teacher.grad is None
    elif kind == 'perturbation mix':
        module = MODELS.build(
            dict(
                type=name,
                perturbations=[
                    dict(type='AvatarDropout', p=0.2, num_avatars=2),
                    dict(type='AvatarGaussianNoise', std=0.2)
                ]))
        out = module(teacher.detach())
        assert out.shape == (3, 2, C, 8, 8)
        (out * student).sum().backward()
        assert student.grad is not None and teacher.grad is None
    elif kind == 'teacher source':
        module = MODELS.build(dict(type=name, **example['cfg']))
        assert module.runs_teacher and module.num_avatars == example['k']
        with pytest.raises(TypeError, match='running the teacher'):
            module(teacher.detach())
    elif kind == 'connector':
        module = MODELS.build(dict(type=name, **example['cfg']))
        out = module(teacher)
        assert out.shape == teacher.shape
        (out * student).sum().backward()
        assert student.grad is not None and teacher.grad is None
    elif kind == 'loss':
        module = MODELS.build(dict(type=name, **example['cfg']))
        loss = module(student, teacher.detach())
        loss.backward()
        assert torch.isfinite(loss) and student.grad.abs().sum() > 0
    else:
        pytest.skip(f'{name} ({kind}) is covered by its own test module')


def test_custom_imports_and_mmrazor_scope_find_mmakd(tmp_path):
    """A fresh interpreter: a config's custom_imports loads mmakd (and its
    compatibility layer) and `_scope_='mmrazor'` resolves its modules."""
    from helpers import run_python
    config = tmp_path / 'uses_mmakd.py'
    config.write_text(
        "custom_imports = dict(imports=['mmakd'], "
        "allow_failed_imports=False)\n"
        "connector = dict(_scope_='mmrazor', type='AvatarConnector')\n"
        "perturbation = dict(type='mmrazor.AvatarDropout', p=0.3)\n")
    code = ('from mmengine.config import Config\n'
            'from mmengine.registry import MODELS\n'
            f'cfg = Config.fromfile({str(config)!r})\n'
            'import sys; assert "mmakd" in sys.modules\n'
            'print(type(MODELS.build(cfg.connector)).__name__)\n'
            'print(MODELS.build(cfg.perturbation))\n')
    result = run_python(['-c', code])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == [
        'AvatarConnector', 'AvatarDropout(p=0.3,', 'num_avatars=1)'
    ]
