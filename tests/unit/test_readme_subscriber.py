"""README's "Subscribe to events" code is the code the foreign-subscriber test runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_subscriber_code_is_verbatim_from_the_example() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Subscribe to events", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    example = (ROOT / "examples/foreign_subscriber.py").read_text()
    for block in code.group(1).strip().split("\n\n\n"):
        assert block.strip() in example, block[:80]
