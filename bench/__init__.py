"""The project's benchmark: this machine's ceilings first, then the system against them.

Run ``.venv/bin/python -m bench`` (``--quick`` for smaller sizes, ``--only PART`` for one
part). Never part of the CI test run; results go to ``bench/results/`` and are described
in ``docs/BENCHMARKS.md``.
"""
