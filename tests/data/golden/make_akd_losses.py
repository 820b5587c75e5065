# Copyright (c) mmakd contributors. All rights reserved.
"""Write akd_losses.json: golden values of AKD's combined loss.

Computed from the formulas in docs/akd.md with NumPy and textbook loss
definitions, independently of mmakd's implementation (only MasKD's random
parameters are taken from MasKDLoss, seeded, since they are part of the
input). Run from the repository root:

    python tests/data/golden/make_akd_losses.py
"""
import json
import os.path as osp

import numpy as np
import torch

EPS = 1e-5


def inputs():
    idx = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    s = np.sin(0.37 * idx) * 2 + 0.5
    t = np.cos(0.23 * idx) * 3 - 1
    keep = ((idx.astype(np.int64) * 7) % 5 != 0).astype(np.float64)
    avatars = [t * keep / 0.8, t * (1 - 0.3 * np.sin(idx))]
    return s, t, avatars


def moments(x):
    return x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))


def standardize(x):
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return (x - mu) / np.sqrt(var + EPS)


def weights(t, avatars, tau=1.0):
    """docs/akd.md section 4.2: u_k = sum_c (D_mu^2 + D_sigma^2) /
    sum_c sigma_T^2, w_k proportional to u_k ** (-1 / tau)."""
    mu_t, sd_t = moments(t)
    u = []
    for a in avatars:
        mu_a, sd_a = moments(a)
        u.append(np.sum((mu_a - mu_t)**2 + (sd_a - sd_t)**2) / np.sum(sd_t**2))
    z = np.maximum(np.array(u), 1e-8)**(-1.0 / tau)
    return z / z.sum()


def log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def cwd(s, t, tau=1.0, loss_weight=1.0):
    n, c, h, w = s.shape
    ls, lt = log_softmax(s.reshape(-1, h * w) / tau, 1), \
        log_softmax(t.reshape(-1, h * w) / tau, 1)
    return np.sum(np.exp(lt) * (lt - ls)) * tau**2 / (n * c) * loss_weight


def kl(s, t, tau=1.0):
    # KLDivergence(reduction='batchmean') over the channel dimension
    ls, lt = log_softmax(s / tau, 1), log_softmax(t / tau, 1)
    return tau**2 * np.sum(np.exp(lt) * (lt - ls)) / s.shape[0]


def l2(s, t):
    # L2Loss(normalize=True): per-sample unit-norm vectors, sum / N
    sv = s.reshape(s.shape[0], -1)
    tv = t.reshape(t.shape[0], -1)
    sv = sv / np.linalg.norm(sv, axis=1, keepdims=True)
    tv = tv / np.linalg.norm(tv, axis=1, keepdims=True)
    return np.sum((sv - tv)**2) / s.shape[0]


def maskd(s, t, tokens, prob_fn):
    n, c, h, w = t.shape
    attn = np.einsum('tc,ncp->ntp', tokens, t.reshape(n, c, h * w))
    mask = (1 / (1 + np.exp(-attn))).reshape(n, -1, h, w)
    diff = (s - t)[:, None] * mask[:, :, None]
    per = (diff**2).sum(axis=(3, 4)) / mask.sum(axis=(2, 3))[..., None]
    probs = prob_fn(t)
    return float(((per.mean(-1)) * probs).sum(1).mean())


def combined(s, t, avatars, loss, normalize):
    w = weights(t, avatars)
    s_in = standardize(s) if normalize in ('both', 'student') else s
    total = 0.0
    for wk, a in zip(w, avatars):
        a_in = standardize(a) if normalize in ('both', 'teacher') else a
        total += wk * loss(s_in, a_in)
    return float(total), [float(x) for x in w]


def main():
    s, t, avatars = inputs()
    out = {}
    cases = {
        'cwd_both':
        (dict(type='ChannelWiseDivergence', tau=2.0,
              loss_weight=3.0), lambda a, b: cwd(a, b, 2.0, 3.0), 'both'),
        'cwd_student': (dict(type='ChannelWiseDivergence',
                             tau=1.0), lambda a, b: cwd(a, b), 'student'),
        'kl_both': (dict(type='KLDivergence',
                         tau=4.0), lambda a, b: kl(a, b, 4.0), 'both'),
        'l2_teacher': (dict(type='L2Loss', normalize=True), l2, 'teacher'),
    }
    for name, (cfg, fn, normalize) in cases.items():
        value, w = combined(s, t, avatars, fn, normalize)
        out[name] = dict(loss=cfg, normalize=normalize, value=value, weights=w)

    from mmakd.models.losses import MasKDLoss
    torch.manual_seed(0)
    cfg = dict(
        type='MasKDLoss',
        channels=3,
        num_tokens=4,
        custom_mask=False,
        freeze_masks=True)
    module = MasKDLoss(**{k: v for k, v in cfg.items() if k != 'type'})
    tokens = module.mask_token.detach().double().numpy()

    def prob_fn(x):  # the loss's mask-weight predictor, applied in float64
        with torch.no_grad():
            logits = module.prob.double()(torch.from_numpy(x)).flatten(1)
        module.prob.float()
        z = np.exp(logits.numpy() - logits.numpy().max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    value, w = combined(s, t, avatars,
                        lambda a, b: maskd(a, b, tokens, prob_fn), 'both')
    out['maskd_both'] = dict(
        loss=cfg, normalize='both', value=value, weights=w)
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'akd_losses.json')
    with open(path, 'w') as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out, indent=2))


if __name__ == '__main__':
    main()
