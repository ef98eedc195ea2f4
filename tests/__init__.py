"""Test suite. Tests never read a checkout's ``.env`` (written by ``./dev.sh run``): they
set their own QA_* variables. Set here, before any test imports ``outbox.settings``."""

import os

os.environ.setdefault("QA_ENV_FILE", "")
