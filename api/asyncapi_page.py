"""``GET /asyncapi``: the AsyncAPI document as one readable HTML page (no scripts, no CDN).

Rendered on the server from the same document ``GET /asyncapi.json`` serves: per event
type its routing key and AMQP bindings, per version a table of the envelope and ``data``
fields (type, required, constraints, description), and the headers retries and dead
letters add. Every value from the document is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
line-height:1.45;color:#222}code{background:#f3f3f3;padding:0 .2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f6f6}.deprecated{color:#8a5a00}h2{border-top:2px solid #ddd;padding-top:1rem}
"""

_CONSTRAINTS = ("format", "const", "enum", "minimum", "maximum", "minLength", "maxLength")


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _type_of(doc: dict[str, Any], schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_type_of(doc, _resolve(doc, s)) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type_of(doc, _resolve(doc, schema.get('items', {})))}"
    return str(schema.get("type", "object"))


def _constraints(schema: dict[str, Any]) -> str:
    parts = [f"{key}: {schema[key]}" for key in _CONSTRAINTS if key in schema]
    if "pattern" in schema:
        parts.append(f"pattern: {schema['pattern']}")
    for option in schema.get("anyOf", []):
        parts += [f"{key}: {option[key]}" for key in _CONSTRAINTS if key in option]
    return "; ".join(parts)


def _rows(doc: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    rows: list[str] = []
    required = set(schema.get("required", []))
    for name, raw in schema.get("properties", {}).items():
        field = _resolve(doc, raw)
        path = f"{prefix}{name}"
        rows.append(
            "<tr>"
            f"<td><code>{escape(path)}</code></td>"
            f"<td>{escape(_type_of(doc, field))}</td>"
            f"<td>{'yes' if name in required else 'no'}</td>"
            f"<td>{escape(_constraints(field))}</td>"
            f"<td>{escape(str(field.get('description', raw.get('description', ''))))}</td>"
            "</tr>"
        )
        if "properties" in field:
            rows += _rows(doc, field, f"{path}.")
    return rows


def _table(rows: list[str]) -> str:
    columns = ("field", "type", "required", "constraints", "description")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _message(doc: dict[str, Any], message: dict[str, Any]) -> str:
    payload = _resolve(doc, message["payload"])
    deprecated = message.get("deprecated", False)
    title = escape(message["title"]) + (" (deprecated)" if deprecated else "")
    amqp = message.get("bindings", {}).get("amqp", {})
    return (
        f"<h3{' class=deprecated' if deprecated else ''}>{title}</h3>"
        f"<p>{escape(message.get('description', '')).replace(chr(10) * 2, '</p><p>')}</p>"
        f"<p>AMQP: type <code>{escape(str(amqp.get('messageType', '')))}</code>, "
        f"content type <code>{escape(message.get('contentType', ''))}</code>, "
        f"content encoding <code>{escape(str(amqp.get('contentEncoding', '')))}</code></p>"
        + _table(_rows(doc, payload))
    )


def render_page(doc: dict[str, Any]) -> str:
    """The whole page for the AsyncAPI document ``doc``."""
    info = doc["info"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{escape(info['title'])}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info['title'])}</h1>",
        f"<p>AsyncAPI {escape(doc['asyncapi'])}, contract version "
        f"{escape(info['version'])}; machine-readable: <a href=/asyncapi.json>/asyncapi.json</a>"
        "</p>",
        "".join(f"<p>{escape(p)}</p>" for p in info["description"].split("\n\n")),
    ]
    for server_id, server in doc["servers"].items():
        parts.append(
            f"<p>Server <code>{escape(server_id)}</code>: {escape(server['protocol'])} "
            f"{escape(server.get('protocolVersion', ''))} at <code>{escape(server['host'])}</code>"
            f" - {escape(server.get('description', ''))}</p>"
        )
    for channel in doc["channels"].values():
        exchange = channel["bindings"]["amqp"]["exchange"]
        parts.append(
            f"<h2 id={escape(channel['address'])}>{escape(channel['address'])}</h2>"
            f"<p>Routing key <code>{escape(channel['address'])}</code> on the "
            f"{escape(exchange['type'])} exchange <code>{escape(exchange['name'])}</code> "
            f"(durable: {str(exchange['durable']).lower()}).</p>"
        )
        for ref in channel["messages"].values():
            parts.append(_message(doc, _resolve(doc, ref)))
    headers = _resolve(doc, next(iter(doc["components"]["messages"].values()))["headers"])
    parts += [
        "<h2>Headers of retries and dead letters</h2>",
        f"<p>{escape(headers.get('description', ''))}</p>",
        _table(_rows(doc, headers)),
        "</body></html>",
    ]
    return "".join(parts)
