"""The image contains every package pyproject.toml installs (a missing COPY breaks a command
inside docker-compose only, where no other test looks)."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import ROOT


def test_every_installed_package_is_copied_into_the_image() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {
        p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
