# Copyright (c) mmakd contributors. All rights reserved.
"""The chart of every loss's share of the student's gradient."""
import os
from typing import Any, Dict, List

from .rules import SHARE_MAX, SHARE_MIN


def plot_grad_shares(report: Dict[str, Any], path: str) -> None:
    """A horizontal bar chart of every loss's share of the student's
    gradient, distillation and task losses in two colours, with the
    :data:`SHARE_MIN` and :data:`SHARE_MAX` lines; a warned loss is drawn
    with a red edge and its warning kinds beside its bar."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [(n, r['grad_share'] or 0.0, 'distill')
            for n, r in report['losses'].items()]
    rows += [(f'task: {n}', r['grad_share'] or 0.0, 'task')
             for n, r in report['task_losses'].items()]
    flagged: Dict[str, List[str]] = {}
    for w in report['warnings']:
        if w['loss']:
            flagged.setdefault(w['loss'], []).append(w['kind'])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.9))
    colours = dict(distill='tab:blue', task='tab:gray')
    ys = list(range(len(rows)))[::-1]
    ax.barh(
        ys, [r[1] * 100 for r in rows],
        color=[colours[r[2]] for r in rows],
        edgecolor=['tab:red' if r[0] in flagged else 'none' for r in rows],
        linewidth=2)
    ax.set_yticks(ys)
    ax.set_yticklabels([r[0] for r in rows])
    for y, (name, share, _) in zip(ys, rows):
        kinds = ', '.join(flagged.get(name, []))
        ax.text(
            share * 100 + 0.5,
            y,
            f'{share:.1%}' + (f'  {kinds}' if kinds else ''),
            va='center',
            fontsize=8,
            color='tab:red' if kinds else 'black')
    for limit, colour in ((SHARE_MIN, 'tab:orange'), (SHARE_MAX, 'tab:red')):
        ax.axvline(
            limit * 100,
            color=colour,
            linestyle='--',
            linewidth=1,
            label=f'{limit:.0%}')
    ax.set_xlim(0, 105)
    ax.set_xlabel("share of the student's gradient (%): the loss's gradient "
                  "norm / the sum of all losses' norms")
    config = os.path.basename(str(report.get('config', '')))
    ax.set_title(
        f'{config}\n{report["algorithm"]} + {report["distiller"]}, '
        f'{report["data"]}, {report["iters"]} steps at learning rate 0\n'
        'blue: distillation, grey: task, red: warned',
        fontsize=9)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
