# Copyright (c) mmakd contributors. All rights reserved.
import os.path as osp

import pytest
import torch
from mmdet.models import RetinaNet

from mmakd.models.utils import build_model_from_spec
from helpers import REPO

LOCAL_CFG = osp.join(REPO, 'tests/data/configs/retinanet_r18_fpn_shapes.py')


def test_package_config():
    model = build_model_from_spec(
        dict(cfg_path='mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'),
        'model.teacher')
    assert isinstance(model, RetinaNet)
    assert model.backbone.depth == 18
    assert model.bbox_head.num_classes == 80
    # the package config's top-level data_preprocessor is used
    assert model.data_preprocessor.mean.flatten().tolist() == pytest.approx(
        [123.675, 116.28, 103.53])


def test_mmakd_package_config_builds_in_its_default_scope():
    """``mmakd::`` has no registries: the model builds in the scope the
    config declares (found by ``mim train mmakd S --teacher mmakd::T``)."""
    from mmseg.models import EncoderDecoder
    model = build_model_from_spec(
        dict(
            cfg_path='mmakd::akd/demo/pspnet_r18-w8_1xb8-600it_shapes-128.py'),
        'model.teacher')
    assert isinstance(model, EncoderDecoder)
    assert model.decode_head.num_classes == 7


def test_local_config_file():
    model = build_model_from_spec(dict(cfg_path=LOCAL_CFG), 'model.teacher')
    assert isinstance(model, RetinaNet)
    assert model.bbox_head.num_classes == 6


def test_cfg_options_override_the_referenced_config():
    model = build_model_from_spec(
        dict(
            cfg_path=LOCAL_CFG,
            cfg_options={
                'model.bbox_head.num_classes': 3,
                'model.neck.out_channels': 64,
                'model.bbox_head.in_channels': 64,
                'model.bbox_head.feat_channels': 64
            }), 'model.teacher')
    assert model.bbox_head.num_classes == 3
    assert model.neck.out_channels == 64


def test_inline_dict_with_scope_and_built_module():
    from mmengine.config import Config
    model_cfg = Config.fromfile(LOCAL_CFG).model
    model_cfg['_scope_'] = 'mmdet'
    model = build_model_from_spec(model_cfg.to_dict(), 'model.architecture')
    assert isinstance(model, RetinaNet)
    assert build_model_from_spec(model, 'model.architecture') is model


def test_inline_dict_without_scope_uses_the_default_scope():
    """Without ``_scope_`` an inline model builds in the runner's default
    scope (``default_scope='mmdet'`` in mmdet configs); in another scope the
    error says how to fix it."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    def unscoped(node):
        if isinstance(node, dict):
            return {k: unscoped(v) for k, v in node.items() if k != '_scope_'}
        if isinstance(node, (list, tuple)):
            return type(node)(unscoped(v) for v in node)
        return node

    # Config.fromfile scopes everything inherited from an mmdet:: base.
    model_cfg = unscoped(Config.fromfile(LOCAL_CFG).model.to_dict())
    with DefaultScope.overwrite_default_scope('mmdet'):
        assert isinstance(
            build_model_from_spec(model_cfg, 'model.teacher'), RetinaNet)
    with DefaultScope.overwrite_default_scope('mmrazor'):
        with pytest.raises(KeyError, match=r"model.teacher.*_scope_='mmdet'"):
            build_model_from_spec(model_cfg, 'model.teacher')


@pytest.mark.parametrize('spec,error,match', [
    (dict(cfg_path='no/such/config.py'), FileNotFoundError,
     r'model.teacher.cfg_path.*no/such/config.py'),
    (dict(cfg_path='mmdet::no_such/config.py'), FileNotFoundError,
     r'model.teacher.cfg_path.*mmdet::no_such/config.py'),
    (dict(cfg_path='mmnotapackage::x/y.py'), FileNotFoundError,
     r'not installed'),
    (dict(cfg_path=LOCAL_CFG, pretrained=True), ValueError,
     r'model.teacher.pretrained=True needs a "package::path"'),
    (dict(cfg_path=LOCAL_CFG,
          depth=50), ValueError, r'model.teacher has cfg_path.*depth'),
    (dict(pretrained=False), KeyError, r'model.teacher needs either'),
    ('retinanet.py', TypeError, r'model.teacher must be a model dict'),
])
def test_bad_specs_name_the_config_key(spec, error, match):
    with pytest.raises(error, match=match):
        build_model_from_spec(spec, 'model.teacher')


def test_pretrained_checkpoint_is_loaded_strictly(tmp_path):
    source = build_model_from_spec(dict(cfg_path=LOCAL_CFG), 'm')
    path = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=source.state_dict()), path)
    model = build_model_from_spec(
        dict(cfg_path=LOCAL_CFG, pretrained=path), 'model.teacher')
    for (name, a), b in zip(source.state_dict().items(),
                            model.state_dict().values()):
        assert torch.equal(a, b), name
    assert model._is_init  # the runner's init_weights() will not reset it

    other = build_model_from_spec(
        dict(
            cfg_path=LOCAL_CFG, cfg_options={'model.bbox_head.num_classes':
                                             3}), 'm')
    torch.save(dict(state_dict=other.state_dict()), path)
    with pytest.raises(RuntimeError, match='size mismatch'):
        build_model_from_spec(
            dict(cfg_path=LOCAL_CFG, pretrained=path), 'model.teacher')
