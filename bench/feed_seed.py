"""A realistic feed read model (``feed.questions``) of millions of rows, seeded in SQL.

Distribution, where the design was silent, modelled on a homework Q&A site:

- **subjects** skewed: a few big ones (math about a third of all questions) and a long
  tail (:data:`SUBJECTS`, weights roughly Zipf-like);
- **12 grades**, weighted towards the middle and high-school years (:data:`GRADE_WEIGHTS`);
- **created_at** over two years, denser towards now (the site grows);
- **answered**: the newer a question the likelier it is still open (a question an hour
  old is mostly unanswered, one a week old mostly answered; 10 % never are), 1-6+
  answers with a geometric tail, ``last_answer_at`` after ``created_at``.

One ``INSERT ... SELECT`` from ``generate_series`` (no rows cross the wire), with the
table's indexes dropped during the load and recreated from their own definitions
(``pg_get_indexdef``/``pg_get_constraintdef``) afterwards: building an index once is far
cheaper than maintaining it row by row. ``setseed`` makes the content repeatable.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

SUBJECTS: tuple[tuple[str, int], ...] = (
    ("math", 330),
    ("english", 120),
    ("biology", 80),
    ("history", 70),
    ("physics", 60),
    ("chemistry", 55),
    ("geography", 40),
    ("social-studies", 40),
    ("computers", 30),
    ("spanish", 25),
    ("health", 22),
    ("business", 20),
    ("arts", 18),
    ("french", 15),
    ("law", 12),
    ("music", 10),
    ("german", 8),
    ("advanced-placement", 6),
    ("sat", 5),
    ("latin", 4),
)
GRADE_WEIGHTS: tuple[int, ...] = (2, 3, 4, 5, 7, 9, 11, 12, 13, 13, 11, 10)
SPAN_DAYS = 730

# Each (subject, grade) draw is ``width_bucket`` over the weights' cumulative lower bounds.
_SEED_SQL = """
WITH raw AS (
  SELECT n,
         -- density grows linearly towards now: age = span * (1 - sqrt(u)), in seconds
         %(span)s * 86400.0 * (1 - sqrt(random())) AS age,
         random() * %(subject_total)s AS su, random() * %(grade_total)s AS gu,
         random() AS au, random() AS cu, random() AS lu
  FROM generate_series(1, %(rows)s) AS n
), shaped AS (
  SELECT *,
         -- open questions: P(answered) = 0.9 * (1 - exp(-age / 6 h))
         au < 0.9 * (1 - exp(-least(age / 21600.0, 50))) AS answered
  FROM raw
)
INSERT INTO feed.questions
  (question_id, title, subject, grade, created_at, answer_count, last_answer_at, updated_at)
SELECT gen_random_uuid(),
       'Question ' || n || ': how does this homework problem work?',
       (%(subjects)s::text[])[width_bucket(su, %(subject_lows)s::float8[])],
       width_bucket(gu, %(grade_lows)s::float8[]),
       %(now)s::timestamptz - age * interval '1 second',
       CASE WHEN answered THEN 1 + floor(-ln(1 - cu) * 1.2)::int ELSE 0 END,
       CASE WHEN answered THEN %(now)s::timestamptz - age * lu * interval '1 second' END,
       %(now)s::timestamptz
FROM shaped
"""


def _lows(weights: list[int]) -> list[float]:
    """Lower bound of each weight's bucket: 0, w1, w1+w2, ..."""
    lows, total = [], 0
    for weight in weights:
        lows.append(float(total))
        total += weight
    return lows


_INDEXES_SQL = """
SELECT c.relname, pg_get_indexdef(i.indexrelid), con.conname, pg_get_constraintdef(con.oid)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
WHERE i.indrelid = 'feed.questions'::regclass
"""


def seed(dsn: str, rows: int, now_epoch: float, seed_value: float = 0.42) -> dict[str, Any]:
    """Replace ``feed.questions`` with ``rows`` generated questions; returns timings."""
    began = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        indexes = conn.execute(_INDEXES_SQL).fetchall()
        with conn.transaction():
            conn.execute("TRUNCATE feed.questions")
            for name, _, constraint, _ in indexes:
                if constraint:
                    conn.execute(f'ALTER TABLE feed.questions DROP CONSTRAINT "{constraint}"')
                else:
                    conn.execute(f'DROP INDEX feed."{name}"')
            conn.execute("SELECT setseed(%s)", (seed_value,))
            conn.execute(
                _SEED_SQL,
                {
                    "subjects": [name for name, _ in SUBJECTS],
                    "subject_lows": _lows([w for _, w in SUBJECTS]),
                    "subject_total": sum(w for _, w in SUBJECTS),
                    "grade_lows": _lows(list(GRADE_WEIGHTS)),
                    "grade_total": sum(GRADE_WEIGHTS),
                    "span": SPAN_DAYS,
                    "rows": rows,
                    "now": _iso(now_epoch),
                },
            )
        loaded = time.monotonic()
        conn.execute("SET maintenance_work_mem = '256MB'")
        for _, indexdef, constraint, condef in indexes:
            if constraint:
                conn.execute(f'ALTER TABLE feed.questions ADD CONSTRAINT "{constraint}" {condef}')
            else:
                conn.execute(indexdef)
        indexed = time.monotonic()
        conn.execute("VACUUM ANALYZE feed.questions")
    return {
        "rows": rows,
        "load_seconds": round(loaded - began, 1),
        "index_seconds": round(indexed - loaded, 1),
        "total_seconds": round(time.monotonic() - began, 1),
    }


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(epoch))
