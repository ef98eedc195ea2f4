"""Schemathesis fuzzes the OpenAPI schema of a real ``qa-api``: no input may cause a 5xx.

CI runs a small budget. The full run (several thousand cases, including NUL bytes, lone
surrogates, huge numbers and deep nesting):

    QA_FUZZ_MAX_EXAMPLES=600 .venv/bin/pytest tests/integration/test_api_fuzz.py

(Keep one schemathesis worker: with ``-w 4`` schemathesis 4.32 hit an internal hypothesis
race once, "AST constructor recursion depth mismatch", a tool error, not an API one.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.integration.test_api_helpers import make_user
from tests.integration.test_api_process import api_process_fixture  # noqa: F401

ST = shutil.which("st", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(ST is None, reason="schemathesis is not installed (pip install -e '.[dev]')")
def test_no_generated_request_causes_a_server_error(
    api_process: tuple[str, subprocess.Popen[bytes]], db: Engine, tmp_path: Path
) -> None:
    base, _ = api_process
    user = make_user(db)
    examples = os.environ.get("QA_FUZZ_MAX_EXAMPLES", "25")
    done = subprocess.run(
        [
            str(ST),
            "run",
            f"{base}/openapi.json",
            "--header",
            f"Authorization: Bearer {user.token}",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            examples,
            "--generation-allow-x00",
            "true",
            "--generation-codec",
            "utf-8",
            "--seed",
            os.environ.get("QA_FUZZ_SEED", "20240301"),
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        timeout=900,
        cwd=tmp_path,
    )
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    assert "No issues found" in output, output[-4000:]
    print(output[-1500:])  # the summary (test cases generated), shown with `pytest -s`
