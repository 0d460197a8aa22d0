"""Interleaved measurement of flowq and its peers, and the ratios reported from it.

For each figure, every contestant (flowq first, then each peer measuring that figure) is
run once per *pair*, the order reversed every other pair (flowq, peers...; peers...,
flowq; ...) so that a drift of the machine over the figure's runs falls on both sides.
Each run starts on a fresh database (the contestant's coroutine function sees to that).

Reported per figure: each contestant's median over the pairs, and for each peer the
median of the per-pair ratios with their min and max. A ratio above 1 means flowq did
better: flowq / peer for throughputs, peer / flowq for times (latency p50, ms per step).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from typing import Any

Measure = Callable[[], Awaitable[Any]]
"""One run of one figure for one contestant, on a fresh database: a number, or a latency
summary (``{"p50_ms", "p95_ms", "max_ms"}``)."""

LOWER_IS_BETTER = {
    "latency_same_process",
    "latency_other_process",
    "step_ms",
    "replay_1000_ms",
    "replay_1000_handler_ms",
}
"""Figures that are times; every other figure is a rate (higher is better)."""

UNITS = {
    "raw_commit": "commits/s",
    "latency_same_process": "ms p50",
    "latency_other_process": "ms p50",
    "step_ms": "ms/step",
    "replay_1000_ms": "ms",
    "replay_1000_handler_ms": "ms",
    "workflows_3step_c10": "workflows/s",
}


def headline(value: Any) -> float:
    """The number a run is compared on: itself, or a latency summary's p50."""
    if isinstance(value, dict):
        return float(value["p50_ms"])
    return float(value)


def median_value(runs: list[Any]) -> Any:
    """The median of runs: of each statistic for latency summaries."""
    if runs and isinstance(runs[0], dict):
        return {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return statistics.median(runs)


def ratio(figure: str, flowq: Any, peer: Any) -> float:
    """flowq's advantage in one pair: above 1 means flowq did better."""
    ours, theirs = headline(flowq), headline(peer)
    return theirs / ours if figure in LOWER_IS_BETTER else ours / theirs


async def interleave(
    figure: str,
    contestants: dict[str, Measure],
    pairs: int,
    label: str = "",
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every contestant ``pairs`` times, alternating the order; summarise.

    Returns ``{"flowq": {"median", "runs"}, peer: {"median", "runs", "ratio": {"median",
    "min", "max", "pairs"}}, ...}`` (the first contestant is the reference, flowq).
    ``label`` prefixes the progress lines given to ``report`` (e.g. the database).
    """
    names = list(contestants)
    runs: dict[str, list[Any]] = {name: [] for name in names}
    for pair in range(pairs):
        order = names if pair % 2 == 0 else names[::-1]
        for name in order:
            value = await contestants[name]()
            runs[name].append(value)
            report(f"  {label}{figure} [{pair + 1}/{pairs}] {name}: {_short(value)}")
    reference = names[0]
    summary: dict[str, Any] = {}
    for name in names:
        entry: dict[str, Any] = {"median": median_value(runs[name]), "runs": runs[name]}
        if name != reference:
            per_pair = [
                ratio(figure, ours, theirs)
                for ours, theirs in zip(runs[reference], runs[name], strict=True)
            ]
            entry["ratio"] = {
                "median": statistics.median(per_pair),
                "min": min(per_pair),
                "max": max(per_pair),
                "pairs": per_pair,
            }
        summary[name] = entry
    return summary


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {number:.2f}" for key, number in value.items())
    return f"{value:,.3f}" if value < 100 else f"{value:,.0f}"


def _cell(value: Any) -> str:
    number = headline(value)
    return f"{number:,.3f}" if number < 100 else f"{number:,.0f}"


def table(kind: str, figures: dict[str, dict[str, Any]], pairs: int) -> str:
    """One line per figure and peer: medians, and the ratio's median (min-max)."""
    lines = [
        f"{kind}: medians of {pairs} interleaved pair(s); ratio > 1 means flowq is better",
        f"{'figure':<24}{'unit':<13}{'flowq':>10}  {'peer':<14}{'peer':>10}"
        f"{'ratio':>8}  {'min-max':<12}",
    ]
    for figure, entries in figures.items():
        unit = UNITS.get(figure, "jobs/s")
        ours = _cell(entries["flowq"]["median"])
        peers = [name for name in entries if name != "flowq"]
        if not peers:
            lines.append(f"{figure:<24}{unit:<13}{ours:>10}")
        for peer in peers:
            entry = entries[peer]
            spread = f"{entry['ratio']['min']:.2f}-{entry['ratio']['max']:.2f}"
            lines.append(
                f"{figure:<24}{unit:<13}{ours:>10}  {peer:<14}{_cell(entry['median']):>10}"
                f"{entry['ratio']['median']:>8.2f}  {spread:<12}"
            )
    return "\n".join(lines)
