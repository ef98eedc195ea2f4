"""A stop is logged once, whichever signals arrive (terminal SIGINT and supervisor SIGTERM)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.procs import spawn


def test_api_logs_one_stop_line_for_sigint_then_sigterm(
    services: dict[str, str], tmp_path: Path
) -> None:
    api = spawn("api", tmp_path, services)
    api.start()
    assert api.pid is not None
    os.kill(api.pid, signal.SIGINT)
    os.kill(api.pid, signal.SIGTERM)
    assert api.terminate() == 0
    assert api.log_count(r"qa-api stopped after") == 1, api.log_tail()
