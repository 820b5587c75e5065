# Copyright (c) mmakd contributors. All rights reserved.
"""Run ``tools/train.py`` as a user would and read back what it measured.

Used by :mod:`mmakd.apis.demo` and ``tools/reproduce.py``: every training
run is a separate ``python tools/train.py CONFIG --work-dir DIR
--cfg-options ...`` process (the command is printed, so any step can be
re-run by hand), and the results are read from the files MMEngine writes
(``vis_data/scalars.json``), not from the console.
"""
import json
import math
import os
import os.path as osp
import platform
import re
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass, field
from glob import glob
from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = [
    'RunResult', 'to_cli_options', 'train', 'read_scalars', 'final_metrics',
    'find_checkpoint', 'paired_summary', 'portable_command', 'relative_path',
    'portable_path', 'portable_text', 'finished_run', 'machine_description'
]

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TRAIN = osp.join(REPO, 'tools', 'train.py')
#: What ``train`` writes into a work directory after a successful run.
RUN_RECORD = 'mmakd_run.json'


@dataclass
class RunResult:
    """What one training run left behind.

    Attributes:
        name (str): Label of the run (``teacher``, ``akd``...).
        config (str): The config file.
        work_dir (str): Its work directory.
        command (list[str]): The exact command that was run.
        metrics (dict): The last validation metrics, e.g. ``{'mIoU': 61.2}``
            (for distillation runs the student's, and the teacher's under
            ``teacher.<key>``).
        sec_per_iter (float): Mean training-iteration time (MMEngine's
            ``time``), warm-up iterations excluded.
        wall_seconds (float): Wall time of the whole process.
        checkpoint (str): The last checkpoint.
        train_log (list[dict]): Training scalars per logged iteration.
        val_log (list[dict]): Validation scalars per evaluation.
    """
    name: str
    config: str
    work_dir: str
    command: List[str]
    metrics: Dict[str, float] = field(default_factory=dict)
    sec_per_iter: float = float('nan')
    wall_seconds: float = float('nan')
    checkpoint: str = ''
    train_log: List[Dict[str, Any]] = field(default_factory=list)
    val_log: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self, logs: bool = False) -> Dict[str, Any]:
        """JSON-friendly dict, with paths relative to the repository.

        The command starts with ``python`` instead of this machine's
        interpreter, and paths inside the repository (config, work
        directory, checkpoint, those in ``--cfg-options``) are relative to
        it, so that results files hold commands any checkout can re-run;
        paths outside it get a placeholder (:func:`portable_path`).

        Args:
            logs (bool): Keep ``train_log`` and ``val_log``. Defaults to
                False.
        """
        out = asdict(self)
        out['command'] = portable_command(self.command)
        for key in ('config', 'work_dir', 'checkpoint'):
            out[key] = portable_path(out[key])
        if not logs:
            out.pop('train_log')
            out.pop('val_log')
        return out


def machine_description() -> str:
    """Processor, CPU cores, torch version and threads, for reports."""
    import torch
    return (f'{platform.processor() or platform.machine()}, '
            f'{os.cpu_count()} CPU cores, torch {torch.__version__}, '
            f'{torch.get_num_threads()} threads')


def relative_path(path: str) -> str:
    """``path`` relative to the repository if it lies inside it (a path this
    machine can use; for what a committed file shows, see
    :func:`portable_path`)."""
    if not path or not osp.isabs(path):
        return path
    rel = osp.relpath(path, REPO)
    return path if rel == os.pardir or rel.startswith(os.pardir +
                                                      os.sep) else rel


def _machine_prefixes(roots: Sequence[str]) -> Dict[str, str]:
    """This machine's folders and what results files show instead.

    The repository (and ``roots``, other checkouts) becomes relative, the
    interpreter ``python``, its packages ``<site-packages>``, its
    installation ``<python>``, the temporary folder ``<tmp>`` and the home
    folder ``<home>``.
    """
    prefixes: Dict[str, str] = {}
    home = osp.expanduser('~')
    for path, shown in ((home, '<home>'), (tempfile.gettempdir(), '<tmp>'),
                        (osp.realpath(tempfile.gettempdir()), '<tmp>')):
        if path and path != os.sep:
            prefixes[path] = shown
    for path in (sys.base_prefix, sys.base_exec_prefix, sys.prefix,
                 sys.exec_prefix):
        prefixes[path] = '<python>'
    for path in [REPO, *roots]:
        prefixes[path.rstrip(os.sep)] = ''
    packages = list(site.getsitepackages()) + [
        site.getusersitepackages(),
        sysconfig.get_paths()['purelib'],
        sysconfig.get_paths()['platlib']
    ]
    for path in packages:
        prefixes[path] = '<site-packages>'
    prefixes[sys.executable] = 'python'
    return prefixes


def portable_text(text: str, roots: Sequence[str] = ()) -> str:
    """``text`` (a log, a dumped config) without this machine's paths.

    Every path in the repository becomes relative to it, and the other
    folders of this machine get placeholders (``<tmp>``, ``<home>``,
    ``<site-packages>``, ``<python>``; the interpreter ``python``). Nothing
    else changes: no number, no path of another machine (PyTorch's build
    settings).

    Args:
        text (str): The text.
        roots (Sequence[str]): Other checkouts of the repository whose paths
            become relative too (e.g. the clone a result was made in).
    """
    prefixes = _machine_prefixes(roots)
    names = sorted(prefixes, key=len, reverse=True)
    pattern = re.compile(r'(?<![\w.~/<>-])(' +
                         '|'.join(re.escape(n)
                                  for n in names) + r')(/|(?![\w.-]))')

    def shown(match: 're.Match') -> str:
        new, slash = prefixes[match.group(1)], match.group(2)
        if new:
            return new + slash
        return '' if slash else '.'

    return pattern.sub(shown, text)


def portable_path(path: str) -> str:
    """``path`` as a committed results file shows it.

    Relative to the repository if it lies inside it, else with a
    placeholder for this machine's folder (:func:`portable_text`) or, for
    any other absolute path, ``<outside>`` before it. Not for running: see
    :func:`relative_path`.
    """
    if not path or not osp.isabs(path):
        return path
    out = portable_text(path)
    return '<outside>' + out if osp.isabs(out) else out


def portable_command(command: Sequence[str]) -> List[str]:
    """A command as it would be typed in the repository root.

    The interpreter becomes ``python``; every absolute path inside the
    repository, alone or as the value of a ``key=value`` option, becomes
    relative to it, and one outside it gets a placeholder
    (:func:`portable_path`).

    Args:
        command (Sequence[str]): E.g. ``[sys.executable, TRAIN, ...]``.

    Returns:
        list[str]: E.g. ``['python', 'tools/train.py', ...]``.
    """
    out = []
    for i, arg in enumerate(command):
        if i == 0 and arg == sys.executable:
            out.append('python')
            continue
        key, sep, value = arg.partition('=')
        if sep and not osp.isabs(key):
            out.append(key + sep + portable_path(value))
        else:
            out.append(portable_path(arg))
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        inner = ','.join(_fmt(v) for v in value)
        return f'({inner})' if isinstance(value, tuple) else f'[{inner}]'
    return str(value)


def to_cli_options(options: Dict[str, Any]) -> List[str]:
    """Render dotted overrides as ``--cfg-options`` arguments.

    Args:
        options (dict): E.g. ``{'model.teacher_ckpt': 'a.pth',
            'train_cfg.max_iters': 50}``; a dict value expands into dotted
            keys.

    Returns:
        list[str]: ``['model.teacher_ckpt=a.pth', 'train_cfg.max_iters=50']``.
    """
    args = []
    for key, value in options.items():
        if isinstance(value, dict):
            args += to_cli_options({f'{key}.{k}': v for k, v in value.items()})
        else:
            args.append(f'{key}={_fmt(value)}')
    return args


def read_scalars(work_dir: str) -> List[Dict[str, Any]]:
    """All records of the newest ``vis_data/scalars.json`` in ``work_dir``."""
    files = sorted(glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(f'no vis_data/scalars.json under {work_dir}')
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def _is_train(record: Dict[str, Any]) -> bool:
    return 'loss' in record or 'lr' in record


def final_metrics(records: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """Metrics of the last validation record.

    ``SingleTeacherDistillValLoop`` logs the student's metrics plainly and
    the teacher's with a ``teacher.`` prefix; both are kept.
    """
    vals = [r for r in records if not _is_train(r)]
    if not vals:
        return {}
    last = vals[-1]
    return {
        k: float(v)
        for k, v in last.items()
        if k not in ('step', 'iter', 'epoch', 'time',
                     'data_time') and isinstance(v, (int, float))
    }


def find_checkpoint(work_dir: str) -> str:
    """The checkpoint named in ``work_dir/last_checkpoint``."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        raise FileNotFoundError(f'{work_dir} has no last_checkpoint')
    with open(path) as f:
        return f.read().strip()


def train(name: str,
          config: str,
          work_dir: str,
          options: Optional[Dict[str, Any]] = None,
          echo: Optional[Callable[[str], None]] = None,
          env: Optional[Dict[str, str]] = None,
          warmup_records: int = 1,
          reuse: bool = False) -> RunResult:
    """Train ``config`` with ``tools/train.py`` in a fresh process.

    Args:
        name (str): Label of the run.
        config (str): Config path.
        work_dir (str): Work directory (reused: delete it to start over).
        options (dict, optional): ``--cfg-options`` overrides.
        echo (Callable, optional): Receives each console line worth showing
            (training progress and errors); None prints nothing.
        env (dict, optional): Extra environment variables.
        warmup_records (int): Logged training records left out of
            ``sec_per_iter``. Defaults to 1.
        reuse (bool): If ``work_dir`` holds a finished run of the same
            command (``mmakd_run.json``, written after every successful
            run, a final validation and the last checkpoint), read it back
            instead of training again. Defaults to False.

    Returns:
        RunResult: Metrics, timing and logs of the run.

    Raises:
        RuntimeError: With the end of the output, if training failed.
    """
    command = [sys.executable, TRAIN, config, '--work-dir', work_dir]
    if options:
        command += ['--cfg-options'] + to_cli_options(options)
    if reuse:
        done = finished_run(name, config, work_dir, command, warmup_records)
        if done is not None:
            if echo:
                echo(f'reusing the finished run in {work_dir}')
            return done
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env['PYTHONPATH'] = REPO + os.pathsep + full_env.get('PYTHONPATH', '')
    full_env.setdefault('PYTHONUNBUFFERED', '1')
    os.makedirs(work_dir, exist_ok=True)
    start = time.perf_counter()
    tail: List[str] = []
    with subprocess.Popen(
            command,
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1) as proc:
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-60:]
            if echo and ('Iter(train)' in line or 'Epoch(train)' in line
                         or 'Iter(val)' in line and 'mIoU' in line
                         or 'Error' in line or 'bbox_mAP:' in line):
                echo(line.rstrip())
        proc.wait()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f'training {name} failed ({" ".join(command)}):\n' +
                           '\n'.join(tail))
    result = _collect(name, config, work_dir, command, wall, warmup_records)
    with open(osp.join(work_dir, RUN_RECORD), 'w') as f:
        json.dump(
            dict(command=portable_command(command), wall_seconds=wall), f)
    return result


def finished_run(name: str,
                 config: str,
                 work_dir: str,
                 command: Sequence[str],
                 warmup_records: int = 1) -> Optional[RunResult]:
    """The finished run of ``command`` in ``work_dir``, or None.

    A run counts as finished when ``train`` recorded it (``mmakd_run.json``
    with the same command, compared as :func:`portable_command` gives it),
    its scalars hold a validation and its last checkpoint exists.
    """
    path = osp.join(work_dir, RUN_RECORD)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        record = json.load(f)
    if record.get('command') != portable_command(command):
        return None
    try:
        result = _collect(name, config, work_dir, list(command),
                          record['wall_seconds'], warmup_records)
    except FileNotFoundError:
        return None
    if not result.metrics or not osp.isfile(osp.join(REPO, result.checkpoint)):
        return None
    return result


def _collect(name: str, config: str, work_dir: str, command: List[str],
             wall: float, warmup_records: int) -> RunResult:
    """A run's result from the files MMEngine wrote."""
    records = read_scalars(work_dir)
    train_log = [r for r in records if _is_train(r)]
    val_log = [r for r in records if not _is_train(r)]
    times = [r['time'] for r in train_log[warmup_records:] if 'time' in r]
    if not times:
        times = [r['time'] for r in train_log if 'time' in r]
    return RunResult(
        name=name,
        config=config,
        work_dir=work_dir,
        command=command,
        metrics=final_metrics(records),
        sec_per_iter=sum(times) / len(times) if times else float('nan'),
        wall_seconds=wall,
        checkpoint=find_checkpoint(work_dir),
        train_log=train_log,
        val_log=val_log)


def _mean_std(values: Sequence[float]) -> Dict[str, float]:
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum(
        (v - mean)**2 for v in values) / (n - 1)) if n > 1 else 0.0
    return dict(mean=mean, std=std, n=n)


def paired_summary(a: Sequence[float], b: Sequence[float]) -> Dict[str, Any]:
    """Mean ± std of two paired samples and of their difference ``b - a``.

    With ``n >= 2`` seeds it adds the paired t statistic, its two-sided
    p-value and a 95% confidence interval of the mean difference.

    Args:
        a (Sequence[float]): Metric of configuration A per seed.
        b (Sequence[float]): Metric of configuration B, same seeds.

    Returns:
        dict: ``a``, ``b``, ``diff`` (each mean/std/n) and, for n >= 2,
        ``t``, ``p_value``, ``ci95``.
    """
    if len(a) != len(b) or not a:
        raise ValueError('paired samples need the same, non-zero length')
    diff = [y - x for x, y in zip(a, b)]
    out: Dict[str, Any] = dict(
        a=_mean_std(a), b=_mean_std(b), diff=_mean_std(diff))
    n = len(diff)
    if n >= 2:
        from scipy import stats
        d = out['diff']
        sem = d['std'] / math.sqrt(n)
        if sem > 0:
            out['t'] = d['mean'] / sem
            out['p_value'] = float(2 * stats.t.sf(abs(out['t']), n - 1))
        else:
            out['t'] = float('inf') if d['mean'] else 0.0
            out['p_value'] = 0.0 if d['mean'] else 1.0
        half = float(stats.t.ppf(0.975, n - 1)) * sem
        out['ci95'] = [d['mean'] - half, d['mean'] + half]
    return out
