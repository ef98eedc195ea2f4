"""Database loss: 503 with ``Retry-After`` and a request id, never a traceback; recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from outbox.settings import Settings
from tests.integration.test_api_helpers import make_user, question_payload, running
from tests.support.tcpproxy import TcpProxy


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with TcpProxy(5432) as p:
        yield p


@pytest.fixture
def proxied(settings: Settings, proxy: TcpProxy) -> Settings:
    """Settings whose database (and so feed database) goes through the proxy."""
    url = make_url(settings.database_url.get_secret_value()).set(port=proxy.port)
    return settings.model_copy(
        update={"database_url": SecretStr(url.render_as_string(hide_password=False))}
    )


def _assert_clean_503(response: object) -> None:
    assert response.status_code == 503, response.text  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert int(headers["Retry-After"]) > 0
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"detail", "request_id"}
    assert body["request_id"] == headers["X-Request-ID"]
    for leak in ("Traceback", "psycopg", "127.0.0.1", "SELECT", "connection"):
        assert leak not in response.text  # type: ignore[attr-defined]


async def test_blocked_database_gives_503_then_recovers(
    proxied: Settings, proxy: TcpProxy, db: Engine
) -> None:
    user = make_user(db)
    async with running(proxied) as client:
        assert (await client.get("/readyz")).status_code == 200
        ok = await client.post("/questions", json=question_payload(), headers=user.headers)
        assert ok.status_code == 201  # pooled connections are open through the proxy

        proxy.block()  # existing connections reset, new ones refused
        write = await client.post("/questions", json=question_payload(), headers=user.headers)
        read = await client.get(f"/questions/{ok.json()['id']}")
        feed = await client.get("/feed")
        ready = await client.get("/readyz")

        for response in (write, read, feed):
            _assert_clean_503(response)
        assert ready.status_code == 503 and ready.headers["Retry-After"]
        assert (await client.get("/healthz")).status_code == 200  # liveness is not readiness
        metrics = (await client.get("/metrics")).text
        assert 'route="/questions",status="503"' in metrics

        # The feed's own pool (lean path) labels its 503 like any route.
        assert 'route="/feed",status="503"' in metrics

        proxy.unblock()
        again = await client.post("/questions", json=question_payload(), headers=user.headers)
        assert again.status_code == 201
        assert (await client.get("/readyz")).status_code == 200
        # The feed pool drops its broken connections and reconnects on its own; a stale
        # connection may cost one more 503 each, never a hang.
        for _ in range(200):
            feed = await client.get("/feed")
            if feed.status_code == 200:
                break
            _assert_clean_503(feed)
            await asyncio.sleep(0.1)
        assert feed.status_code == 200, "the feed did not recover after the database did"


async def test_request_id_of_a_503_is_in_the_log(
    proxied: Settings, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.block()
    async with running(proxied) as client:
        response = await client.get("/feed", headers={"X-Request-ID": "trace-me-503"})
    _assert_clean_503(response)
    assert response.headers["X-Request-ID"] == "trace-me-503"
    assert any("trace-me-503" in record.getMessage() for record in caplog.records)


async def test_feed_database_loss_does_not_stop_writes(
    settings: Settings, proxy: TcpProxy, db: Engine
) -> None:
    """With QA_FEED_DATABASE_URL set, the feed has its own engine and readiness entry."""
    url = make_url(settings.database_url.get_secret_value()).set(port=proxy.port)
    split = settings.model_copy(
        update={"feed_database_url": SecretStr(url.render_as_string(hide_password=False))}
    )
    user = make_user(db)
    async with running(split) as client:
        assert (await client.get("/readyz")).json()["checked"] == ["database", "feed"]
        proxy.block()
        _assert_clean_503(await client.get("/feed"))
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["failed"] == ["feed"]
        write = await client.post("/questions", json=question_payload(), headers=user.headers)
        assert write.status_code == 201
