# Copyright (c) mmakd contributors. All rights reserved.
"""Evaluate a checkpoint with the test settings of a config.

A whole distillation checkpoint holds the teachers' weights: the teacher
files (``model.teacher_ckpt`` / ``model.teacher_ckpts``) are then not read,
and the log says so.
"""
import argparse
import os

from mmengine.config import DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

import mmakd  # noqa: F401  (PyTorch compatibility, registers mmakd)
from mmakd.utils import load_config, prepare_distributed, set_work_dir
from mmakd.utils.checkpoint import use_teachers_from_checkpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='config file, or package::path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where to save the test logs')
    parser.add_argument(
        '--out',
        help='also dump the raw predictions to this .pkl file (mmengine '
        'DumpResults)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, xxx=yyy')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    prepare_distributed(cfg, args.launcher)
    set_work_dir(cfg, args.work_dir)
    cfg.load_from = args.checkpoint
    notes = use_teachers_from_checkpoint(cfg, args.checkpoint, 'checkpoint')
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError('--out must end with .pkl or .pickle')
        dump = dict(type='DumpResults', out_file_path=args.out)
        evaluator = cfg.test_evaluator
        cfg.test_evaluator = (list(evaluator) if isinstance(
            evaluator, (list, tuple)) else [evaluator]) + [dump]
    runner = Runner.from_cfg(cfg)
    for note in notes:  # in the run's log file too
        print_log(note, logger='current')
    runner.test()


if __name__ == '__main__':
    main()
