# Copyright (c) mmakd contributors. All rights reserved.
"""The speed and memory targets of a distillation step, checked on results."""
from typing import Any, Dict, List

#: (case, reference, what, limit): the targets of a distillation step.
TARGETS = (
    ('akd_k1', 'base', 'step', 1.02),
    ('akd_k4', 'base', 'step', 1.10),
    ('akd_k4', 'base', 'extra peak memory', 1.05),
    ('akd_k4', 'ours', 'step', 1.08),
    ('akd_k8', 'ours', 'step', 1.12),
    ('akd_k8', 'ours', 'extra peak memory', 1.10),
)
#: ``ours`` against MMRazor's algorithm: at least 1.07x faster than
#: ``SingleTeacherDistill``; against ``FpnTeacherDistill``, which runs the
#: same teacher forward (backbone and neck), not slower beyond 1% of timer
#: noise.
OURS_LIMIT = dict(SingleTeacherDistill=1 / 1.07, FpnTeacherDistill=1.01)


def check_targets(results: Dict[str, Any],
                  base: str = 'SingleTeacherDistill') -> List[Dict[str, Any]]:
    """Each target whose cases were measured, with its ratio and verdict.

    Args:
        results (dict): ``cases`` as the tool writes them.
        base (str): The class of the ``base`` case. Defaults to
            ``'SingleTeacherDistill'``.

    Returns:
        list[dict]: ``case``, ``reference``, ``what``, ``limit``, ``ratio``
        and ``met`` for every target in :data:`TARGETS` and for ``ours``
        and ``ours_fused``.
    """
    out = []
    targets = TARGETS + tuple((ours, 'base', 'step', OURS_LIMIT[base])
                              for ours in ('ours', 'ours_fused'))
    for case, ref, what, limit in targets:
        if case not in results or ref not in results:
            continue
        key = 'peak_mem_mb' if 'memory' in what else 'step_ms_median'
        if key not in results[case] or key not in results[ref]:
            continue
        ratio = results[case][key] / results[ref][key]
        out.append(
            dict(
                case=case,
                reference=ref,
                what=what,
                limit=limit,
                ratio=ratio,
                met=bool(ratio <= limit)))
    return out


def ensemble_vs_avatars(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The step time of K real teachers over that of K Avatars, for every
    K measured both ways.

    Args:
        results (dict): ``cases`` as the tool writes them.

    Returns:
        list[dict]: ``k``, ``ensemble`` (``multi_teacher_kK``), ``avatars``
        (``akd_kK``) and ``ratio`` (their median steps), for K = 2, 4, 8.
    """
    out = []
    for k in (2, 4, 8):
        ens, ava = f'multi_teacher_k{k}', f'akd_k{k}'
        if ens in results and ava in results:
            out.append(
                dict(
                    k=k,
                    ensemble=ens,
                    avatars=ava,
                    ratio=results[ens]['step_ms_median'] /
                    results[ava]['step_ms_median']))
    return out
