"""The AsyncAPI document: valid AsyncAPI 3.0, in step with the models, written to docs/."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from ops.cli import app
from outbox.asyncapi import document, message_id, render
from outbox.events import EVENT_SCHEMAS

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL_SCHEMA = ROOT / "tests/support/asyncapi/asyncapi-3.0.0.schema.json.gz"


def _official() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(gzip.decompress(OFFICIAL_SCHEMA.read_bytes()))
    return loaded


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_document_is_valid_asyncapi_3() -> None:
    schema = _official()
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document()), key=str)
    assert not errors, "\n".join(e.message for e in errors[:5])


def test_the_official_schema_catches_a_broken_document() -> None:
    """The check can fail: a document with a wrong AMQP binding is rejected."""
    doc = document()
    doc["channels"]["answerCreated"]["bindings"]["amqp"]["exchange"]["type"] = "queue-ish"
    assert list(jsonschema.Draft7Validator(_official()).iter_errors(doc))


def test_committed_document_matches_the_models() -> None:
    assert (ROOT / "docs/asyncapi.json").read_bytes() == render(), (
        "docs/asyncapi.json is stale: run `qa-ops asyncapi write`"
    )


def test_every_ref_resolves() -> None:
    doc = document()

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return own + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        assert _resolve(doc, ref) is not None, ref


@pytest.mark.parametrize(("event_type", "version"), sorted(EVENT_SCHEMAS))
def test_one_message_per_type_and_version_with_the_model_schema(
    event_type: str, version: int
) -> None:
    doc = document()
    mid = message_id(event_type, version)
    channel = next(c for c in doc["channels"].values() if c["address"] == event_type)
    assert mid in channel["messages"]
    payload = _resolve(doc, doc["components"]["messages"][mid]["payload"]["$ref"])
    assert payload["properties"]["type"]["const"] == event_type
    assert payload["properties"]["version"]["const"] == version
    data = _resolve(doc, payload["properties"]["data"]["$ref"])
    model = EVENT_SCHEMAS[(event_type, version)]
    assert set(data["properties"]) == set(model.model_fields)
    assert set(data["required"]) == {n for n, f in model.model_fields.items() if f.is_required()}


def test_payload_schema_accepts_a_real_event_and_rejects_a_bad_one() -> None:
    """The generated JSON Schema says what decode() says, on a real envelope."""
    import uuid
    from datetime import UTC, datetime

    from outbox.events import AnswerCreatedV2, QuestionState, new_envelope

    qid = uuid.uuid4()
    data = AnswerCreatedV2(
        answer_id=uuid.uuid4(),
        question=QuestionState(id=qid, title="T", subject="math", grade=3),
        author="a",
        created_at=datetime.now(UTC),
    )
    body = json.loads(
        new_envelope("answer.created", "question", qid, data, 2, sequence=4).to_bytes()
    )
    doc = document()
    schema = {
        **doc["components"]["schemas"]["answerCreatedV2Envelope"],
        "components": doc["components"],
    }
    # Resolve "#/components/..." against a root holding the components.
    validator = jsonschema.Draft202012Validator(schema)
    assert not list(validator.iter_errors(body))
    body["data"]["question"]["grade"] = 13
    assert list(validator.iter_errors(body))


def test_qa_ops_asyncapi_write_and_check(tmp_path: Path) -> None:
    runner = CliRunner()
    target = tmp_path / "asyncapi.json"
    assert runner.invoke(app, ["asyncapi", "check", "--path", str(target)]).exit_code == 1
    assert runner.invoke(app, ["asyncapi", "write", "--path", str(target)]).exit_code == 0
    assert target.read_bytes() == render()
    assert runner.invoke(app, ["asyncapi", "check", "--path", str(target)]).exit_code == 0
    target.write_bytes(render().replace(b'"3.0.0"', b'"3.0.1"', 1))
    assert runner.invoke(app, ["asyncapi", "check", "--path", str(target)]).exit_code == 1
