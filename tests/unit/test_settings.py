"""Settings come from QA_* variables with the design's defaults; secrets stay masked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from outbox.settings import Settings, redact


def test_defaults_match_the_design(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "QA_DATABASE_URL",
        "QA_FEED_DATABASE_URL",
        "QA_AMQP_URL",
        "QA_API_HOST",
        "QA_API_PORT",
    ):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.database_url.get_secret_value() == "postgresql+psycopg://postgres@127.0.0.1:5432/qa"
    assert s.feed_url.get_secret_value() == s.database_url.get_secret_value()
    assert s.amqp_url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/"
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8000)


def test_retry_delays_parse_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QA_RETRY_DELAYS", "0.5, 2,10")
    assert Settings().retry_delays == [0.5, 2.0, 10.0]
    monkeypatch.setenv("QA_RETRY_DELAYS", "1,-1")
    with pytest.raises(ValidationError):
        Settings()


def test_secrets_are_masked() -> None:
    s = Settings(
        database_url="postgresql+psycopg://u:hunter2@db/qa", amqp_url="amqp://u:hunter2@mq:5672/"
    )
    assert "hunter2" not in repr(s)
    assert "hunter2" not in redact(s.database_url)
    assert "hunter2" not in redact(s.amqp_url)
