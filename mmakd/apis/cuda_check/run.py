# Copyright (c) mmakd contributors. All rights reserved.
"""Run the CUDA check's steps: one summary line each, every log and result
in one folder, a stop at the first failure."""
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .steps import Step

__all__ = ['run_steps', 'summary_line']

#: Lines of a failed step's log printed with the failure.
TAIL_LINES = 25


def summary_line(index: int, total: int, result: Dict[str, Any]) -> str:
    """``[cuda-check]  3/13 det_akd      ok      14.2 s  <detail>``."""
    seconds = result.get('seconds')
    took = f'{seconds:7.1f} s' if seconds is not None else ' ' * 9
    return (f"[cuda-check] {index:2d}/{total} {result['name']:<16} "
            f"{result['status']:<7} {took}  {result['detail']}")


def _tail(path: str, lines: int = TAIL_LINES) -> str:
    with open(path, errors='replace') as f:
        return ''.join(f.readlines()[-lines:])


def _run_one(step: Step, python: str, repo: str, log_path: str,
             env: Dict[str, str]) -> Dict[str, Any]:
    start = time.time()
    with open(log_path, 'w') as log:
        log.write('$ python ' + ' '.join(step.argv) + '\n')
        log.flush()
        try:
            proc = subprocess.run([python, *step.argv],
                                  cwd=repo,
                                  env=env,
                                  stdout=log,
                                  stderr=subprocess.STDOUT,
                                  timeout=step.timeout)
            code: Optional[int] = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = round(time.time() - start, 1)
    with open(log_path, errors='replace') as f:
        output = f.read()
    if code is None:
        return dict(
            status='FAILED',
            seconds=seconds,
            detail=f'timed out after {step.timeout} s')
    if code != 0:
        return dict(
            status='FAILED', seconds=seconds, detail=f'exit status {code}')
    try:
        detail = step.check(output)
    except Exception as err:  # a broken result fails the step, not the run
        return dict(
            status='FAILED',
            seconds=seconds,
            detail=f'{type(err).__name__}: {err}')
    return dict(status='ok', seconds=seconds, detail=detail)


def run_steps(steps: Sequence[Step],
              out: str,
              repo: str,
              python: str = sys.executable,
              keep_going: bool = False,
              header: Optional[Dict[str, Any]] = None,
              before: Sequence[Dict[str, Any]] = (),
              placeholders: Optional[Dict[str, str]] = None,
              echo: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run ``steps`` in order; write ``summary.json`` and ``summary.txt``
    into ``out`` after each one (a run cut short keeps what it did), and
    each step's output to ``out/logs/<step>.log``.

    Args:
        steps (list[Step]): From :func:`~.steps.plan_steps`.
        out (str): The results folder.
        repo (str): The repository to run in (it goes first on the steps'
            ``PYTHONPATH``).
        python (str): The interpreter.
        keep_going (bool): After a failure, run the steps that do not need
            a failed one (the others are ``skipped``); by default the
            check stops at the first failure.
        header (dict, optional): Stored at the top of ``summary.json``
            (device, command).
        before (list[dict]): Results of steps the caller already ran (the
            install), each with ``name``, ``what``, ``status``, ``seconds``
            and ``detail``; they are listed and numbered first.
        placeholders (dict, optional): Paths shown as names in the
            recorded commands, the header's ``command`` too
            (``{'/tmp/x': '$WORK'}``), so that the summary holds no path
            of the machine it ran on.
        echo (callable): Prints the summary lines.

    Returns:
        dict: The summary: ``ok`` and one result per step.
    """
    os.makedirs(osp.join(out, 'logs'), exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (repo, env.get('PYTHONPATH')) if p)

    def anonymous(command: str) -> str:
        for path, name in (placeholders or {}).items():
            command = command.replace(path, name)
        return command

    total = len(before) + len(steps)
    summary: Dict[str, Any] = dict(
        header or {}, ok=False, steps=[dict(r) for r in before])
    if 'command' in summary:
        summary['command'] = anonymous(summary['command'])
    lines = [
        summary_line(index, total, result)
        for index, result in enumerate(before, 1)
    ]
    for line in lines:
        echo(line)
    failed: List[str] = []
    stopped = False
    for index, step in enumerate(steps, len(before) + 1):
        log_path = osp.join(out, 'logs', f'{step.name}.log')
        blocked = [r for r in step.requires if r in failed]
        if stopped or blocked:
            result = dict(
                status='skipped',
                seconds=None,
                detail=(f"needs {', '.join(blocked)}"
                        if blocked else 'after a failure'))
            failed.append(step.name)
        else:
            result = _run_one(step, python, repo, log_path, env)
        result = dict(
            name=step.name,
            what=step.what,
            command=anonymous('python ' +
                              ' '.join('<code>' if '\n' in arg else arg
                                       for arg in step.argv)),
            log=osp.relpath(log_path, out),
            **result)
        summary['steps'].append(result)
        lines.append(summary_line(index, total, result))
        echo(lines[-1])
        if result['status'] == 'FAILED':
            failed.append(step.name)
            echo(f'[cuda-check] {step.name} failed: {step.what}\n'
                 f'[cuda-check] last lines of {log_path}:\n' + _tail(log_path))
            stopped = not keep_going
        summary['ok'] = not failed and index == total
        _write(out, summary, lines)
    if not steps:
        _write(out, summary, lines)
    return summary


def _write(out: str, summary: Dict[str, Any], lines: List[str]) -> None:
    with open(osp.join(out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    with open(osp.join(out, 'summary.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
