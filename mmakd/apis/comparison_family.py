# Copyright (c) mmakd contributors. All rights reserved.
"""Several candidates against one baseline, as a family: every paired
comparison of ``tools/reproduce.py`` with its p-value adjusted for the
number of comparisons (Holm, 1979)."""
import json
from typing import Any, Dict, List, Sequence

__all__ = ['holm_adjust', 'family_rows', 'family_markdown', 'load_reports']


def holm_adjust(p_values: Sequence[float]) -> List[float]:
    """Holm's step-down adjusted p-values, in the order given.

    With the ``m`` p-values sorted ascending, ``p_(1) <= ... <= p_(m)``,
    the adjusted ``p'_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``;
    rejecting where ``p' < alpha`` controls the family-wise error rate at
    ``alpha`` (S. Holm, "A simple sequentially rejective multiple test
    procedure", Scandinavian Journal of Statistics 6(2), 1979).
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def load_reports(paths: Dict[str, str]) -> Dict[str, Dict[str, Any]]:
    """``reproduce.json`` of each comparison, by its name."""
    reports = {}
    for name, path in paths.items():
        with open(path) as f:
            reports[name] = json.load(f)
    return reports


def family_rows(reports: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per comparison (candidate B - baseline A), with its
    Holm-adjusted p-value over all of them.

    ``tools/reproduce.py`` stores values and summary already multiplied by
    its ``scale`` (bbox mAP in points), so they are taken as they are.
    """
    rows = []
    for name, report in reports.items():
        summary = report['summary']
        if 'p_value' not in summary:
            raise ValueError(f'{name}: a comparison needs 2 seeds or more')
        rows.append(
            dict(
                name=name,
                task_metric=report['metric'],
                names=report['names'],
                seeds=report['seeds'],
                a=summary['a']['mean'],
                b=summary['b']['mean'],
                diff=summary['diff']['mean'],
                diff_std=summary['diff']['std'],
                ci95=list(summary['ci95']),
                p=summary['p_value']))
    for row, adjusted in zip(rows, holm_adjust([r['p'] for r in rows])):
        row['p_holm'] = adjusted
    return rows


def family_markdown(rows: List[Dict[str, Any]]) -> str:
    """The family as a Markdown table."""
    lines = [
        '| comparison | metric | seeds | baseline | candidate | '
        'candidate - baseline | 95 % CI | p | p (Holm) |',
        '|---|---|---|---|---|---|---|---|---|'
    ]
    for r in rows:
        seeds = f'{len(r["seeds"])} ({r["seeds"][0]}-{r["seeds"][-1]})'
        lines.append(
            f'| {r["name"]}: {r["names"][1]} vs {r["names"][0]} | '
            f'{r["task_metric"]} | {seeds} | {r["a"]:.2f} | {r["b"]:.2f} | '
            f'{r["diff"]:+.2f} ± {r["diff_std"]:.2f} | '
            f'[{r["ci95"][0]:+.2f}, {r["ci95"][1]:+.2f}] | {r["p"]:.3f} | '
            f'{r["p_holm"]:.3f} |')
    return '\n'.join(lines) + '\n'
