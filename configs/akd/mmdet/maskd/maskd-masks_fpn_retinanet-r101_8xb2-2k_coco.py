# MasKD stage 1: learn the receptive tokens of the five FPN levels on a
# frozen RetinaNet R101 2x (38.9 box AP), the setting of the MasKD
# reference's mmdetection/configs/maskd/retinanet_r101_fpn_2x_coco.py, whose
# output is the published mask checkpoint the distillation configs load
# (maskd_retinanet_r101_fpn_2x_coco_20200131-5560aee8.ckpt). Root config of
# the mask-learning configs; see README.md, "Make your own masks".
#
# Per level, 6 tokens and a mask-weight predictor; the teacher's focal and
# L1 losses on the masked features plus the Dice diversity term (weight 1
# per level) train them. Adam, lr 0.01, weight decay 0.001, cosine to 1e-6
# over 2000 iterations, no warm-up; 8 GPUs x 2 images. Validation at the
# end evaluates the teacher on masked features.
_base_ = ['mmdet::retinanet/retinanet_r101_fpn_2x_coco.py']

custom_imports = dict(imports=['mmakd'], allow_failed_imports=False)

# mmdet retinanet/metafile.yml: retinanet_r101_fpn_2x_coco, box AP 38.9
teacher_ckpt = 'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r101_fpn_2x_coco/retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth'  # noqa: E501
num_levels = 5  # FPN outputs P3-P7
max_iters = 2000

model = dict(
    _delete_=True,
    _scope_='mmrazor',
    type='MasKDMaskLearner',
    teacher=dict(
        cfg_path='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py',
        pretrained=False),
    teacher_ckpt=teacher_ckpt,
    mask_source='neck',
    channels=[256] * num_levels,
    num_tokens=6,
    weight_mask=True,
    diversity_weight=1.0)

find_unused_parameters = True

train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=0.01, weight_decay=0.001))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters,
        eta_min=1e-6,
        by_epoch=False,
        begin=0,
        end=max_iters)
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)

# 8 GPUs x 2 images; `tools/train.py --auto-scale-lr` rescales the lr for
# another total batch size.
train_dataloader = dict(batch_size=2)
auto_scale_lr = dict(enable=False, base_batch_size=16)
