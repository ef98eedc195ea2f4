"""The summary table (each figure with its ceiling, ratio, target and verdict) and the
JSON result file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.stats import Target, ratio, verdict

_PART_OF = {"ceiling": "ceilings"}
RELAY_TARGET = Target(1.0)  # issue 13: at the best raw strategy, not 0.9 of one window
PEER_TARGET = Target(1.0)
FEED_TARGET = Target(0.8)
API_TARGET = Target(0.9)
P50_TARGET = Target(10.0, at_least=False)
P99_TARGET = Target(50.0, at_least=False)
FLAT_TARGET = Target(2.0, at_least=False)
FEED_READ_TARGET = Target(0.5)
FEED_READ_P99_TARGET = Target(25.0, at_least=False)


@dataclass(frozen=True)
class Line:
    part: str
    figure: str
    value: str
    against: str
    judged: float | None
    target: Target | None

    def as_dict(self) -> dict[str, Any]:
        met = self.target.met(self.judged) if self.target else None
        return {
            "part": self.part,
            "figure": self.figure,
            "value": self.value,
            "against": self.against,
            "judged": self.judged,
            "target": self.target.describe() if self.target else None,
            "verdict": verdict(met) if self.target else "info",
        }


def _get(result: dict[str, Any], *path: str) -> Any:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _fmt(value: float | None, unit: str = "/s", digits: int = 0) -> str:
    return "not measured yet" if value is None else f"{value:,.{digits}f}{unit}"


def lines(result: dict[str, Any]) -> list[Line]:
    """Every figure of a run, in the order the benchmark measures them."""
    pub = _get(result, "ceilings", "publish", "rate")
    con = _get(result, "ceilings", "consume", "rate")
    out = [
        Line("ceiling", "publish with confirms", _fmt(pub), "", None, None),
        Line("ceiling", "consume + ack", _fmt(con), "", None, None),
        Line(
            "ceiling",
            "PG single-row commit (1 conn)",
            _fmt(_get(result, "ceilings", "commit", "rate")),
            "",
            None,
            None,
        ),
        Line(
            "ceiling",
            "PG single-row commit (8 conns)",
            _fmt(_get(result, "ceilings", "commit", "rate_parallel")),
            "",
            None,
            None,
        ),
    ]
    relay = _get(result, "relay_drain", "rate")
    out.append(
        Line(
            "relay",
            "drain of backlog (steady)",
            _fmt(relay),
            f"publish {_fmt(pub)}",
            ratio(relay, pub),
            RELAY_TARGET,
        )
    )
    wall = _get(result, "relay_drain", "wall_rate")
    out.append(Line("relay", "drain incl. process start", _fmt(wall), "", ratio(wall, pub), None))
    out.extend(_relay_extra(result, relay))
    feed = _get(result, "feed_apply", "rate")
    out.append(
        Line(
            "feed",
            "apply of queued events (steady)",
            _fmt(feed),
            f"consume {_fmt(con)}",
            ratio(feed, con),
            FEED_TARGET,
        )
    )
    with_ = _get(result, "api_write", "with_outbox_rps")
    without = _get(result, "api_write", "without_outbox_rps")
    out.append(
        Line(
            "api",
            "answers/s with outbox",
            _fmt(with_),
            f"without {_fmt(without)}",
            ratio(with_, without),
            API_TARGET,
        )
    )
    p50 = _get(result, "latency", "p50_ms_at_500")
    p99 = _get(result, "latency", "p99_ms_at_500")
    best = _get(result, "latency", "max_sustained_rate")
    if best is None and _get(result, "latency", "steps"):
        best = 0.0  # measured, and no offered rate was sustained
    out.append(
        Line("latency", "commit-to-feed p50 @500/s", _fmt(p50, " ms", 1), "", p50, P50_TARGET)
    )
    out.append(
        Line("latency", "commit-to-feed p99 @500/s", _fmt(p99, " ms", 1), "", p99, P99_TARGET)
    )
    out.append(Line("latency", "highest sustained offered rate", _fmt(best), "", None, None))
    small = _get(result, "claim", "scenarios", "small_backlog", "median_ms")
    large = _get(result, "claim", "scenarios", "large_backlog", "median_ms")
    rows = _get(result, "claim", "large_rows")
    out.append(
        Line(
            "claim",
            f"claim median, {rows or '1M'} backlog",
            _fmt(large, " ms", 2),
            f"small backlog {_fmt(small, ' ms', 2)}",
            ratio(large, small),
            FLAT_TARGET,
        )
    )
    published = _get(result, "claim", "scenarios", "large_published_small_backlog", "median_ms")
    out.append(
        Line(
            "claim",
            "claim median, big published table",
            _fmt(published, " ms", 2),
            "",
            ratio(published, small),
            FLAT_TARGET,
        )
    )
    mid = _get(result, "claim", "scenarios", "large_backlog_90pct_marked_unvacuumed", "median_ms")
    out.append(
        Line(
            "claim",
            "claim median, mid-drain (90% marked)",
            _fmt(mid, " ms", 2),
            "",
            ratio(mid, small),
            FLAT_TARGET,
        )
    )
    out.extend(_feed_read_and_cost(result))
    return out


def _relay_extra(result: dict[str, Any], relay: float | None) -> list[Line]:
    """Which raw strategy set the publish ceiling, the batch-frame writer's own figure,
    and the relay against the simplest peer relay (issue 13)."""
    best = _get(result, "ceilings", "publish", "best_strategy")
    aio_name = _get(result, "ceilings", "publish", "best_aio_pika_strategy")
    aio_rate = _get(result, "ceilings", "publish", "best_aio_pika_rate")
    peer = _get(result, "relay_drain", "peer", "rate")
    used = _get(result, "relay_drain", "cpu_us_per_row") or {}
    best_run = _get(result, "ceilings", "publish", "strategies", best or "-") or {}
    cpu_lines = []
    if used:
        cpu_lines.append(
            Line(
                "relay",
                "CPU us/row: relay / its PG backends / broker",
                " / ".join(
                    f"{used.get(k, 0):.0f}" for k in ("relay", "postgres_backends", "broker")
                ),
                "best raw: client {:.0f} / broker {:.0f}".format(
                    best_run.get("client_cpu_us_per_message", 0),
                    best_run.get("broker_cpu_us_per_message", 0),
                ),
                None,
                None,
            )
        )
    return [
        Line("ceiling", f"publish ceiling set by {best or '-'}", "", "", None, None),
        *cpu_lines,
        Line(
            "relay",
            f"drain vs best aio-pika strategy ({aio_name or '-'})",
            _fmt(relay),
            f"{_fmt(aio_rate)}",
            ratio(relay, aio_rate),
            None,
        ),
        Line(
            "relay",
            "drain vs simple peer relay",
            _fmt(relay),
            f"peer {_fmt(peer)}",
            ratio(relay, peer),
            PEER_TARGET,
        ),
        *(
            Line(
                "relay",
                f"drain from COPY, {n} process(es) on 4 shards",
                _fmt(_get(result, "relay_drain", "sharded", n, "rate_from_copy")),
                "",
                None,
                None,
            )
            for n in ("1", "2", "4")
            if _get(result, "relay_drain", "sharded", n) is not None
        ),
    ]


def print_table(result: dict[str, Any], console: Console) -> None:
    table = Table(title="Benchmark (ratios against this machine's ceilings, same run)")
    for col in ("part", "figure", "value", "against", "ratio", "target", "verdict"):
        table.add_column(col)
    ran = set(result.get("status", {}))
    for line in lines(result):
        if ran and _PART_OF.get(line.part, line.part) not in ran:
            continue  # not selected with --only
        row = line.as_dict()
        judged = line.judged
        shown = "" if judged is None else (f"{judged:.2f}" if line.part != "latency" else "")
        style = {"MET": "green", "NOT MET": "red"}.get(row["verdict"], "")
        table.add_row(
            line.part,
            line.figure,
            line.value,
            line.against,
            shown,
            row["target"] or "",
            f"[{style}]{row['verdict']}[/]" if style else row["verdict"],
        )
    console.print(table)
    loads = result.get("load_average", {})
    if loads:
        shown = ", ".join(f"{k} {v[0]:.1f}" for k, v in loads.items())
        console.print(f"1-minute load average (2 cores = 2.0 busy): {shown}")
    for part, status in result.get("status", {}).items():
        if status != "ok":
            console.print(f"[yellow]{part}: {status}[/]")


def write_json(result: dict[str, Any], path: Path) -> None:
    result["summary"] = [line.as_dict() for line in lines(result)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str))


def _feed_read_and_cost(result: dict[str, Any]) -> list[Line]:
    """Lines of the ``feed-read`` and ``cost`` parts."""
    feed = _get(result, "feed_read", "feed_rps")
    health = _get(result, "feed_read", "healthz_rps")
    p99 = _get(result, "feed_read", "feed_p99_ms")
    api_us = _get(result, "feed_read", "default", "feed", "api_cpu_us_per_request")
    pg_us = _get(result, "feed_read", "default", "feed", "pg_cpu_us_per_request")
    health_us = _get(result, "feed_read", "default", "healthz", "api_cpu_us_per_request")
    per_1000 = _get(result, "cost", "moderate", "total_cpu_s_per_1000_answers")
    best = _get(result, "cost", "max_sustained_rate")
    half_p50 = _get(result, "cost", "p50_ms_at_half_max")
    half_p99 = _get(result, "cost", "p99_ms_at_half_max")
    return [
        Line(
            "feed-read",
            "GET /feed req/s (mix, 16 conns)",
            _fmt(feed),
            f"/healthz {_fmt(health)}",
            ratio(feed, health),
            FEED_READ_TARGET,
        ),
        Line("feed-read", "GET /feed p99", _fmt(p99, " ms", 1), "", p99, FEED_READ_P99_TARGET),
        Line(
            "feed-read",
            "CPU per GET /feed: API / PostgreSQL",
            f"{_fmt(api_us, ' us')} / {_fmt(pg_us, ' us')}",
            f"/healthz API {_fmt(health_us, ' us')}",
            None,
            None,
        ),
        Line("cost", "CPU s per 1,000 answers (all)", _fmt(per_1000, " s", 2), "", None, None),
        Line("cost", "highest sustained rate", _fmt(best), "", None, None),
        Line("cost", "commit-to-feed p50 @ half", _fmt(half_p50, " ms", 1), "", None, None),
        Line("cost", "commit-to-feed p99 @ half", _fmt(half_p99, " ms", 1), "", None, None),
    ]
