"""Pure parts of the feed-read and cost benchmark parts: the request mix and CPU trees."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest

from bench import cpu, feed_read, feed_seed


def test_mix_covers_every_filter_combination_once_and_shares_sum_to_one() -> None:
    combos = feed_read.combos()
    keys = [c for c, _ in combos]
    assert len(keys) == len(set(keys)) == 21 * 13 * 3
    assert sum(w for _, w in combos) == pytest.approx(1.0)
    assert (None, None, None) in keys and ("latin", 12, True) in keys
    depths = feed_read.depth_weights()
    assert len(depths) == feed_read.MAX_DEPTH + 1
    assert depths[0] == feed_read.FIRST_PAGE_SHARE and sum(depths) == pytest.approx(1.0)
    assert all(a > b for a, b in itertools.pairwise(depths[1:]))


def test_lua_script_lists_every_path_with_cumulative_weights() -> None:
    mix = [(["/feed", "/feed?cursor=a"], 0.25), (["/feed?subject=math"], 0.75)]
    script = feed_read.lua_script(mix)
    for path in ("/feed", "/feed?cursor=a", "/feed?subject=math"):
        assert f'"{path}"' in script
    assert "0.250000000, 1.000000000" in script


def test_seed_buckets_start_at_zero_and_grow() -> None:
    lows = feed_seed._lows([w for _, w in feed_seed.SUBJECTS])
    assert lows[0] == 0.0 and lows == sorted(lows) and len(lows) == len(feed_seed.SUBJECTS)


def test_tree_cpu_includes_children_that_already_exited() -> None:
    before = cpu.snapshot({"me": os.getpid()})["me"]
    # A child that burns CPU and is reaped: its time moves into our cutime.
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    after = cpu.snapshot({"me": os.getpid(), "gone": 2**22 + 12345})
    assert after["me"] > before
    assert after["gone"] == 0.0
