"""When a KPI applies to a run, and when the run is too small for its target: the rules that turn a measured
value into ``pass``, ``FAIL`` or ``n/a: why`` (the reasons are spelled out in ``RULES``, which ``kpi.md``
prints).

Two rules, both from what the KPI code computes:

- **Load.** "70-80% of workers busy *at normal load*" applies only to a run whose offered load was normal: an
  offered utilization (``params["target_utilization"]``, else ``rate_per_s`` x mean service / workers) inside
  that same 70-80% band. "N tasks/min for N workers" cannot be reached by a run offered fewer than N tasks a
  minute, so it does not apply to one.
- **Size.** A target that allows a share of misses (99% availability: 1% failed; a p95: 5% of tasks at or over
  the limit) cannot be told from "no miss at all" by a run too small to tolerate one miss: under 100 questions
  for 99%, under 21 tasks for a p95 (linear interpolation puts the p95 of 20 values between the two largest).
  Such a run passes only with no miss (flagged ``small run``); a single miss is not a failure of the target but
  of the run's size (``n/a``); two or more misses fail it, as they fail a run of the size the target needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["RULES", "load_rule", "min_size", "offered_utilization", "size_rule", "throughput_rule", "tolerated"]

RULES = (
    "**pass** and **FAIL** judge the measured value against the target; **n/a** says why a KPI was not judged.",
    "**Nothing measured**: a KPI without a single sample (no answered task, no register event) is n/a.",
    '**Normal load**: "70-80% of workers busy at normal load" is judged only on a run whose offered load was '
    "itself normal, i.e. an offered utilization inside the 70-80% band (`target_utilization`, else "
    "`rate_per_s` x mean service time / workers); at another load, or an unknown one (closed-loop users), it is n/a.",
    '**Offered rate**: "N tasks/min for N workers" is n/a for a run offered fewer than N tasks a minute: it '
    "could not answer more than it was asked.",
    "**Run size**: a target that allows a share of misses (availability 99%: 1 failed question in 100; a p95: 1 "
    "task in 20 at or over the limit) needs a run large enough to tolerate one miss: 100 questions for 99%, "
    "21 tasks for a p95 (below that, the interpolated p95 lies between the two largest values). A smaller run "
    'passes only with no miss at all, which is stricter than the target (flagged "small run"); a single miss '
    "there is n/a (it may be the share the target allows); two or more misses fail it, as they would fail a run "
    "of the size the target needs.",
)


def tolerated(n: int, share: float, percentile: bool) -> int:
    """How many of ``n`` samples may miss (fail, or reach the limit) while the KPI still passes for sure.

    Availability passes while failures <= share x n. A percentile (by linear interpolation at rank
    (n - 1) x q, ``lab.analysis.stats.percentile``) stays under the limit while every value from the rank's
    ceiling down is under it: n - 1 - ceil((n - 1)(1 - share)) values above may miss.
    """
    if n <= 0:
        return 0
    if percentile:
        rank = (n - 1) * (1 - share)
        return max(0, n - 1 - math.ceil(rank - 1e-9))
    return math.floor(n * share + 1e-9)


def min_size(share: float, percentile: bool) -> int:
    """The smallest run that tolerates one miss (100 questions for 99% availability, 21 tasks for a p95)."""
    n = 1
    while tolerated(n, share, percentile) < 1:
        n += 1
    return n


def size_rule(
    passed: bool | None, n: int, misses: int, share: float, *, percentile: bool, noun: str, miss: str
) -> tuple[bool | None, str]:
    """The verdict (``passed``) and a note, after the run-size rule: a run that tolerates no miss flags its
    pass as a small run, and a single miss in it is no verdict (None) rather than a failure."""
    if passed is None or n <= 0 or tolerated(n, share, percentile) > 0:
        return passed, ""
    need = min_size(share, percentile)
    if misses == 0 or (misses == 1 and passed):
        return passed, f"small run: {n} {noun} allow no {miss} (one is allowed from {need})"
    if misses == 1:
        return None, f"1 {miss} in {n} {noun}: too few to judge (one is allowed from {need})"
    return passed, ""


def _service_mean_s(tasks: Any) -> float:
    import pandas as pd

    answered = tasks[tasks["outcome"] == "answered"]
    held = pd.to_numeric(answered["finished"], errors="coerce") - pd.to_numeric(answered["assigned"], errors="coerce")
    held = held.dropna()
    return float(held.mean()) / 1000 if len(held) else math.nan


def offered_utilization(tasks: Any, workers: int, params: Mapping[str, Any]) -> float:
    """The utilization the run was offered: ``target_utilization``, else ``rate_per_s`` x the measured mean
    service time (finished - assigned) / workers; NaN when neither is known (closed-loop users)."""
    target = params.get("target_utilization")
    if target is not None:
        return float(target)
    rate = params.get("rate_per_s")
    if rate is None or workers < 1:
        return math.nan
    return float(rate) * _service_mean_s(tasks) / workers


def load_rule(passed: bool | None, offered: float, band: tuple[float, float]) -> tuple[bool | None, str]:
    """Utilization's verdict: judged only when the ``offered`` utilization lies in ``band`` (normal load)."""
    low, high = band
    normal = f"normal is {low * 100:.0f}-{high:.0%}"
    if passed is None:
        return None, "nothing measured"
    if math.isnan(offered):
        return None, f"offered load unknown ({normal})"
    if not low <= offered <= high:
        return None, f"offered load {offered:.0%}, not normal ({normal})"
    return passed, ""


def throughput_rule(passed: bool | None, workers: int, params: Mapping[str, Any]) -> tuple[bool | None, str]:
    """Throughput's verdict: not judged for a run offered fewer than ``workers`` tasks a minute."""
    if passed is None:
        return None, "nothing measured"
    rate = params.get("rate_per_s")
    if rate is not None and float(rate) * 60 < workers:
        return None, f"offered {float(rate) * 60:.1f} tasks/min, fewer than the {workers} it asks"
    return passed, ""
