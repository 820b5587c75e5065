# CWD on the decode head's logits, DeepLabV3 R101-d8 (80.20 mIoU) ->
# DeepLabV3 R18-d8, Cityscapes 512x1024, 80k iterations, with the PSPNet
# pair's loss settings (tau 1, loss weight 5). Non-AKD twin of the
# akd_cwd_logits_deeplabv3-... config beside it.
# The DeepLabV3 R18-d8 stock config has the same data, schedule and runtime
# as the PSPNet one, so only the models change.
_base_ = [
    './cwd_logits_pspnet-r101-d8_pspnet-r18-d8_4xb2-80k_cityscapes-512x1024.py'  # noqa: E501
]

# mmseg deeplabv3/metafile.yaml:
# deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024, mIoU 80.2
teacher_ckpt = 'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r101-d8_512x1024_80k_cityscapes/deeplabv3_r101-d8_512x1024_80k_cityscapes_20200606_113503-9e428899.pth'  # noqa: E501

model = dict(
    architecture=dict(
        cfg_path=  # noqa: E251
        'mmseg::deeplabv3/deeplabv3_r18-d8_4xb2-80k_cityscapes-512x1024.py'),
    teacher=dict(
        cfg_path=  # noqa: E251
        'mmseg::deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py'),
    teacher_ckpt=teacher_ckpt)
