# Copyright (c) mmakd contributors. All rights reserved.
"""The report as text: the console table and the Markdown page."""
from typing import Any, Dict, List, Optional, Tuple


def _fmt_shape(shape: Any) -> str:
    if not shape:
        return '-'
    if isinstance(shape[0], list):
        return ' '.join('x'.join(map(str, s)) for s in shape)
    return 'x'.join(map(str, shape))


def _stats_txt(stats: Optional[Dict[str, Any]]) -> Tuple[str, str]:
    if not stats:
        return '-', '-'
    return (_fmt_shape(stats['shape']),
            f'{stats["mean"]:.3g} ± {stats["std"]:.3g}')


def _share_txt(share: Optional[float]) -> str:
    return '-' if share is None else f'{share:.1%}'


def _loss_cells(r: Dict[str, Any]) -> Dict[str, str]:
    """The formatted cells of one loss row, for both renderings."""
    s_shape, s_stats = _stats_txt(r.get('student'))
    t_shape, t_stats = _stats_txt(r.get('teacher'))
    cosine = r.get('cosine')
    return dict(
        value=f'{r["value"]:.4g}',
        grad_norm=f'{r["grad_norm"]:.4g}',
        share=_share_txt(r['grad_share']),
        student=f'{s_shape}, {s_stats}' if r.get('student') else '',
        teacher=f'{t_shape}, {t_stats}' if r.get('teacher') else '',
        cosine='-' if cosine is None else f'{cosine:.3f}')


#: The table rows of the console: a distillation loss, a task loss (fields
#: as in :func:`_loss_rows`).
_CONSOLE_ROWS = ('{name:<22}{value:>11}{grad_norm:>11}{share:>8}  '
                 '{student:<40}{teacher:<40}{cosine:>6}',
                 '{name:<22}{value:>11}{grad_norm:>11}{share:>8}')
#: The table rows of the Markdown page.
_MARKDOWN_ROWS = ('| {name} | {r[type]} | {value} | {grad_norm} | {share} | '
                  '{student} | {teacher} | {cosine} |',
                  '| {name} | | {value} | {grad_norm} | {share} | | | |')


def _loss_rows(report: Dict[str, Any], rows: Tuple[str, str]) -> List[str]:
    """The loss table's lines: ``rows[0]`` for each distillation loss, then
    ``rows[1]`` for each task loss, formatted with ``name`` (``task:
    <name>`` for a task loss), the loss's entry ``r`` and its
    :func:`_loss_cells`."""
    loss_row, task_row = rows
    return [
        loss_row.format(name=name, r=r, **_loss_cells(r))
        for name, r in report['losses'].items()
    ] + [
        task_row.format(name='task: ' + name, r=r, **_loss_cells(r))
        for name, r in report['task_losses'].items()
    ]


def _akd_cells(report: Dict[str, Any]) -> List[Tuple[str, str, str, str]]:
    """(loss, Avatar weights, uncertainty, wmax/wmin) of each AKD loss."""
    return [
        (name, ', '.join(f'{w:.3f}' for w in r['akd']['weights']),
         f'{r["akd"]["uncertainty"]:.3g}', f'{r["akd"]["wmax_over_wmin"]:.3f}')
        for name, r in report['losses'].items() if r.get('akd')
    ]


def _random_txt(entry: Dict[str, Any]) -> Tuple[str, str, str]:
    """(config key, what it would have loaded, random module)."""
    key = entry['key'] + (f' (in {entry["file"]})' if entry['file'] else '')
    return key, entry['was'], entry['module'] or '-'


def _random_lines(report: Dict[str, Any]) -> List[str]:
    """The console's list of the weights ``--offline`` left random."""
    if not report.get('offline'):
        return []
    replaced = report.get('random_weights') or []
    if not replaced:
        return ['--offline: nothing to download, no weight left out', '']
    lines = [
        f'--offline: {len(replaced)} downloaded (or missing) weight(s) left '
        "out; these modules have their initialisers' random weights:"
    ]
    for entry in replaced:
        key, was, module = _random_txt(entry)
        lines.append(f'  {module}: {key} = {was}')
    return lines + ['']


def format_report(report: Dict[str, Any]) -> str:
    """The console table: one row per loss, then Avatars and warnings."""
    lines = [
        f'{report["algorithm"]} + {report["distiller"]}, {report["iters"]} '
        f'step(s) at learning rate 0 on {report["data"]} (batch '
        f'{report["batch_size"]}, {report["device"]}); '
        f'teacher forward \'{report["teacher"]["forward"]}\'', ''
    ]
    head = (f'{"loss":<22}{"value":>11}{"grad norm":>11}{"share":>8}  '
            f'{"student (shape, mean ± std)":<40}'
            f'{"teacher (shape, mean ± std)":<40}{"cos":>6}')
    lines += [head, '-' * len(head)]
    lines += _loss_rows(report, _CONSOLE_ROWS)
    for name, weights, u, spread in _akd_cells(report):
        lines.append(f'AKD {name}: weights [{weights}], uncertainty {u}, '
                     f'wmax/wmin {spread} (teacher column: Avatar 1 as the '
                     'loss sees it)')
    lines.append('')
    lines += _random_lines(report)
    if report['warnings']:
        lines.append(f'{len(report["warnings"])} warning(s):')
        for w in report['warnings']:
            lines.append(f'  [{w["kind"]}] {w["message"]}')
    else:
        lines.append('no warnings')
    return '\n'.join(lines)


def markdown_report(report: Dict[str, Any],
                    image: Optional[str] = None) -> str:
    """The report as Markdown (with the gradient-share chart if given)."""
    t = report['teacher']
    lines = [
        '# Distillation report', '',
        f'`{report["config"]}`: {report["algorithm"]} with '
        f'{report["distiller"]}, {report["iters"]} step(s) at learning rate '
        f'0 on {report["data"]} (batch {report["batch_size"]}, '
        f'{report["device"]}). '
        f"Teacher forward '{t['forward']}', teacher checkpoint "
        f'{"loaded" if t["checkpoint_loaded"] else "NOT loaded"}; ' +
        (f'weights from `{report["checkpoint"]}`.'
         if report.get('checkpoint') else 'student as initialised.'), '',
        '| loss | type | value | grad norm | share of the student\'s '
        'gradient | student (shape, mean ± std) | teacher (shape, mean ± '
        'std) | cosine |', '|---|---|---|---|---|---|---|---|'
    ]
    lines += _loss_rows(report, _MARKDOWN_ROWS)
    akd = _akd_cells(report)
    if akd:
        lines += [
            '', '| AKD loss | Avatar weights | uncertainty | wmax / wmin |',
            '|---|---|---|---|'
        ]
        lines += [f'| {" | ".join(row)} |' for row in akd]
        lines += [
            '', 'For AKD losses the teacher column describes the first '
            'Avatar as the loss sees it (after the teacher connector and '
            '`avatars.normalize`).'
        ]
    if image:
        lines += ['', f'![gradient shares]({image})']
    if report.get('offline'):
        lines += ['', '## Random weights (--offline)', '']
        if report.get('random_weights'):
            lines += [
                'Downloaded (or missing) weights left out, each module '
                'keeping its own initialisers\' random weights:', '',
                '| module | config key | would have loaded |', '|---|---|---|'
            ]
            lines += [
                f'| {e["module"] or "-"} | `{e["key"]}`' +
                (f' (in {e["file"]})' if e['file'] else '') +
                f' | {e["was"]} |' for e in report['random_weights']
            ]
        else:
            lines.append('Nothing to download: no weight left out.')
    lines += ['', '## Warnings', '']
    if report['warnings']:
        lines += [
            f'- **{w["kind"]}**' + (f' (`{w["loss"]}`)' if w['loss'] else '') +
            f': {w["message"]}' for w in report['warnings']
        ]
    else:
        lines.append('None.')
    return '\n'.join(lines) + '\n'
