"""Failure fingerprints: the innermost frame of the project's own code."""

from __future__ import annotations

from outbox.deadletter_groups import NO_FRAME, project_frame, subscriber_of

TB = """Traceback (most recent call last):
  File "/srv/app/consumers/consumer.py", line 88, in handle
    await self._apply(batch)
  File "/srv/app/consumers/feed.py", line 140, in apply_batch
    await conn.execute(stmt)
  File "/venv/lib/python3.11/site-packages/sqlalchemy/engine/base.py", line 1418, in execute
    raise exc
  File "/venv/lib/python3.11/site-packages/consumers/fake.py", line 1, in other
psycopg.OperationalError: boom
"""


def test_innermost_project_frame_skips_installed_packages() -> None:
    assert project_frame(TB) == "consumers/feed.py:apply_batch"


def test_line_numbers_do_not_change_the_fingerprint() -> None:
    assert project_frame(TB.replace("line 140", "line 999")) == project_frame(TB)


def test_no_project_frame_or_no_traceback() -> None:
    assert project_frame(None) == NO_FRAME
    assert project_frame("") == NO_FRAME
    only_lib = '  File "/usr/lib/python3.11/asyncio/tasks.py", line 1, in run\n'
    assert project_frame(only_lib) == NO_FRAME
    assert project_frame("Traceback (most recent call last): ...") == NO_FRAME


def test_subscriber_of_a_consumer_queue() -> None:
    assert subscriber_of("feed.events") == "feed"
    assert subscriber_of("odd") == "odd"
