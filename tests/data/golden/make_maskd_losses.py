# Copyright (c) mmakd contributors. All rights reserved.
"""Write maskd_losses.json: golden values of MasKD's loss paths.

NumPy only, in float64, from the reference formulas and independent of
mmakd: the student-refined masks after the warm-up (``custom_mask``), the
Dice diversity term of trainable tokens, and the masked feature of MasKD's
mask-learning stage. Inputs and parameters (tokens, mask-weight predictor)
are closed-form, and stored in the file so that the test needs nothing
from here. Reference formulas:
https://github.com/hunto/MasKD/blob/01a5c8e38bc316acab1f828ed6f63d47a427bb8c/mmdetection/maskd.py
(``dice_coeff``, ``MaskModule.forward_train``) and
https://github.com/Gumpest/AvatarKD/blob/36b104f7c852ed26440105f22e40391fc5cdc0a3/mmrazor/models/losses/akd_maskd.py
(the masked distillation). Run from the repository root:

    python tests/data/golden/make_maskd_losses.py
"""
import json
import os.path as osp

import numpy as np

N, C, H, W, T = 2, 3, 4, 5, 4


def inputs():
    idx = np.arange(N * C * H * W, dtype=np.float64).reshape(N, C, H, W)
    s = np.sin(0.37 * idx) * 2 + 0.5
    t = np.cos(0.23 * idx) * 3 - 1
    return s, t


def params():
    k = np.arange(T, dtype=np.float64)[:, None]
    c = np.arange(C, dtype=np.float64)[None, :]
    w1 = np.sin(np.arange(C * C * 9, dtype=np.float64) * 0.61).reshape(
        C, C, 3, 3) * 0.4
    # Keys as in MasKDLoss.state_dict() (and the reference's MaskModule).
    return {
        'mask_token':
        0.5 * np.sin(1.3 * k + 0.7 * c) + 0.1 * k,
        'prob.0.weight':
        w1,
        'prob.0.bias':
        np.array([0.1, -0.2, 0.05]),
        'prob.2.weight':
        np.cos(np.arange(T * C, dtype=np.float64)).reshape(T, C, 1, 1),
        'prob.2.bias':
        np.array([0.3, -0.1, 0.0, 0.2])
    }


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def masks(tokens, x):
    """m_t = sigmoid(token_t . x), (N, T, H, W)."""
    n, c, h, w = x.shape
    attn = np.einsum('tc,ncp->ntp', tokens, x.reshape(n, c, h * w))
    return sigmoid(attn).reshape(n, -1, h, w)


def conv3x3(x, weight, bias):
    """Conv2d(kernel 3, padding 1, stride 1)."""
    n, c, h, w = x.shape
    pad = np.zeros((n, c, h + 2, w + 2))
    pad[:, :, 1:-1, 1:-1] = x
    out = np.zeros((n, weight.shape[0], h, w)) + bias[None, :, None, None]
    for i in range(3):
        for j in range(3):
            out += np.einsum('oc,nchw->nohw', weight[:, :, i, j],
                             pad[:, :, i:i + h, j:j + w])
    return out


def mask_weights(p, x):
    """softmax_t(conv1x1(avgpool(conv3x3(x)))), (N, T)."""
    pooled = conv3x3(x, p['prob.0.weight'], p['prob.0.bias']).mean((2, 3))
    logits = pooled @ p['prob.2.weight'][:, :, 0, 0].T + p['prob.2.bias']
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def dice(m):
    """Mean Dice of every ordered pair of different masks per sample."""
    m = m.reshape(m.shape[0], m.shape[1], -1)
    total, count = 0.0, 0
    for n in range(m.shape[0]):
        for a in range(m.shape[1]):
            for b in range(m.shape[1]):
                if a == b:
                    continue
                inter = np.sum(m[n, a] * m[n, b])
                total += 2 * inter / (
                    np.sum(m[n, a]**2) + 1e-12 + np.sum(m[n, b]**2) + 1e-12)
                count += 1
    return total / count


def maskd(s, t, p, weight_mask, refine, diversity_weight, loss_weight):
    """The masked distillation, optionally with student-refined masks and
    the Dice term of the teacher masks."""
    mask_t = masks(p['mask_token'], t)
    mask = mask_t * masks(p['mask_token'], s) if refine else mask_t
    per = np.zeros((N, T))
    for n in range(N):
        for k in range(T):
            area = mask[n, k].sum()
            per[n, k] = np.mean([
                np.sum((mask[n, k] * (s[n, c] - t[n, c]))**2) / area
                for c in range(C)
            ])
    if weight_mask:
        value = np.mean(np.sum(per * mask_weights(p, t), axis=1))
    else:
        value = per.mean()
    if diversity_weight:
        value += diversity_weight * dice(mask_t)
    return float(loss_weight * value)


def masked_feature(x, p, weight_mask):
    """Stage 1: sum_t p_t m_t x."""
    m = masks(p['mask_token'], x)
    out = x[:, None] * m[:, :, None]
    if weight_mask:
        out = out * mask_weights(p, x)[:, :, None, None, None]
    return out.sum(1)


def setting(cfg, iteration, refine):
    """A MasKDLoss setting ``cfg`` at the runner's ``iteration``; its Dice
    term is weighted by ``cfg['diversity_weight']`` (0 without)."""
    return dict(
        cfg=dict(cfg),
        iteration=iteration,
        refine=refine,
        diversity_weight=cfg.get('diversity_weight', 0.0))


def main():
    s, t = inputs()
    p = params()
    # MasKDLoss settings at the runner's iteration; with student-refined
    # masks or not.
    warmup3 = dict(
        weight_mask=True,
        custom_mask=True,
        custom_mask_warmup=3,
        freeze_masks=True,
        loss_weight=7.0)
    cases = {
        'custom_mask_weighted':
        setting(warmup3, iteration=3, refine=True),
        'before_warmup_weighted':
        setting(warmup3, iteration=2, refine=False),
        'custom_mask_unweighted':
        setting(
            dict(
                weight_mask=False,
                custom_mask=True,
                custom_mask_warmup=0,
                freeze_masks=True),
            iteration=0,
            refine=True),
        'diversity':
        setting(
            dict(
                weight_mask=True,
                custom_mask=False,
                freeze_masks=False,
                diversity_weight=0.5,
                loss_weight=2.0),
            iteration=0,
            refine=False),
        'diversity_custom_mask':
        setting(
            dict(
                weight_mask=True,
                custom_mask=True,
                custom_mask_warmup=1,
                freeze_masks=False,
                diversity_weight=0.5),
            iteration=5,
            refine=True),
    }
    out = dict(
        inputs=dict(preds_S=s.tolist(), preds_T=t.tolist()),
        params={
            k: v.tolist()
            for k, v in p.items()
        },
        shape=dict(channels=C, num_tokens=T),
        losses={},
        dice=float(dice(masks(p['mask_token'], t))),
        masked_feature={
            'weighted': masked_feature(t, p, True).tolist(),
            'unweighted': masked_feature(t, p, False).tolist()
        })
    for name, case in cases.items():
        cfg = case['cfg']
        value = maskd(s, t, p, cfg['weight_mask'], case['refine'],
                      case['diversity_weight'], cfg.get('loss_weight', 1.0))
        out['losses'][name] = dict(
            cfg=cfg, iteration=case['iteration'], value=value)
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'maskd_losses.json')
    with open(path, 'w') as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: out[k] for k in ('losses', 'dice')}, indent=2))


if __name__ == '__main__':
    main()
