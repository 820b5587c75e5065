# Copyright (c) mmakd contributors. All rights reserved.
"""How far AKD's fused Avatar target lies from a trained teacher's feature.

    python tools/analysis_tools/fused_target_distance.py CONFIG CKPT \
        --out DIR [--level 0] [--perturbation SPEC ...] \
        [--num-avatars 1 2 4 8 16 32] [--repeats 10] [--seed 0] [--tau 4] \
        [--cwd-tau 1] [--batch-size 8] [--split val] [--data-root DIR] \
        [--cfg-options ...]

CONFIG is a detector config (e.g. the demo teacher
``configs/akd/demo/retinanet_r18-w32_fpn-64_1xb8-2000it_shapes-128.py``)
and CKPT its checkpoint (loaded strictly). The first ``--batch-size``
images of the config's ``--split`` dataloader go through the data
preprocessor and ``extract_feat``; FPN level ``--level`` is the teacher
tensor ``T``. For each ``--perturbation`` (a config dict or list of dicts
as ``model.distiller.avatars.perturbation`` takes it, written as a Python
literal, e.g. ``"dict(type='AvatarDropout', p=0.1)"``) and each ``K`` of
``--num-avatars``, :func:`mmakd.apis.fused_target.fused_target_distance`
draws ``--repeats`` sets of ``K`` Avatars with AKD's uncertainty weights
(``--tau``; ``--tau 0`` for equal weights) and measures the fused target's
distance from ``T``: raw ``||Abar - T|| / ||T||``, the same after
per-channel standardisation (``normalize=True``) and CWD's mean
``KL(p_T || pbar)`` on raw and standardised maps. A perturbation with one
strength per Avatar is cycled to ``K``.

``--out DIR`` receives ``fused_target_distance.md`` (the tables),
``fused_target_distance.json`` (every value) and
``fused_target_distance.log`` (what was printed), with paths relative to the
repository.
"""
import argparse
import ast
import json
import os
import os.path as osp
import shlex
import sys
import time
from typing import Any, Callable, Dict, List

import torch
from mmengine.config import DictAction
from mmengine.registry import init_default_scope

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmakd.apis.experiment import machine_description  # noqa: E402
from mmakd.apis.experiment import portable_command  # noqa: E402
from mmakd.apis.experiment import portable_path  # noqa: E402
from mmakd.apis.experiment import portable_text  # noqa: E402
from mmakd.apis.fused_target import METRICS  # noqa: E402
from mmakd.apis.fused_target import fused_target_distance  # noqa: E402
from mmakd.utils import load_config  # noqa: E402

DEFAULT_PERTURBATION = "dict(type='AvatarDropout', p=0.1)"
NAME = 'fused_target_distance'
HEADERS = dict(
    raw='raw ‖Ā−T‖/‖T‖',
    standardized='standardised',
    cwd_kl_raw='CWD KL, raw (nats)',
    cwd_kl_standardized='CWD KL, standardised (nats)')


def literal(text: str) -> Any:
    """A Python literal, with ``dict(key=value)`` calls allowed as in
    config files; nothing is executed."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == 'dict' and not node.args:
            return {kw.arg: value(kw.value) for kw in node.keywords}
        if isinstance(node, ast.Dict):
            return {value(k): value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        return ast.literal_eval(node)

    try:
        return value(ast.parse(text.strip(), mode='eval').body)
    except (SyntaxError, ValueError) as err:
        raise argparse.ArgumentTypeError(
            f'not a perturbation literal: {text!r} ({err}); write e.g. '
            f'"{DEFAULT_PERTURBATION}"') from err


def parse_args(argv: List[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[9:]))
    parser.add_argument('config', help='detector config')
    parser.add_argument('checkpoint', help="the detector's checkpoint")
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument(
        '--level', type=int, default=0, help='FPN level (default 0)')
    parser.add_argument(
        '--perturbation',
        type=literal,
        action='append',
        help=f'perturbation config, repeatable (default '
        f'"{DEFAULT_PERTURBATION}")')
    parser.add_argument(
        '--num-avatars',
        type=int,
        nargs='+',
        default=[1, 2, 4, 8, 16, 32],
        help='the K to measure (default 1 2 4 8 16 32)')
    parser.add_argument(
        '--repeats', type=int, default=10, help='draws per K (default 10)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--tau',
        type=float,
        default=4.0,
        help='temperature of the uncertainty weights (default 4, AKD\'s); '
        '0 gives equal weights')
    parser.add_argument(
        '--cwd-tau',
        type=float,
        default=1.0,
        help='temperature of the CWD softmaxes (default 1)')
    parser.add_argument(
        '--batch-size', type=int, default=8, help='images (default 8)')
    parser.add_argument(
        '--split',
        choices=['train', 'val', 'test'],
        default='val',
        help='dataloader to take the batch from (default val: no random '
        'flip)')
    parser.add_argument(
        '--data-root', help="sets the split's dataset.data_root")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.perturbation is None:
        args.perturbation = [literal(DEFAULT_PERTURBATION)]
    if args.repeats < 1 or args.batch_size < 1 or \
            min(args.num_avatars) < 1 or args.tau < 0:
        parser.error('--repeats, --batch-size and --num-avatars must be '
                     '>= 1, --tau >= 0')
    return args


def first_batch(cfg, split: str, batch_size: int, seed: int) -> Any:
    """The first batch of the config's ``split`` dataloader."""
    from mmengine.runner import Runner
    loader_cfg = dict(cfg.get(f'{split}_dataloader') or {})
    if not loader_cfg:
        raise KeyError(f'the config has no {split}_dataloader')
    loader_cfg.update(
        batch_size=batch_size, num_workers=0, persistent_workers=False)
    return next(iter(Runner.build_dataloader(loader_cfg, seed=seed)))


def teacher_feature(cfg, checkpoint: str, split: str, batch_size: int,
                    level: int, seed: int) -> torch.Tensor:
    """FPN level ``level`` of the detector on the first batch, in
    evaluation mode."""
    from mmengine.runner import load_checkpoint

    from mmakd.registry import MODELS
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = MODELS.build(cfg.model)
    if not hasattr(model, 'extract_feat'):
        raise TypeError(f'cfg.model ({type(model).__name__}) has no '
                        'extract_feat: give a detector config.')
    load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.eval()
    batch = first_batch(cfg, split, batch_size, seed)
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        feats = model.extract_feat(data['inputs'])
    if isinstance(feats, torch.Tensor):
        feats = (feats, )
    if not 0 <= level < len(feats):
        raise IndexError(f'--level {level}: the detector gives '
                         f'{len(feats)} levels')
    return feats[level].float()


def _quote(arg: str) -> str:
    """``arg`` as typed in a shell: in double quotes when it holds single
    ones (a perturbation literal), else as :func:`shlex.quote` gives it."""
    if shlex.quote(arg) != arg and not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)


def _cell(stat: Dict[str, float]) -> str:
    return f"{stat['mean']:.4g} ± {stat['std']:.2g}"


def markdown(report: Dict[str, Any]) -> str:
    """The tables of one run."""
    lines = [
        '# Distance of the fused Avatar target from the teacher', '',
        f"Teacher: `{report['config']}`, checkpoint "
        f"`{report['checkpoint']}`; FPN level {report['level']}, shape "
        f"{tuple(report['shape'])}, the first {report['batch_size']} images "
        f"of the {report['split']} split (`{report['data_root']}`). "
        f"{report['repeats']} draws per K, seed {report['seed']}, "
        f"uncertainty weights tau={report['tau']} (None: equal), CWD "
        f"softmax tau={report['cwd_tau']}. Mean ± sample std over the "
        'draws.', '',
        'raw: ‖Σ w_k A_k − T‖/‖T‖; standardised: the same after each '
        "Avatar's and T's per-channel standardisation (normalize=True); "
        'CWD KL: mean over samples and channels of KL(p_T ‖ Σ w_k p_{A_k}), '
        'p = softmax over the positions of a channel; formula: '
        '√(Σ w_k² v_k), the expected raw distance for weights taken as '
        'fixed (v_k = p/(1−p) for dropout).', ''
    ]
    if report['results']:
        ref = report['results'][0]['reference']
        lines += [
            "For scale, the teacher's own CWD softmaxes lie KL(p_T ‖ uniform)"
            f" = {ref['kl_uniform_raw']:.4g} nats (raw) and "
            f"{ref['kl_uniform_standardized']:.4g} nats (standardised) from "
            'uniform; their mean entropy H(p_T) is '
            f"{ref['entropy_raw']:.4g} nats (raw) and "
            f"{ref['entropy_standardized']:.4g} nats (standardised). "
            'H(p̄) is the mean entropy of the fused CWD target (above '
            "H(p_T): smoother than the teacher's; below: sharper).", ''
        ]
    for result in report['results']:
        columns = [HEADERS[m] for m in METRICS] + [
            'raw, formula', 'w_max/w_min', 'H(p̄), raw', 'H(p̄), std.'
        ]
        lines += [
            f"## {result['perturbation']}", '',
            '| K | ' + ' | '.join(columns) + ' |',
            '|---|' + '---|' * len(columns)
        ]
        for row in result['rows']:
            formula = row['raw_formula']
            lines.append(f"| {row['num_avatars']} | " +
                         ' | '.join(_cell(row[m]) for m in METRICS) + ' | ' +
                         (f"{formula['mean']:.4g}" if formula else '–') +
                         f" | {row['wmax_over_wmin']['mean']:.2f} | "
                         f"{row['entropy_raw']['mean']:.4g} | "
                         f"{row['entropy_standardized']['mean']:.4g} |")
        small = [row for row in result['rows'] if 1 < row['num_avatars'] <= 4]
        if small:
            lines += [
                '', 'Mean weights over the draws: ' +
                '; '.join(f"K={row['num_avatars']}: (" +
                          ', '.join(f'{w:.3f}'
                                    for w in row['weights_mean']) + ')'
                          for row in small) + '.'
            ]
        cycled = [
            row['strengths'] for row in result['rows'] if row['strengths']
        ]
        if cycled:
            longest = max(cycled, key=len)
            shown = ', '.join(str(v) for v in longest[:8])
            more = ', ...' if len(longest) > 8 else ''
            lines += [
                '', f'Strengths of Avatars 1, 2, 3, ...: {shown}{more} (one '
                'per Avatar, cycled; K Avatars take the first K).'
            ]
        lines.append('')
    lines += [
        f"Machine: {report['machine']}; {report['seconds']:.0f} s.", '',
        f"Command: `{report['command']}`"
    ]
    return '\n'.join(lines) + '\n'


def run(args: argparse.Namespace, say: Callable[[str], None]) -> Dict:
    """Measure; returns the report (paths as results files show them)."""
    start = time.perf_counter()
    cfg = load_config(args.config, args.cfg_options)
    if args.data_root:
        root = args.data_root.rstrip('/') + '/'
        cfg.merge_from_dict(
            {f'{args.split}_dataloader.dataset.data_root': root})
    data_root = cfg.get(f'{args.split}_dataloader',
                        {}).get('dataset', {}).get('data_root', '')
    say(f'teacher {args.config}, checkpoint {args.checkpoint}: the first '
        f'{args.batch_size} {args.split} images of {data_root}')
    feature = teacher_feature(cfg, args.checkpoint, args.split,
                              args.batch_size, args.level, args.seed)
    say(f'FPN level {args.level}: shape {tuple(feature.shape)}, mean '
        f'{float(feature.mean()):.4f}, std {float(feature.std()):.4f}')
    results = []
    for spec in args.perturbation:
        say(f'perturbation {spec}: K={args.num_avatars}, {args.repeats} '
            'draws each')
        results.append(
            fused_target_distance(
                feature,
                spec,
                num_avatars=args.num_avatars,
                repeats=args.repeats,
                seed=args.seed,
                tau=args.tau or None,
                cwd_tau=args.cwd_tau,
                progress=lambda line: say('  ' + line)))
    command = portable_command(
        [sys.executable, osp.abspath(__file__)] + args.argv)
    return dict(
        config=portable_path(osp.abspath(args.config)),
        checkpoint=portable_path(osp.abspath(args.checkpoint)),
        data_root=portable_path(osp.abspath(data_root)) if data_root else '',
        split=args.split,
        batch_size=args.batch_size,
        level=args.level,
        shape=list(feature.shape),
        repeats=args.repeats,
        seed=args.seed,
        tau=args.tau or None,
        cwd_tau=args.cwd_tau,
        perturbations=[repr(spec) for spec in args.perturbation],
        results=results,
        machine=machine_description(),
        seconds=time.perf_counter() - start,
        command=' '.join(_quote(arg) for arg in command))


def main(argv: List[str] = None) -> None:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    log: List[str] = []

    def say(line: str) -> None:
        line = portable_text(f'[fused-target] {line}')
        log.append(line)
        print(line, flush=True)

    report = run(args, say)
    paths = {
        ext: osp.join(args.out, f'{NAME}.{ext}')
        for ext in ('md', 'json', 'log')
    }
    say(f"wrote {portable_path(osp.abspath(args.out))}/{NAME}.{{md,json,log}}"
        f" in {report['seconds']:.0f} s")
    with open(paths['md'], 'w') as f:
        f.write(markdown(report))
    with open(paths['json'], 'w') as f:
        json.dump(report, f, indent=2)
    with open(paths['log'], 'w') as f:
        f.write('\n'.join(log) + '\n')


if __name__ == '__main__':
    main()
