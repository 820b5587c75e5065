# Copyright (c) mmakd contributors. All rights reserved.
"""tools/misc/print_config.py as users run it."""
import pytest
from mmengine.config import Config

from helpers import run_python

AKD_RETINA = 'configs/akd/mmdet/cwd/akd_cwd_fpn_retinanet-r101_retinanet-r50_8xb2-2x_coco.py'  # noqa: E501


def _check(result):
    output = result.stdout[-2000:] + result.stderr[-4000:]
    assert result.returncode == 0, output
    return result.stdout


def test_print_config_resolves_bases_and_options(tmp_path):
    saved = tmp_path / 'resolved' / 'config.py'
    out = _check(
        run_python([
            'tools/misc/print_config.py', AKD_RETINA, '--cfg-options',
            'model.distiller.avatars.num_avatars=4', '--save',
            str(saved)
        ],
                   timeout=300))
    # Merged from the twin, the twin's root and mmdet's _base_ files.
    for text in ("type='AvatarDistiller'", 'num_avatars=4',
                 'retinanet_r101_fpn_2x_coco', 'loss_cwd_fpn4',
                 'mmrazor.SingleTeacherDistillValLoop', "type='CocoMetric'"):
        assert text in out, text
    cfg = Config.fromfile(str(saved))
    assert cfg.model.distiller.avatars.num_avatars == 4
    assert cfg.model.distiller.type == 'AvatarDistiller'
    assert cfg.optim_wrapper.optimizer.lr == 0.01


@pytest.mark.slow  # two runs; resolve_bases_and_options is the fast one
def test_print_config_package_path_and_missing_file():
    out = _check(
        run_python(
            [
                'tools/misc/print_config.py',
                'mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py'  # noqa: E501
            ],
            timeout=300))
    assert "type='FpnTeacherDistill'" in out
    result = run_python(['tools/misc/print_config.py', 'no/such/config.py'],
                        timeout=300)
    assert result.returncode != 0
    assert 'no/such/config.py' in result.stderr
