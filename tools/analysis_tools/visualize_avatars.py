# Copyright (c) mmakd contributors. All rights reserved.
"""Show what the student learns from: a teacher feature, its Avatars, how
they differ from it, and the uncertainty weight of each Avatar.

    python tools/analysis_tools/visualize_avatars.py CONFIG CKPT IMAGE \
        --out avatars.png [--loss loss_cwd_fpn0] [--num-avatars 4] \
        [--channel C] [--seed 0] [--cfg-options ...]

CONFIG is an AKD config (``AvatarDistiller``), CKPT a checkpoint of it (or
any checkpoint holding its teacher's weights under ``teacher.``; the
teacher file ``model.teacher_ckpt`` is then not read, else it provides the
teacher). The image
goes through the config's test pipeline and the teacher forward that the
algorithm runs; the Avatars come from the distiller's own perturbation.
Avatars that run the teacher (``TeacherViews``, ``TeacherDropout``) are
recorded as in training, and the first panel shows their mean.
"""
import argparse
import os.path as osp
from typing import Any, Dict, List

import numpy as np
import torch
from mmengine.config import DictAction
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from mmakd.models import AvatarDistiller
from mmakd.models.avatars import avatar_uncertainty, avatar_weights
from mmakd.registry import MODELS
from mmakd.utils import load_config
from mmakd.utils.checkpoint import use_teachers_from_checkpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='AKD config')
    parser.add_argument('checkpoint', help='checkpoint with teacher weights')
    parser.add_argument('image', help='input image')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument(
        '--loss', help='which loss of avatars.losses '
        '(default: the first)')
    parser.add_argument(
        '--level',
        type=int,
        default=0,
        help='tensor index when the teacher input is a '
        'tuple of levels')
    parser.add_argument(
        '--num-avatars',
        type=int,
        default=None,
        help='default: the config\'s K, at least 4')
    parser.add_argument(
        '--channel',
        type=int,
        default=None,
        help='channel to show (default: the one with the '
        'largest variance in the teacher feature)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def load_image(cfg, path: str) -> Dict[str, Any]:
    """The image through the test pipeline, without annotation loading."""
    steps = [
        t for t in cfg.test_dataloader.dataset.pipeline
        if 'Annotations' not in t['type']
    ]
    data = Compose(steps)(dict(img_path=path))
    return pseudo_collate([data])


def teacher_input(model, loss_name: str, level: int) -> torch.Tensor:
    distiller = model.distiller
    record = dict(distiller.loss_forward_mappings[loss_name][
        distiller.teacher_keys[loss_name]])
    record.pop('connector', None)
    record.pop('connector_idx', None)
    value = distiller.get_record(**record)
    if isinstance(value, (tuple, list)):
        value = value[level]
    return value.detach().float()


def draw(image: np.ndarray, teacher: torch.Tensor, avatars: torch.Tensor,
         weights: List[float], uncertainty: List[float], channel: int,
         title: str, out: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    k = avatars.shape[0]
    t_map = teacher[0, channel].numpy()
    a_maps = avatars[:, 0, channel].numpy()
    vmin, vmax = float(min(t_map.min(), a_maps.min())), float(
        max(t_map.max(), a_maps.max()))
    d_maps = np.abs(a_maps - t_map[None])
    dmax = float(d_maps.max()) or 1.0
    fig, axes = plt.subplots(
        2,
        k + 1,
        figsize=(2.6 * (k + 1), 6.2),
        gridspec_kw=dict(hspace=0.35, wspace=0.08))
    axes[0, 0].imshow(image)
    axes[0, 0].set_title('input')
    axes[1, 0].imshow(t_map, cmap='viridis', vmin=vmin, vmax=vmax)
    axes[1, 0].set_title(f'teacher, channel {channel}')
    for i in range(k):
        axes[0, i + 1].imshow(a_maps[i], cmap='viridis', vmin=vmin, vmax=vmax)
        axes[0, i + 1].set_title(
            f'Avatar {i + 1}\nw={weights[i]:.3f}  '
            f'u={uncertainty[i]:.3f}',
            fontsize=9)
        im = axes[1, i + 1].imshow(d_maps[i], cmap='magma', vmin=0, vmax=dmax)
        axes[1, i + 1].set_title(f'|Avatar {i + 1} - teacher|', fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(
        im,
        ax=list(axes[1, 1:]),
        fraction=0.02,
        pad=0.01,
        label='absolute difference')
    fig.suptitle(title, fontsize=10)
    fig.savefig(out, dpi=100, bbox_inches='tight')
    plt.close(fig)


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    # the teacher file is not read when the checkpoint holds the teacher
    for note in use_teachers_from_checkpoint(cfg, args.checkpoint, 'CKPT'):
        print(note)
    init_default_scope(cfg.get('default_scope', 'mmrazor'))
    model = MODELS.build(cfg.model)
    if not isinstance(model.distiller, AvatarDistiller):
        raise TypeError(f'{args.config}: model.distiller is '
                        f'{type(model.distiller).__name__}, not '
                        'AvatarDistiller.')
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.eval()
    distiller = model.distiller
    loss_name = args.loss or next(iter(distiller.teacher_keys))
    if loss_name not in distiller.teacher_keys:
        raise KeyError(f'--loss {loss_name!r} is not among the AKD losses '
                       f'{list(distiller.teacher_keys)}')
    data = model.data_preprocessor(load_image(cfg, args.image), False)
    if distiller.perturbation.runs_teacher:  # views, in-network dropout
        return _show_teacher_runs(model, args, loss_name, data)
    with distiller.teacher_recorders, torch.no_grad():
        mode = model.teacher_forward
        if mode == 'feat':
            model.teacher.extract_feat(data['inputs'])
        else:
            model.teacher(
                data['inputs'],
                data['data_samples'],
                mode='tensor' if mode == 'tensor' else 'predict')
        teacher = teacher_input(model, loss_name, args.level)
    k = args.num_avatars or max(distiller.num_avatars, 4)
    if distiller.perturbation.per_avatar:  # strengths per Avatar fix K
        if args.num_avatars not in (None, distiller.num_avatars):
            raise ValueError(
                f'--num-avatars {args.num_avatars}: the config sets one '
                f'strength per Avatar for {distiller.num_avatars} Avatars '
                f'({distiller.perturbation!r}).')
        k = distiller.num_avatars
    generator = torch.Generator().manual_seed(args.seed)
    avatars = distiller.perturbation(
        teacher, num_avatars=k, generator=generator).float()
    _show(args, data, loss_name, teacher, avatars, distiller)


def _show(args,
          data: dict,
          loss_name: str,
          teacher: torch.Tensor,
          avatars: torch.Tensor,
          distiller,
          note: str = '') -> None:
    """Weigh the Avatars of ``teacher`` (their drift's reference) as
    training does, draw them beside it and print the weights."""
    if teacher.dim() != 4:
        raise ValueError(f'{loss_name}: teacher input has shape '
                         f'{tuple(teacher.shape)}; only (N, C, H, W) maps '
                         'can be drawn.')
    k = len(avatars)
    uncertainty = avatar_uncertainty(teacher, avatars)
    if distiller.tau is None:  # uncertainty=None: training uses 1/K each
        weights = torch.full((k, ), 1.0 / k)
    else:
        weights = avatar_weights(uncertainty, distiller.tau)
    channel = args.channel if args.channel is not None else int(
        teacher[0].flatten(1).var(1).argmax())
    image = data['inputs'][0].permute(1, 2, 0).float()
    image = ((image - image.min()) / (image.max() - image.min() + 1e-6))
    title = (f'{osp.basename(args.config)}: {loss_name} '
             f'({type(distiller.perturbation).__name__}, {k} Avatars, '
             f'tau={distiller.tau}{note})')
    draw(image.numpy(), teacher, avatars, weights.tolist(),
         uncertainty.tolist(), channel, title, args.out)
    print(f'wrote {args.out}: {loss_name}, channel {channel}, weights '
          f'{[round(w, 4) for w in weights.tolist()]}')


def _show_teacher_runs(model, args, loss_name: str, data: dict) -> None:
    """Avatars that are runs of the teacher: recorded as in training
    (:func:`mmakd.models.avatars.record_teacher_avatars`), weighted by
    their drift from their mean."""
    from mmakd.models.avatars import (record_teacher_avatars,
                                      teacher_avatar_draws)
    distiller = model.distiller
    record = distiller.loss_forward_mappings[loss_name][
        distiller.teacher_keys[loss_name]]
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        buffers = record_teacher_avatars(
            distiller.perturbation, lambda x: model._record_teachers(x, None),
            data['inputs'], distiller.teacher_recorders, generator)
        draws, references = teacher_avatar_draws(buffers[record['recorder']],
                                                 record.get('record_idx', 0),
                                                 record.get('data_idx'),
                                                 loss_name)
    level = args.level if len(draws) > 1 else 0
    _show(args, data, loss_name, references[level].float(),
          draws[level].materialize().float(), distiller, '; left: their mean')


if __name__ == '__main__':
    main()
