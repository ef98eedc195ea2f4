"""Claim cost: the relay's own claim query timed on an empty outbox, a small backlog, a
large (1M rows; 100k with ``--quick``) pending backlog, and a large table of published
rows not yet purged by retention (what steady load leaves behind), and a large backlog
90% marked published but not yet vacuumed (the state in the middle of a drain).

Each claim runs inside a transaction that is rolled back, so every repetition sees the
same rows. The median of the repetitions is compared: "flat" means the large backlog
costs at most twice the small one. The backlog gauge query of the relay is timed too
(it is not on the claim path, but it runs periodically and scales with the backlog).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from bench.env import BenchEnv
from bench.stats import percentile

try:  # the relay's real SQL; a copy only if the relay is not there yet
    from relay.store import BACKLOG_SQL, CLAIM_SQL
except ImportError:  # pragma: no cover
    CLAIM_SQL = """
    SELECT id, event_id, event_type, exchange, routing_key, body, headers, created_at
    FROM qa.outbox WHERE published_at IS NULL AND next_attempt_at <= now()
    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
    """
    BACKLOG_SQL = "SELECT count(*) FROM qa.outbox WHERE published_at IS NULL"

FILL_SQL = """
INSERT INTO qa.outbox (event_id, event_type, aggregate_type, aggregate_id, routing_key, body,
                       published_at)
SELECT gen_random_uuid(), 'answer.created', 'question', 'q' || (g %% 5000), 'answer.created',
       %s::bytea, CASE WHEN %s THEN now() END
FROM generate_series(1, %s) AS g
"""


def _fill(conn: psycopg.Connection[Any], body: bytes, rows: int, published: bool) -> None:
    conn.execute(FILL_SQL, (body, published, rows))
    conn.execute("VACUUM ANALYZE qa.outbox")


def _time(
    conn: psycopg.Connection[Any], sql: str, args: tuple[Any, ...], reps: int
) -> dict[str, float]:
    samples = []
    got = 0
    for _ in range(reps):
        conn.execute("BEGIN")
        began = time.perf_counter()
        got = len(conn.execute(sql, args).fetchall())
        samples.append((time.perf_counter() - began) * 1000)
        conn.execute("ROLLBACK")
    return {
        "median_ms": percentile(samples, 50),
        "p99_ms": percentile(samples, 99),
        "rows": float(got),
    }


def _explain(conn: psycopg.Connection[Any], limit: int) -> str:
    conn.execute("BEGIN")
    plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + CLAIM_SQL, (limit,)).fetchall()
    conn.execute("ROLLBACK")
    return "\n".join(str(r[0]) for r in plan)


def _measure(conn: psycopg.Connection[Any], limit: int, reps: int) -> dict[str, Any]:
    result: dict[str, Any] = _time(conn, CLAIM_SQL, (limit,), reps)
    result["backlog_query"] = _time(conn, BACKLOG_SQL, (), max(3, reps // 10))
    result["plan"] = _explain(conn, limit)
    return result


def run(env: BenchEnv, quick: bool, batch_size: int) -> dict[str, Any]:
    big = 100_000 if quick else 1_000_000
    reps = 30 if quick else 100
    small = batch_size * 2
    from bench.envelopes import sample_answer_body

    body = sample_answer_body()
    scenarios: dict[str, Any] = {}
    env.reset_tables()
    with psycopg.connect(env.dsn, autocommit=True) as conn:
        scenarios["empty"] = _measure(conn, batch_size, reps)
        _fill(conn, body, small, published=False)
        scenarios["small_backlog"] = _measure(conn, batch_size, reps)
        _fill(conn, body, big, published=False)
        scenarios["large_backlog"] = _measure(conn, batch_size, reps)
        # Mid-drain: 90% of the backlog marked published and not vacuumed yet, so the
        # pending index still holds their dead entries in front of the live ones.
        conn.execute(
            "UPDATE qa.outbox SET published_at = now() WHERE id <= (SELECT max(id) * 0.9"
            " FROM qa.outbox)"
        )
        scenarios["large_backlog_90pct_marked_unvacuumed"] = _measure(conn, batch_size, reps)
        conn.execute("TRUNCATE qa.outbox")
        _fill(conn, body, big, published=True)
        _fill(conn, body, small, published=False)
        scenarios["large_published_small_backlog"] = _measure(conn, batch_size, reps)
    env.reset_tables()
    base = scenarios["small_backlog"]["median_ms"]
    return {
        "batch_size": batch_size,
        "large_rows": big,
        "repetitions": reps,
        "scenarios": scenarios,
        "ratio_large_to_small": scenarios["large_backlog"]["median_ms"] / base,
        "ratio_published_to_small": scenarios["large_published_small_backlog"]["median_ms"] / base,
    }
