"""What the live broker has, read through the RabbitMQ management HTTP API.

Used by ``qa-ops topology check``: exchanges, queues (type, arguments, policy), bindings
and user permissions of one vhost, as plain data. Credentials come from
``QA_RABBITMQ_MANAGEMENT_URL`` (``http://user:password@host:15672/``) and are never logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr
from yarl import URL

from outbox.amqp import first_node

TIMEOUT_SECONDS = 10.0


def vhost_of(amqp_url: SecretStr) -> str:
    """The vhost named by an AMQP URL (``/`` when it names none; several nodes: the first's)."""
    path = first_node(amqp_url.get_secret_value()).path
    return path[1:] if len(path) > 1 else "/"


@dataclass
class LiveBroker:
    """One vhost as the management API reports it."""

    vhost: str
    exchanges: dict[str, dict[str, Any]] = field(default_factory=dict)
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    # (source exchange, destination queue) -> routing keys
    bindings: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # user -> {"configure": regex, "write": regex, "read": regex}
    permissions: dict[str, dict[str, str]] = field(default_factory=dict)
    # policy name -> {"pattern", "definition", "apply-to", "priority"}
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)


def read_broker(management_url: SecretStr, vhost: str) -> LiveBroker:
    """Everything :mod:`outbox.topology_check` compares; raises ``httpx.HTTPError``."""
    base = URL(management_url.get_secret_value())
    auth = (base.user or "guest", base.password or "guest")
    api = str(base.with_user(None).with_password(None)).rstrip("/") + "/api"
    v = quote(vhost, safe="")
    with httpx.Client(auth=auth, timeout=TIMEOUT_SECONDS) as client:

        def get(path: str) -> list[dict[str, Any]]:
            response = client.get(f"{api}{path}")
            response.raise_for_status()
            payload = response.json()
            return payload if isinstance(payload, list) else []

        live = LiveBroker(vhost)
        live.exchanges = {e["name"]: e for e in get(f"/exchanges/{v}")}
        live.queues = {q["name"]: q for q in get(f"/queues/{v}")}
        for b in get(f"/bindings/{v}"):
            if b.get("destination_type") == "queue" and b.get("source"):
                key = (b["source"], b["destination"])
                live.bindings.setdefault(key, set()).add(b.get("routing_key", ""))
        live.permissions = {
            p["user"]: {k: p.get(k, "") for k in ("configure", "write", "read")}
            for p in get(f"/vhosts/{v}/permissions")
        }
        live.policies = {p["name"]: p for p in get(f"/policies/{v}")}
    return live
