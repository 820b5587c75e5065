# Copyright (c) mmakd contributors. All rights reserved.
"""The benchmark's results as a console table and as Markdown."""
from typing import Any, Dict

from .cases import CASES


def format_table(payload: Dict[str, Any]) -> str:
    """The measured table, the ensemble comparisons and the targets as the
    tool prints them (a blank line first).

    Args:
        payload (dict): What :func:`run_benchmark` returns.

    Returns:
        str: The lines, without a final newline; the cases in the order
        they were measured.
    """
    results = payload['cases']
    lines = [
        '', f"base = {payload['base']}; ours = FlexibleTeacherDistill "
        f"(teacher forward '{payload['teacher_forward']}'); lower bound = "
        'teacher forward + student step',
        f'{"case":<16}{"median ms":>11}{"IQR ms":>9}{"peak MB":>9}'
        f'{"/base":>8}{"/ours":>8}{"/lower":>8}{"mem/base":>10}'
        f'{"syncs":>7}'
    ]
    for name, r in results.items():

        def fmt(key: str, spec: str = '.3f') -> str:
            return format(r[key], spec) if key in r else '-'

        lines.append(
            f'{name:<16}{r["step_ms_median"]:>11.1f}'
            f'{r["step_ms_iqr"]:>9.1f}'
            f'{fmt("peak_mem_mb", ".0f"):>9}{fmt("ratio_to_base"):>8}'
            f'{fmt("ratio_to_ours"):>8}{fmt("ratio_to_lower_bound"):>8}'
            f'{fmt("mem_ratio_to_base"):>10}{fmt("host_syncs", "d"):>7}')
    for c in payload['ensemble_vs_avatars']:
        lines.append(
            f"{c['ensemble']} / {c['avatars']}: {c['ratio']:.3f} (the step "
            f"of {c['k']} teachers over that of {c['k']} Avatars of one)")
    if payload['targets']:
        lines += ['', 'targets:']
    for t in payload['targets']:
        lines.append(f"  {t['case']} / {t['reference']} {t['what']}: "
                     f"{t['ratio']:.3f} (<= {t['limit']:.3f}) "
                     f"{'met' if t['met'] else 'MISSED'}")
    return '\n'.join(lines)


def markdown(payload: Dict[str, Any]) -> str:
    """The measured table and targets as Markdown (for the docs).

    Args:
        payload (dict): What :func:`run_benchmark` returns (or its JSON).

    Returns:
        str: The Markdown, the cases in :data:`CASES` order, ending with
        the command that measured them.
    """
    cases = payload['cases']
    h, w = payload['size']
    m = payload['machine']
    lines = [
        f"`{payload['config']}`, input {h}x{w}, batch "
        f"{payload['batch_size']}, {m['device']} ({m['processor']}, "
        f"{m['threads']} threads, torch {m['torch']}); median of "
        f"{payload['iters']} interleaved steps after {payload['warmup']} "
        f"warm-up rounds. base = {payload['base']}; ours = "
        f"FlexibleTeacherDistill (teacher forward "
        f"'{payload['teacher_forward']}').", '',
        '| case | step ms (median) | IQR ms | peak MB | / base | / ours '
        '| / lower bound | memory / base | host syncs / step |',
        '|---|---|---|---|---|---|---|---|---|'
    ]
    for name in list(CASES) + ['teacher_forward', 'lower_bound']:
        r = cases.get(name)
        if r is None:
            continue

        def fmt(key: str, spec: str = '.3f') -> str:
            value = r.get(key)
            return '-' if value is None or value != value else format(
                value, spec)

        lines.append(
            f"| {name} | {r['step_ms_median']:.1f} | "
            f"{fmt('step_ms_iqr', '.1f')} | {fmt('peak_mem_mb', '.0f')} | "
            f"{fmt('ratio_to_base')} | "
            f"{fmt('ratio_to_ours')} | {fmt('ratio_to_lower_bound')} | "
            f"{fmt('mem_ratio_to_base')} | {fmt('host_syncs', 'd')} |")
    for c in payload.get('ensemble_vs_avatars', []):
        lines += [
            '', f"A real ensemble of {c['k']} teachers against {c['k']} "
            f"Avatars of one: {c['ensemble']} / {c['avatars']} = "
            f"{c['ratio']:.3f} (step time)."
        ]
    lines += ['', '| target | ratio | limit | |', '|---|---|---|---|']
    for t in payload['targets']:
        lines.append(f"| {t['case']} / {t['reference']}, {t['what']} | "
                     f"{t['ratio']:.3f} | <= {t['limit']:.3f} | "
                     f"{'met' if t['met'] else 'MISSED'} |")
    lines += ['', f"Command: `python {payload['command']}`"]
    return '\n'.join(lines) + '\n'
