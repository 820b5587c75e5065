# MMRazor's shipped CWD RetinaNet config with the models swapped for ones
# that are not packaged: the student comes from a local config file, the
# teacher from a package config with overrides.
_base_ = 'mmrazor::distill/mmdet/cwd/cwd_fpn_retina_r101_retina_r50_1x_coco.py'
model = dict(
    type='FlexibleTeacherDistill',
    architecture=dict(
        _delete_=True, cfg_path='{{fileDirname}}/retinanet_r18_fpn_shapes.py'),
    teacher=dict(
        _delete_=True,
        cfg_path='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
        cfg_options={
            'model.bbox_head.num_classes': 6,
            'model.backbone.init_cfg': None,
            'model.test_cfg.score_thr': 0.0,
            'model.test_cfg.max_per_img': 20
        }),
    teacher_ckpt=None)
