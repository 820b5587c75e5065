# Copyright (c) mmakd contributors. All rights reserved.
"""The figure of :mod:`mmakd.apis.fused_target`: how far AKD's fused Avatar
target lies from the teacher as ``K`` grows ("Avatar Knowledge
Distillation", Zhang et al., ACM MM 2023, https://arxiv.org/abs/2305.02722;
``docs/akd.md``, "What AKD computes")."""
from typing import Any, Dict, List, Sequence, Tuple

__all__ = ['merge_rows', 'plot_fused_target']

#: (metric, panel, label) of the figure.
_CURVES = (('raw', 0, 'raw'), ('standardized', 0, 'standardised'),
           ('cwd_kl_raw', 1, 'raw'), ('cwd_kl_standardized', 1,
                                      'standardised'))


def merge_rows(reports: Sequence[Dict[str, Any]]
               ) -> Dict[str, List[Dict[str, Any]]]:  # yapf: disable
    """The rows of every report's results, per perturbation, sorted by
    ``K`` (e.g. a run for K <= 32 and one for larger K)."""
    merged: Dict[str, Dict[int, Dict[str, Any]]] = {}
    for report in reports:
        for result in report['results']:
            rows = merged.setdefault(result['perturbation'], {})
            for row in result['rows']:
                rows[row['num_avatars']] = row
    return {
        name: [rows[k] for k in sorted(rows)]
        for name, rows in merged.items()
    }


def plot_fused_target(reports: Sequence[Dict[str, Any]],
                      path: str,
                      perturbations: Sequence[str] = (),
                      title: str = '') -> List[Tuple[str, str, int]]:
    """Draw the distances of the fused target against ``K`` (log-log).

    Left: ``||Abar - T|| / ||T||`` on raw and standardised features, with
    the closed form ``sqrt(sum_k w_k^2 v_k)`` of the raw distance dotted
    where the report has it; right: CWD's mean ``KL(p_T || pbar)``. Each
    point is the mean over the report's draws, with its standard
    deviation as an error bar.

    Args:
        reports (Sequence[dict]): JSON reports of
            ``tools/analysis_tools/fused_target_distance.py``.
        path (str): The image to write (PNG).
        perturbations (Sequence[str]): Which to draw (their names in the
            reports); all by default.
        title (str): The figure's title.

    Returns:
        list[tuple[str, str, int]]: (perturbation, metric, points) drawn.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    merged = merge_rows(reports)
    names = list(perturbations) or list(merged)
    unknown = [n for n in names if n not in merged]
    if unknown:
        raise KeyError(f'no results for {unknown}; the reports hold '
                       f'{sorted(merged)}')
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = []
    for i, name in enumerate(names):
        rows = merged[name]
        ks = [row['num_avatars'] for row in rows]
        color = f'C{i}'
        for metric, panel, label in _CURVES:
            means = [row[metric]['mean'] for row in rows]
            stds = [row[metric]['std'] for row in rows]
            axes[panel].errorbar(
                ks,
                means,
                yerr=stds,
                color=color,
                marker='o' if label == 'raw' else 's',
                linestyle='-' if label == 'raw' else '--',
                markersize=3,
                label=f'{name}, {label}')
            drawn.append((name, metric, len(ks)))
        formula = [(row.get('raw_formula') or {}).get('mean') for row in rows]
        if all(f is not None for f in formula):
            axes[0].plot(ks, formula, color=color, linestyle=':', lw=1)
    axes[0].set_ylabel('||Abar - T|| / ||T||  (dotted: closed form)')
    axes[1].set_ylabel('CWD: mean KL(p_T || pbar), nats')
    for ax in axes:
        ax.set_xscale('log', base=2)
        ax.set_yscale('log')
        ax.set_xlabel('K (Avatars)')
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn
