"""Local settings of a checkout: .env read by every command, dev tokens tied to the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, update

from outbox.models import ApiToken
from outbox.tokens import hash_token
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import devenv

QA_OPS = str(Path(sys.executable).parent / "qa-ops")


def test_qa_ops_reads_the_settings_from_dot_env(services: dict[str, str], tmp_path: Path) -> None:
    user = f"envfile-{uuid.uuid4().hex[:6]}"
    (tmp_path / ".env").write_text(f"QA_DATABASE_URL={services['QA_DATABASE_URL']}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    created = subprocess.run(
        [QA_OPS, "tokens", "create", "--user", user], cwd=tmp_path, env=env, capture_output=True
    )
    assert created.returncode == 0, created.stderr
    listed = subprocess.run(
        [QA_OPS, "tokens", "list", "--user", user, "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert [r["user_name"] for r in json.loads(listed.stdout)] == [user]
    # Without the file the default database is used, which has no such user.
    (tmp_path / ".env").unlink()
    other = subprocess.run(
        [QA_OPS, "tokens", "list", "--user", user, "--json"],
        cwd=tmp_path,
        env={**env, "QA_DATABASE_URL": services["QA_DATABASE_URL"] + "_missing"},
        capture_output=True,
        text=True,
    )
    assert other.returncode == 1 and "database" in other.stderr


def test_save_env_merges_the_environment_into_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ".env"
    path.write_text("# old\nQA_API_PORT=9000\nQA_LOG_LEVEL=DEBUG\nOTHER=1\n")
    for key in [k for k in os.environ if k.startswith("QA_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("QA_API_PORT", "9001")
    saved = devenv.save_env(path)
    assert saved == {"QA_API_PORT": "9001", "QA_LOG_LEVEL": "DEBUG"}
    assert devenv.read_env(path) == saved
    assert path.stat().st_mode & 0o077 == 0


def test_dev_token_is_reused_while_it_works_and_recreated_when_not(
    db: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "dev-token"
    first = devenv.dev_token(path, "dev", "writer")
    assert devenv.dev_token(path, "dev", "writer") == first
    # A token from another database (here: unknown to this one) is replaced.
    path.write_text("qa_from-another-database\n")
    second = devenv.dev_token(path, "dev", "writer")
    assert second not in (first, "qa_from-another-database")
    with db.begin() as conn:
        conn.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == hash_token(second))
            .values(revoked_at=func.now())
        )
    third = devenv.dev_token(path, "dev", "writer")
    assert third != second and path.read_text().strip() == third
    # A writer token never stands in for the operator token.
    op_path = tmp_path / "op-token"
    op_path.write_text(third)
    assert devenv.dev_token(op_path, "dev-operator", "operator") != third
