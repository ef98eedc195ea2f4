"""Configuration from ``QA_*`` environment variables (one settings class for every process)."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url


class Settings(BaseSettings):
    """Every tunable of the service. Defaults work on a machine with local services."""

    # `./dev.sh run` writes the QA_* settings it ran with to .env; every command started
    # in the checkout reads it (real environment variables win). QA_ENV_FILE names another
    # file; empty reads none (the test suite).
    model_config = SettingsConfigDict(
        env_prefix="QA_",
        extra="ignore",
        frozen=True,
        env_file=os.environ.get("QA_ENV_FILE", ".env") or None,
        env_file_encoding="utf-8",
    )

    database_url: SecretStr = SecretStr("postgresql+psycopg://postgres@127.0.0.1:5432/qa")
    feed_database_url: SecretStr | None = None
    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_max_body_bytes: int = Field(default=128 * 1024, ge=1024)
    api_feed_max_limit: int = Field(default=100, ge=1)
    # GET /feed pages are served from a per-process cache for at most this long (the
    # feed's bounded staleness; also its Cache-Control max-age). 0 turns the cache off.
    api_feed_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    api_feed_cache_entries: int = Field(default=4096, ge=1)
    # Connections of the feed's own read pool per API process (kept open: prepared
    # statements stay warm).
    api_feed_pool_size: int = Field(default=8, ge=1, le=100)
    # Serve well-formed GET /feed requests on a lean ASGI path (same responses, far less
    # CPU); anything else, and every request when false, goes through FastAPI.
    api_feed_fast_path: bool = True
    # Worker processes of one qa-api (uvicorn workers); 0 = one per CPU core.
    api_workers: int = Field(default=1, ge=0, le=64)
    # Valid tokens are cached this long per API process; a revocation takes effect
    # within it. 0 looks every request up in the database.
    api_token_cache_seconds: float = Field(default=10.0, ge=0)
    # How long an Idempotency-Key's result is kept (a retry after that creates anew).
    # 0 keeps keys forever.
    api_idempotency_retention_seconds: float = Field(default=86400.0, ge=0)

    # Start-up: how long a process keeps trying to reach its services before giving up.
    startup_timeout_seconds: float = Field(default=30.0, ge=0)

    relay_batch_size: int = Field(default=2000, ge=1, le=10_000)
    # Batches in flight at once (claimed, written, awaiting confirms), each in its own
    # transaction on its own connection: while one is being marked and the next claimed,
    # the broker still has a batch to work on. 2 measured as fast as 3 or 4 on a 2-core
    # machine (docs/BENCHMARKS.md); more helps when the broker is far away.
    relay_pipeline_depth: int = Field(default=2, ge=1, le=8)
    relay_poll_interval_seconds: float = Field(default=1.0, gt=0)
    relay_publish_timeout_seconds: float = Field(default=10.0, gt=0)
    relay_lock_key: int = 0x51A0_0B0C
    relay_retention_seconds: float = Field(default=3600.0, ge=0)
    relay_retention_batch: int = Field(default=5000, ge=1)
    # Relay shards: rows are spread by a hash of their aggregate id when written (so every
    # writer - API, qa-ops - must use the same value as the relays); each shard has its
    # own leader. 1 = one leader for everything (the column is then ignored).
    relay_shards: int = Field(default=1, ge=1, le=256)
    # Prometheus /metrics ports; 0 disables the metrics server of that process.
    relay_metrics_port: int = 9101

    consumer_prefetch: int = Field(default=1024, ge=1)
    consumer_batch_size: int = Field(default=256, ge=1)
    # Waiting for more messages only pays off under load; batches also form by themselves
    # from what arrives while the previous batch commits.
    consumer_batch_wait_ms: int = Field(default=1, ge=0)
    consumer_metrics_port: int = 9102
    archiver_metrics_port: int = 9103
    # Delays of the broker-side retry tiers, in seconds, for transient failures.
    retry_delays: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [1.0, 5.0, 30.0, 120.0, 600.0]
    )
    # How many delayed retries an unexpected (unclassified) exception gets.
    unknown_error_retries: int = Field(default=3, ge=0)
    # Broker-side backstop for crash loops (quorum queue x-delivery-limit).
    delivery_limit: int = Field(default=20, ge=1)
    # Quorum queue members at creation (x-quorum-initial-group-size); unset: one per
    # cluster node. Fixed when a queue is created: changing it later makes the declare
    # fail (PRECONDITION_FAILED); grow or shrink existing queues with rabbitmq-queues.
    quorum_initial_group_size: int | None = Field(default=None, ge=1)
    # Every subscriber deletes its inbox rows older than this (0 keeps them forever),
    # at most inbox_retention_batch rows per transaction, every ..._interval_seconds.
    inbox_retention_seconds: float = Field(default=7 * 86400.0, ge=0)
    inbox_retention_batch: int = Field(default=5000, ge=1)
    inbox_retention_interval_seconds: float = Field(default=300.0, gt=0)

    # Email notifier: where mail goes (smtp://[user:password@]host[:port], smtps:// for
    # implicit TLS, ?starttls=1 to upgrade), its From, the SMTP timeout, and how long an
    # answer waits for its question author's user.* event before it counts as "no user".
    notifier_database_url: SecretStr | None = None  # None: QA_DATABASE_URL
    notifier_metrics_port: int = 9104
    smtp_url: SecretStr = SecretStr("smtp://127.0.0.1:1025")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    notifier_from: str = "Q&A notifications <no-reply@qa.localhost>"
    notifier_unknown_user_wait_seconds: float = Field(default=600.0, ge=0)

    # Operators' console (`qa-console`, `qa-ops console`): localhost only by default.
    console_host: str = "127.0.0.1"
    console_port: int = 8081
    console_session_hours: float = Field(default=8.0, gt=0)
    # RabbitMQ management HTTP API (topology check; console). Default: the AMQP host,
    # port 15672, the AMQP user and password; its vhost is QA_AMQP_URL's.
    rabbitmq_management_url: SecretStr = SecretStr("")

    # Event loop of every long-running command (relay, subscribers, archiver, and the API
    # through uvicorn): uvloop (libuv) by default, measured ~30-40 % less CPU per message
    # than asyncio's own loop in the relay; "asyncio" is the fallback if a platform or
    # library misbehaves with it.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    log_level: str = "INFO"
    # text for people at a terminal, json (one object per line) for log collectors.
    log_format: Literal["text", "json"] = "text"
    # One log line per API request (method, route template, status, duration, request id).
    api_access_log: bool = True

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _parse_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [float(part) for part in value.replace(" ", "").split(",") if part]
        return value

    @field_validator("retry_delays")
    @classmethod
    def _positive_delays(cls, value: list[float]) -> list[float]:
        if any(delay <= 0 for delay in value):
            raise ValueError("retry delays must be positive seconds")
        return value

    @model_validator(mode="after")
    def _derive_management_url(self) -> Settings:
        if not self.rabbitmq_management_url.get_secret_value():
            object.__setattr__(
                self, "rabbitmq_management_url", SecretStr(management_url_for(self.amqp_url))
            )
        return self

    @property
    def feed_url(self) -> SecretStr:
        """The database holding the feed read model and its inbox."""
        return self.feed_database_url or self.database_url


def redact(url: str | SecretStr) -> str:
    """A URL safe to log: the password is masked."""
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    if raw.startswith("amqp"):
        from outbox.amqp import redact_nodes

        return redact_nodes(raw)
    return make_url(raw).render_as_string(hide_password=True)


def management_url_for(amqp_url: SecretStr) -> str:
    """``http://user:password@host:15672/`` for the (first) broker node of ``amqp_url``."""
    from yarl import URL

    from outbox.amqp import first_node

    amqp = first_node(amqp_url.get_secret_value())
    return str(
        URL.build(
            scheme="https" if amqp.scheme == "amqps" else "http",
            user=amqp.user or "guest",
            password=amqp.password or "guest",
            host=amqp.host or "127.0.0.1",
            port=15672,
            path="/",
        )
    )
