"""The interleaving runner's bookkeeping (``benchmarks/compare.py``): run order and ratios.

Plain tests, no database: contestants are coroutine functions returning scripted values.
"""

from __future__ import annotations

from typing import Any

import anyio

from benchmarks import compare


def scripted(name: str, values: list[Any], calls: list[str]) -> compare.Measure:
    """A contestant returning ``values`` in turn and noting each call in ``calls``."""
    remaining = list(values)

    async def measure() -> Any:
        calls.append(name)
        return remaining.pop(0)

    return measure


def run(figure: str, contestants: dict[str, compare.Measure], pairs: int) -> dict[str, Any]:
    lines: list[str] = []

    async def main() -> dict[str, Any]:
        return await compare.interleave(figure, contestants, pairs, "pg ", lines.append)

    summary: dict[str, Any] = anyio.run(main)
    assert len(lines) == pairs * len(contestants)
    assert all(line.startswith(f"  pg {figure} [") for line in lines)
    return summary


def test_order_alternates_every_pair() -> None:
    calls: list[str] = []
    contestants = {
        "flowq": scripted("flowq", [1.0, 1.0, 1.0], calls),
        "a": scripted("a", [1.0, 1.0, 1.0], calls),
        "b": scripted("b", [1.0, 1.0, 1.0], calls),
    }
    run("process_c10", contestants, 3)
    assert calls == ["flowq", "a", "b", "b", "a", "flowq", "flowq", "a", "b"]


def test_throughput_ratio_is_flowq_over_peer_per_pair() -> None:
    calls: list[str] = []
    summary = run(
        "process_c10",
        {
            "flowq": scripted("flowq", [200.0, 300.0, 100.0], calls),
            "peer": scripted("peer", [100.0, 100.0, 100.0], calls),
        },
        3,
    )
    assert summary["flowq"]["median"] == 200.0
    assert summary["peer"]["ratio"]["pairs"] == [2.0, 3.0, 1.0]
    assert summary["peer"]["ratio"]["median"] == 2.0
    assert (summary["peer"]["ratio"]["min"], summary["peer"]["ratio"]["max"]) == (1.0, 3.0)


def test_time_ratio_is_peer_over_flowq_on_the_p50() -> None:
    calls: list[str] = []
    flowq_runs = [{"p50_ms": 2.0, "p95_ms": 4.0}, {"p50_ms": 4.0, "p95_ms": 8.0}]
    peer_runs = [{"p50_ms": 3.0, "p95_ms": 3.0}, {"p50_ms": 2.0, "p95_ms": 2.0}]
    summary = run(
        "latency_other_process",
        {"flowq": scripted("flowq", flowq_runs, calls), "peer": scripted("peer", peer_runs, calls)},
        2,
    )
    assert summary["peer"]["ratio"]["pairs"] == [1.5, 0.5]
    assert summary["flowq"]["median"] == {"p50_ms": 3.0, "p95_ms": 6.0}
    step = run(
        "step_ms",
        {"flowq": scripted("flowq", [0.5], calls), "peer": scripted("peer", [1.0], calls)},
        1,
    )
    assert step["peer"]["ratio"]["median"] == 2.0


def test_table_shows_flowq_only_figures_and_one_line_per_peer() -> None:
    calls: list[str] = []
    figures = {
        "raw_commit": run("raw_commit", {"flowq": scripted("flowq", [500.0], calls)}, 1),
        "process_c10": run(
            "process_c10",
            {
                "flowq": scripted("flowq", [1000.0], calls),
                "pgqueuer": scripted("pgqueuer", [500.0], calls),
                "procrastinate": scripted("procrastinate", [250.0], calls),
            },
            1,
        ),
    }
    lines = compare.table("postgres", figures, 1).splitlines()
    assert lines[2].split() == ["raw_commit", "commits/s", "500"]
    assert lines[3].split() == [
        "process_c10",
        "jobs/s",
        "1,000",
        "pgqueuer",
        "500",
        "2.00",
        "2.00-2.00",
    ]
    assert lines[4].split()[3:6] == ["procrastinate", "250", "4.00"]
