# Copyright (c) mmakd contributors. All rights reserved.
"""What does a distillation step cost, and what do Avatars add to it?

    python tools/analysis_tools/benchmark_distill.py CONFIG \
        [--iters 10] [--warmup 2] [--device cpu|cuda] [--json OUT] \
        [--size H W] [--batch-size 2] [--cfg-options ...]

CONFIG is a distillation config (a ``ConfigurableDistiller`` config or its
AKD twin). From it, with the same random weights and the same batch, the
tool builds and times, interleaved round by round after ``--warmup``
rounds:

- ``student``: the student's own training step, alone;
- ``base``: MMRazor's algorithm with ``ConfigurableDistiller``
  (``FpnTeacherDistill`` when every teacher recorder is in the backbone or
  neck, as MMRazor's FPN configs use, else ``SingleTeacherDistill``);
- ``ours``: mmakd's ``FlexibleTeacherDistill`` with the same distiller;
- ``ours_fused``: the same with ``fuse_teacher_conv_bn=True`` (the frozen
  teacher's BatchNorms folded into its convolutions);
- ``akd_k1``, ``akd_k4``, ``akd_k8``: ``FlexibleTeacherDistill`` with
  ``AvatarDistiller`` and K = 1, 4, 8 (dropout p = 0.1), each loss's
  Avatars fused into one target where the loss allows it (the default,
  ``avatars.fuse='auto'``);
- ``akd_k4_loop``, ``akd_k8_loop``: the same with ``avatars.fuse=False``,
  the base loss computed once per Avatar (before fused targets);
- ``akd_flip``, ``akd_scales_flip``, ``akd_mc4``: Avatars that run the
  teacher: views of the input (original + flip, K = 2; scales 0.75, 1,
  1.25 each with its flip, K = 6) and in-network dropout (p = 0.1 on the
  backbone stages' outputs, K = 4), the teacher batched over its Avatars;
- ``multi_teacher_k2``, ``multi_teacher_k4``: mmakd's
  ``MultiTeacherDistill`` with the same distiller and 2 or 4 copies of the
  teacher (a real ensemble: every teacher runs once per step and their
  records are averaged), so that the cost of K teachers and of K Avatars
  of one teacher (``akd_k4``) are measured side by side;
- ``lower_bound``: the teacher's forward (the shortest one that feeds the
  recorders) plus the student's step, each timed apart and added.

It prints the median step time and its spread (interquartile range), peak
memory, the device-to-host synchronisations of one step (counted as
``aten::_local_scalar_dense`` calls, the same on CPU and GPU; see
:class:`mmakd.testing.CountHostSyncs`), and the ratios to ``base``,
``ours`` and the lower bound, and the step of a real ensemble of K
teachers over that of K Avatars (``ensemble_vs_avatars``); ``--json``
writes them under
``cases.<name>.step_ms_median``, ``cases.<name>.step_ms_iqr``,
``cases.<name>.peak_mem_mb`` and ``cases.<name>.host_syncs``.

The optimizer step runs in full but at learning rate 0 (each round times
the same computation; :mod:`mmakd.apis.benchmark.cases`). Peak memory is
the step's transient peak above the memory held before it, from
``torch.cuda.max_memory_allocated`` on CUDA and from the sampled resident
set on CPU (:mod:`mmakd.apis.benchmark.timing`). The logic lives in
:mod:`mmakd.apis.benchmark`; this is its command line.
"""
import argparse
import json
import os
import sys

from mmengine.config import DictAction

sys.path.insert(
    0,
    os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from mmakd.apis import benchmark  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument(
        '--size',
        type=int,
        nargs=2,
        default=None,
        metavar=('H', 'W'),
        help='input size (default: 128 256 on CPU, the '
        "config's crop or 800 1333 on CUDA)")
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch CPU threads (default: torch default)')
    parser.add_argument('--json', default=None, help='write results here')
    parser.add_argument(
        '--markdown',
        default=None,
        help='write the table and targets as Markdown here')
    parser.add_argument(
        '--cases',
        nargs='+',
        default=list(benchmark.CASES),
        choices=list(benchmark.CASES))
    parser.add_argument(
        '--mem-steps',
        type=int,
        default=3,
        help='steps per case for peak memory (median)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    for key in ('iters', 'mem_steps'):
        if getattr(args, key) < 1:
            parser.error(f'--{key.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    return args


def main() -> None:
    args = parse_args()
    payload = benchmark.run_benchmark(
        args.config,
        cases=args.cases,
        iters=args.iters,
        warmup=args.warmup,
        device=args.device,
        size=args.size,
        batch_size=args.batch_size,
        threads=args.threads,
        mem_steps=args.mem_steps,
        cfg_options=args.cfg_options,
        command=' '.join(sys.argv))
    print(benchmark.format_table(payload))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(payload, f, indent=2)
        print(f'[benchmark] wrote {args.json}')
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(benchmark.markdown(payload))
        print(f'[benchmark] wrote {args.markdown}')


if __name__ == '__main__':
    main()
