# Copyright (c) mmakd contributors. All rights reserved.
"""Every config under ``configs/``: it parses and its model builds with
random weights and without network; each AKD config has its non-AKD twin
and differs from it only in the distiller; each AKD config trains one step
on CPU at a tiny input size (the real config: only the input size and, for
segmentation, the preprocessor's pad size are changed)."""
import copy
import functools
import glob
import os.path as osp
import re

import pytest
import torch
import yaml
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmakd.registry import MODELS
from mmakd.testing import det_batch, random_weights_overrides, seg_batch
from mmakd.utils import load_config
from helpers import REPO, slow_unless

CONFIG_ROOT = osp.join(REPO, 'configs')
CONFIGS = sorted(
    glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'), recursive=True))
#: Runnable configs (``_base_`` folders hold fragments).
RUNNABLE = [p for p in CONFIGS if '_base_' not in p.split(osp.sep)]
AKD_CONFIGS = [p for p in RUNNABLE if osp.basename(p).startswith('akd_')]
#: The model zoo: COCO / Cityscapes configs with README and metafile.
ZOO_FOLDERS = ('akd/mmdet/', 'akd/mmseg/')
#: Zoo configs of a first stage on the teacher (no student): MasKD's mask
#: learning; tested in tests/test_models/test_algorithms/.
STAGE_ONE = ('MasKDMaskLearner', )

#: The model zoo's optimisation steps (ResNet-101/ResNeXt-101 teachers at
#: 128x128, dilated ResNet-101 teachers at 64x64) took 4-28 s each on this
#: project's 2 shared CPU cores, most over 10 s when the machine is busy:
#: `slow`, deselected by default and run by `make test-all`, except this
#: one (5-13 s), which keeps a real zoo pair in the default run.
FAST_ZOO_STEPS = ('akd/mmdet/cwd/'
                  'akd_cwd_fpn_retinanet-r101_retinanet-r50_8xb2-2x_coco.py', )


@functools.lru_cache(maxsize=None)
def _parse(path: str):
    return load_config(path)


def _load(path: str):
    """The parsed config (each file is parsed once per session); a copy, so
    that tests may change it."""
    return copy.deepcopy(_parse(path))


def _id(path: str) -> str:
    return osp.relpath(path, CONFIG_ROOT)


def _in_zoo(path: str) -> bool:
    return _id(path).startswith(ZOO_FOLDERS)


def _twin(path: str) -> str:
    return osp.join(osp.dirname(path), osp.basename(path)[len('akd_'):])


def test_no_network_fixture_refuses_downloads(no_network, tmp_path,
                                              monkeypatch):
    from mmengine.runner.checkpoint import _load_checkpoint
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    with pytest.raises(AssertionError, match='network access attempted'):
        _load_checkpoint('https://download.openmmlab.com/x.pth')


def _build(path: str):
    cfg = _load(path)
    cfg.merge_from_dict(random_weights_overrides(cfg))
    assert not cfg.model.get('teacher_ckpt')
    init_default_scope(cfg.get('default_scope', 'mmrazor'))
    return cfg, MODELS.build(cfg.model)


def test_configs_are_collected():
    folders = {osp.dirname(_id(p)) for p in AKD_CONFIGS}
    assert folders >= {
        'akd/mmdet/cwd', 'akd/mmdet/pkd', 'akd/mmdet/mgd', 'akd/mmdet/maskd',
        'akd/mmseg/cwd'
    }


@pytest.mark.parametrize('path', CONFIGS, ids=_id)
def test_config_parses(path):
    assert len(_load(path)) > 0


@pytest.mark.parametrize(
    'folder',
    sorted({osp.dirname(p)
            for p in RUNNABLE if _in_zoo(p)}),
    ids=_id)
def test_zoo_folder_has_docs(folder):
    assert osp.isfile(osp.join(folder, 'README.md'))
    assert osp.isfile(osp.join(folder, 'metafile.yml'))


@pytest.mark.parametrize(
    'folder',
    sorted({osp.dirname(p)
            for p in RUNNABLE if _in_zoo(p)}),
    ids=_id)
def test_zoo_metafile_matches_configs(folder):
    with open(osp.join(folder, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    collections = {c['Name'] for c in meta['Collections']}
    entries = {m['Name']: m for m in meta['Models']}
    configs = sorted(glob.glob(osp.join(folder, '*.py')), key=osp.basename)
    assert sorted(entries) == [osp.basename(p)[:-3] for p in configs]
    for path in configs:
        entry = entries[osp.basename(path)[:-3]]
        assert entry['Config'] == osp.relpath(path, REPO)
        assert entry['In Collection'] in collections
        is_akd = osp.basename(path).startswith('akd_')
        assert (entry['In Collection'] == 'AKD') == is_akd
        # Nothing here is measured by us yet: no results, no weights.
        assert 'Results' not in entry and 'Weights' not in entry
        assert 'Paper Results' not in entry['Metadata'] or is_akd
        cfg = _load(path).model
        teacher = entry['Metadata']['Teacher']
        assert teacher['Weights'] == cfg.teacher_ckpt
        assert teacher['Config'] == cfg.teacher.cfg_path
        if cfg.type in STAGE_ONE:  # a teacher, no student
            assert 'Student' not in entry['Metadata']
            continue
        assert entry['Metadata']['Student']['Config'] == \
            cfg.architecture.cfg_path


def _model_index() -> list:
    with open(osp.join(REPO, 'model-index.yml')) as f:
        return yaml.safe_load(f)['Import']


def test_model_index_lists_every_metafile():
    metafiles = sorted(
        osp.relpath(p, REPO) for p in glob.glob(
            osp.join(CONFIG_ROOT, '**', 'metafile.yml'), recursive=True))
    assert metafiles  # the zoo has some
    assert sorted(_model_index()) == metafiles
    assert len(set(_model_index())) == len(_model_index())


@pytest.mark.parametrize('metafile', _model_index())
def test_metafile_entries_name_existing_configs(metafile):
    with open(osp.join(REPO, metafile)) as f:
        meta = yaml.safe_load(f)
    assert meta['Models']
    for entry in meta['Models']:
        config = entry['Config']
        assert osp.isfile(osp.join(REPO, config)), (metafile, config)
        assert osp.basename(config) == entry['Name'] + '.py'
    for collection in meta['Collections']:
        assert osp.isfile(osp.join(REPO, collection['README']))


def test_mmengine_reads_the_model_index():
    """MMEngine parses ``mmakd/.mim/model-index.yml`` and every metafile
    it imports on each ``mmakd::`` path; a broken one breaks them all."""
    from mmengine.config.utils import _get_cfg_metainfo

    from mmakd.utils import installed_package_path
    with pytest.raises(ValueError, match='Expected configs') as info:
        _get_cfg_metainfo(installed_package_path('mmakd'), 'no/such')
    for metafile in _model_index():
        with open(osp.join(REPO, metafile)) as f:
            for entry in yaml.safe_load(f)['Models']:
                assert entry['Config'].partition('/')[-1] in str(info.value)


@pytest.mark.parametrize('path', [p for p in RUNNABLE if _in_zoo(p)], ids=_id)
def test_zoo_config_conventions(path):
    cfg = _load(path)
    assert cfg.custom_imports.imports == ['mmakd']
    assert cfg.custom_imports.allow_failed_imports is False
    assert cfg.find_unused_parameters is True
    stage_one = cfg.model.type in STAGE_ONE
    if not stage_one:
        assert cfg.val_cfg.type == 'mmrazor.SingleTeacherDistillValLoop'
        assert cfg.model.type == 'FlexibleTeacherDistill'
    assert cfg.model.teacher_ckpt.startswith('https://download.openmmlab.com/')
    for key in ('teacher', ) if stage_one else ('architecture', 'teacher'):
        assert cfg.model[key].cfg_path.split('::')[0] in ('mmdet', 'mmseg')
        assert cfg.model[key].pretrained is False
    # N GPUs x B images in the name: the per-GPU batch size and the total
    # batch size the learning rate is meant for.
    gpus, per_gpu = map(
        int,
        re.search(r'_(\d+)xb(\d+)-', osp.basename(path)).groups())
    assert cfg.train_dataloader.batch_size == per_gpu
    assert cfg.auto_scale_lr == dict(
        enable=False, base_batch_size=gpus * per_gpu)


#: Configs whose tests run in `make test`: the demo and synthetic ones, and
#: one AKD detector, segmentor and multi-granularity segmentor at COCO /
#: Cityscapes size; the other large models are `slow`.
FAST_CONFIGS = [
    '/demo/', 'mmpretrain/synthetic/',
    'akd_cwd_fpn_retinanet-r101_retinanet-r50',
    'akd_cwd_logits_pspnet-r101-d8', 'mgkd_akd_cwd_logits'
]


@pytest.mark.parametrize('path', slow_unless(RUNNABLE, FAST_CONFIGS), ids=_id)
def test_config_builds_offline(path, no_network):
    if 'model' not in _load(path):
        pytest.skip('no model in this config')
    cfg, model = _build(path)
    if 'distiller' not in cfg.model:
        return
    distiller = type(model.distiller).__name__
    if osp.basename(path).startswith('akd_'):
        assert distiller == 'AvatarDistiller'
    elif path in {_twin(p) for p in AKD_CONFIGS}:
        assert distiller == 'ConfigurableDistiller'
    assert len(model.distiller.distill_losses) > 0


@pytest.mark.parametrize('path', AKD_CONFIGS, ids=_id)
def test_akd_config_differs_from_twin_only_in_distiller(path):
    assert osp.isfile(_twin(path)), f'{_id(path)} has no non-AKD twin'
    akd = _load(path).to_dict()
    twin = _load(_twin(path)).to_dict()
    assert akd['model']['distiller'].pop('type') == 'AvatarDistiller'
    assert twin['model']['distiller'].pop('type') == 'ConfigurableDistiller'
    avatars = akd['model']['distiller'].pop('avatars')
    assert 'avatars' not in twin['model']['distiller']
    assert akd == twin
    selected = avatars.get('losses')
    if selected is not None:
        assert set(selected) <= set(
            twin['model']['distiller']['distill_losses'])


# ---------------------------------------------------------------------------
# The zoo's AKD settings, checked against the reference formulas (not by
# restating the config): the AKD distiller of the real config, fed known
# records and a known Avatar, must compute what the reference computed.
# ---------------------------------------------------------------------------
class _Neck(torch.nn.Module):
    """A model whose ``neck`` returns the given tuple of FPN levels."""

    def __init__(self, levels):
        super().__init__()
        self.levels = levels
        self.neck = torch.nn.Identity()

    def forward(self):
        return self.neck(tuple(level.clone() for level in self.levels))


def _bn(x):
    """The reference's normaliser: BatchNorm2d(C, affine=False), training
    mode."""
    return torch.nn.BatchNorm2d(x.shape[1], affine=False).train()(x)


def _akd_losses_on(path, s_levels, t_levels, keep_masks, seed=0):
    """The config's AvatarDistiller on given FPN levels, with the Avatars
    ``T * keep / 0.9`` (dropout p=0.1 with known masks); the global RNG is
    seeded with ``seed`` just before the losses."""
    cfg = _load(path).model.distiller
    cfg.pop('type')
    from mmakd.models import AvatarDistiller
    distiller = AvatarDistiller(**cfg)
    assert distiller.perturbation.p == 0.1  # the masks below are p = 0.1
    calls = iter(keep_masks)
    distiller.perturbation.perturb = \
        lambda x, k, g: (x * next(calls) / 0.9).unsqueeze(0)
    student, teacher = _Neck(s_levels), _Neck(t_levels)
    distiller.prepare_from_student(student)
    distiller.prepare_from_teacher(teacher)
    with distiller.teacher_recorders, distiller.student_recorders:
        teacher()
        student()
    torch.manual_seed(seed)
    return distiller, distiller.compute_distill_losses()


def _inputs(sizes, seed):
    """Student and teacher ReLU levels (2, 256, h, w) and dropout keep-masks
    (p = 0.1) for the teacher, from seeds ``seed``, ``seed + 1``, ``+ 2``."""
    levels = []
    for offset in (0, 1):
        g = torch.Generator().manual_seed(seed + offset)
        levels.append([
            torch.relu(torch.randn(2, 256, h, w, generator=g) + 0.3)
            for h, w in sizes
        ])
    g = torch.Generator().manual_seed(seed + 2)
    keeps = [torch.rand(t.shape, generator=g) > 0.1 for t in levels[1]]
    return levels[0], levels[1], keeps


def test_akd_cwd_zoo_config_is_the_reference_cwd_variant():
    """AKD_ChannelWiseDivergence of Gumpest/AvatarKD: BatchNorm on the
    student only, the raw dropped-out teacher as the target."""
    path = osp.join(
        CONFIG_ROOT, 'akd/mmdet/cwd/'
        'akd_cwd_fpn_retinanet-r101_retinanet-r50_8xb2-2x_coco.py')
    sizes = [(16, 20), (8, 10), (4, 5), (2, 3), (1, 2)]
    s_levels, t_levels, keeps = _inputs(sizes, seed=0)
    distiller, losses = _akd_losses_on(path, s_levels, t_levels, keeps)
    for i, (s, t, keep) in enumerate(zip(s_levels, t_levels, keeps)):
        loss = distiller.distill_losses[f'loss_cwd_fpn{i}']
        n, c, h, w = s.shape
        multi_t = (t * keep / 0.9).reshape(-1, h * w) / loss.tau
        p_t = multi_t.softmax(1)
        cost = torch.sum(p_t * multi_t.log_softmax(1) - p_t *
                         (_bn(s).reshape(-1, h * w) / loss.tau).log_softmax(1))
        expected = cost * loss.tau**2 / (c * n) * loss.loss_weight
        torch.testing.assert_close(
            losses[f'loss_cwd_fpn{i}'], expected, rtol=1e-5, atol=1e-6)


def test_akd_mgd_zoo_config_is_the_reference_mgd_variant():
    """AKD_MGDLoss of Gumpest/AvatarKD with the same masks:
    gen(mask(BN(S))) against BN(dropout(T)), summed squared error / N times
    alpha. The order the config shipped before, norm(gen(mask(S))), gives
    another value on the same inputs."""
    path = osp.join(
        CONFIG_ROOT, 'akd/mmdet/mgd/'
        'akd_mgd_fpn_cascade-mask-rcnn-x101_faster-rcnn-r50_8xb2-2x_coco.py')
    sizes = [(8, 8), (4, 4), (2, 2), (2, 2), (1, 1)]
    s_levels, t_levels, keeps = _inputs(sizes, seed=3)
    # MGDConnector draws its masks from the global RNG
    distiller, losses = _akd_losses_on(path, s_levels, t_levels, keeps, 6)
    torch.manual_seed(6)
    for i, (s, t, keep) in enumerate(zip(s_levels, t_levels, keeps)):
        connector = distiller.connectors[f's_fpn{i}_connector']
        alpha = distiller.distill_losses[f'loss_mgd_fpn{i}'].alpha_mgd
        n, c, h, w = s.shape
        mat = torch.rand((n, 1, h, w))  # the same draw as the connector's
        mat = (mat <= 1 - connector.lambda_mgd).float()
        with torch.no_grad():
            new = connector.generation(_bn(s) * mat)
            expected = ((new - _bn(t * keep / 0.9))**2).sum() / n * alpha
            target = _bn(t * keep / 0.9)
            old = (_bn(connector.generation(s * mat)) -
                   target).pow(2).sum() / n * alpha
        torch.testing.assert_close(
            losses[f'loss_mgd_fpn{i}'].detach(),
            expected,
            rtol=1e-4,
            atol=1e-7)
        if i == 0:  # 8x8: the two orders differ clearly
            assert not torch.allclose(old, expected, rtol=0.1), (old, expected)


def _step_cases():
    cases = []
    for path in AKD_CONFIGS:
        slow = _in_zoo(path) and _id(path) not in FAST_ZOO_STEPS
        cases.append(
            pytest.param(
                path, id=_id(path), marks=pytest.mark.slow if slow else ()))
    return cases


@pytest.mark.parametrize('path', _step_cases())
def test_akd_pair_one_train_step(path, no_network):
    torch.manual_seed(0)
    cfg, model = _build(path)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    if cfg.default_scope == 'mmseg':
        # SegDataPreProcessor pads every batch to the training crop.
        model.data_preprocessor.size = (64, 64)
        batch = seg_batch(
            2, 64, 64, num_classes=model.student.decode_head.num_classes)
    else:
        head = getattr(model.student, 'bbox_head', None)
        batch = det_batch(
            2, 128, 128, num_classes=getattr(head, 'num_classes', 80))
    teacher0 = [p.detach().clone() for p in model.teacher.parameters()]
    student0 = [(p.detach().clone(), p.requires_grad)
                for p in model.student.parameters()]

    model.train()
    log = model.train_step(batch, optim)

    for key, value in log.items():
        assert torch.isfinite(value).all(), key
    distiller = cfg.model.distiller
    selected = distiller.avatars.get('losses') or list(
        distiller.distill_losses)
    num_avatars = distiller.avatars.get('num_avatars', 1)
    for loss_name in selected:
        assert f'distill.{loss_name}' in log
        short = loss_name.replace('loss', '').strip('_.')
        weights = [
            log[f'distill.akd.{short}.w{k}'] for k in range(num_avatars)
        ]
        assert sum(weights).item() == pytest.approx(1.0)
    assert all(
        torch.equal(a, b)
        for a, b in zip(teacher0, model.teacher.parameters()))
    trainable = [(a, b)
                 for (a, grad), b in zip(student0, model.student.parameters())
                 if grad]
    moved = sum(not torch.equal(a, b) for a, b in trainable)
    assert moved > 0.5 * len(trainable)
