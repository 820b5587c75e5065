# Copyright (c) mmakd contributors. All rights reserved.
"""Why does my distillation not help? A doctor for distillation configs.

    python tools/analysis_tools/analyze_distill.py CONFIG \
        [--checkpoint CKPT] [--fake-data] [--size H W] [--batch-size N] \
        [--iters N] [--device cpu|cuda] [--json OUT] [--out-dir DIR] \
        [--offline] [--no-init-weights] [--seed S] [--cfg-options ...]

CONFIG is any MMRazor or mmakd distillation config (a local file, or
``mmrazor::``/``mmakd::``). The tool builds its algorithm, runs ``--iters``
training steps at learning rate 0 on batches of the config's training
dataloader (or, with ``--fake-data``, on generated ones of ``--size``), and
reports for every distillation loss: its value, the norm of the gradient it
alone sends into the student's parameters, its share of the student's
gradient (its norm over the sum of every task and distillation loss's
norm) beside the task losses' shares, and the shapes, mean ± std and cosine
similarity of the student and teacher tensors it compares; for AKD losses
also the Avatar weights and uncertainty. Then it warns, naming the loss and
the config key to change, about losses that are zero, constant across
batches, without gradient into the student, non-finite, drowning the task
losses (> 90 % of the gradient) or drowned by them (< 1 %), tensors of
scales more than 10x apart compared raw, a teacher without checkpoint, a
teacher whose BatchNorm statistics change, and teacher dropout that
perturbs the recorded tensors.

``--offline`` downloads nothing: teacher checkpoints (``model.teacher_ckpt``,
``model.teacher_ckpts[i]``), ``pretrained`` keys and ``Pretrained``
init_cfgs anywhere in the model tree (also in the configs of ``cfg_path``
specs) that name a URL or a missing file are left out, every other
initialiser runs, and the report lists which modules have random weights.

``--json OUT`` writes ``losses.<name>.{value, grad_norm, grad_share,
student, teacher, ...}``, ``task_losses.<name>.{value, grad_norm,
grad_share}`` and ``warnings: [{loss, kind, message}]``; ``--out-dir DIR``
writes ``report.md`` and ``grad_shares.png``. The exit status is 0 whether
or not there are warnings.
"""
import argparse
import json
import os
import os.path as osp
import sys

from mmengine.config import DictAction

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[8:]))
    parser.add_argument('config', help='distillation config file')
    parser.add_argument(
        '--checkpoint',
        help='checkpoint of the whole distillation algorithm (as training '
        'writes it), loaded after init_weights')
    parser.add_argument(
        '--fake-data',
        action='store_true',
        help='generated batches instead of the training dataloader')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help="size of generated batches (default: the config's training "
        'size)')
    parser.add_argument(
        '--batch-size',
        type=int,
        help="batch size (default: the dataloader's; 2 with --fake-data)")
    parser.add_argument(
        '--iters', type=int, default=3, help='training steps (default 3)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--offline',
        action='store_true',
        help='download nothing: leave every downloaded (or missing) weight '
        "(teacher_ckpt(s), pretrained, Pretrained init_cfgs) to the modules' "
        'own initialisers, which all still run, and list them in the report')
    parser.add_argument(
        '--no-init-weights',
        action='store_true',
        help='skip model.init_weights() altogether: every initialiser, also '
        "RetinaNet's classifier bias prior (to skip only the downloads, use "
        '--offline)')
    parser.add_argument('--json', help='write the report as JSON here')
    parser.add_argument(
        '--out-dir', help='write report.md and grad_shares.png here')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. model.teacher_ckpt=teacher.pth')
    args = parser.parse_args()
    if args.iters < 1:
        parser.error('--iters must be >= 1')
    if args.batch_size is not None and args.batch_size < 1:
        parser.error('--batch-size must be >= 1')
    if args.size and not args.fake_data:
        parser.error('--size sets the size of generated batches; add '
                     '--fake-data (real batches keep the pipeline\'s size)')
    if args.size and min(args.size) < 1:
        parser.error('--size must be positive')
    return args


def main() -> None:
    args = parse_args()
    # after the arguments: --help and a bad option answer at once, without
    # importing MMRazor and the OpenMMLab codebases (several seconds)
    import mmakd.apis.distill_doctor as doctor
    from mmakd.utils import load_config
    if args.device == 'cuda':
        import torch
        if not torch.cuda.is_available():
            sys.exit('--device cuda: CUDA is not available here')
    cfg = load_config(args.config, args.cfg_options)
    report = doctor.analyze_distill(
        cfg,
        checkpoint=args.checkpoint,
        fake_data=args.fake_data,
        size=tuple(args.size) if args.size else None,
        batch_size=args.batch_size,
        iters=args.iters,
        device=args.device,
        init_weights=not args.no_init_weights,
        offline=args.offline,
        seed=args.seed,
        progress=lambda line: print(f'[analyze] {line}', flush=True))
    report['config'] = args.config
    report['command'] = ' '.join([osp.relpath(sys.argv[0], os.getcwd())] +
                                 sys.argv[1:])
    print()
    print(doctor.format_report(report))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'[analyze] wrote {args.json}')
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        doctor.plot_grad_shares(report,
                                osp.join(args.out_dir, 'grad_shares.png'))
        with open(osp.join(args.out_dir, 'report.md'), 'w') as f:
            f.write(doctor.markdown_report(report, 'grad_shares.png'))
        print(f'[analyze] wrote {args.out_dir}/report.md and '
              'grad_shares.png')


if __name__ == '__main__':
    main()
