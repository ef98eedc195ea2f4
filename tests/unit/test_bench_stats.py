"""The benchmark's pure arithmetic and parsing: percentiles, ratios, verdicts, wrk output,
py-spy summaries and the summary lines (no services, no timing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.api_write import parse_wrk
from bench.profiling import summarize
from bench.report import lines
from bench.stats import Target, percentile, rate, ratio, summarize_latencies, verdict


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == pytest.approx(25.0)
    assert percentile(list(reversed(values)), 50) == pytest.approx(25.0)
    assert percentile([7.0], 99) == 7.0


def test_percentile_rejects_empty_sample_and_bad_rank() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_p99_of_one_hundred_values_is_near_the_top() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == pytest.approx(99.01)


def test_rate_and_ratio_guard_against_missing_or_zero() -> None:
    assert rate(100, 2.0) == 50.0
    assert rate(100, 0.0) == 0.0
    assert ratio(90.0, 100.0) == pytest.approx(0.9)
    assert ratio(None, 100.0) is None
    assert ratio(90.0, None) is None
    assert ratio(90.0, 0.0) is None


def test_target_floor_and_cap() -> None:
    floor = Target(0.9)
    assert floor.met(0.9) is True
    assert floor.met(0.89) is False
    cap = Target(10.0, at_least=False)
    assert cap.met(10.0) is True
    assert cap.met(10.1) is False
    assert cap.met(None) is None
    assert (floor.describe(), cap.describe()) == (">= 0.9", "<= 10")
    assert [verdict(True), verdict(False), verdict(None)] == ["MET", "NOT MET", "not measured"]


def test_summarize_latencies() -> None:
    assert summarize_latencies([]) == {}
    summary = summarize_latencies([1.0, 2.0, 3.0])
    assert summary["p50_ms"] == 2.0
    assert summary["max_ms"] == 3.0
    assert summary["count"] == 3.0


WRK_OUTPUT = """Running 4s test @ http://127.0.0.1:8000
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    80.57ms   20.11ms 250.00ms   75.00%
  Latency Distribution
     50%   78.12ms
     75%   90.00ms
     90%  100.00ms
     99%    1.20s
  800 requests in 4.00s, 300.00KB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:    199.87
Transfer/sec:     75.00KB
"""


def test_parse_wrk_reads_rate_errors_and_percentiles() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed["rps"] == 199.87
    assert parsed["non_2xx"] == 3
    assert "timeout 2" in parsed["socket_errors"]
    assert parsed["p50_ms"] == pytest.approx(78.12)
    assert parsed["p99_ms"] == pytest.approx(1200.0)


def test_parse_wrk_without_rate_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        parse_wrk("unable to connect to 127.0.0.1:8000 Connection refused")


def test_profile_summary_counts_self_and_inclusive_time(tmp_path: Path) -> None:
    raw = tmp_path / "p.raw"
    raw.write_text(
        "process 1:main;run (relay/relay.py:10);claim (relay/store.py:90) 30\n"
        "process 1:main;run (relay/relay.py:10);publish (relay/publisher.py:120) 70\n"
        "process 1:main;_find_and_load (<frozen importlib._bootstrap>:1) 50\n"
    )
    summary = summarize(raw)
    assert summary["self"][0] == ("publish (relay/publisher.py)", 70.0)
    assert ("run (relay/relay.py)", 100.0) in summary["project"]
    assert ("start-up imports", 50.0) in summary["samples"]
    assert summarize(tmp_path / "missing.raw") == {}


def test_report_lines_mark_missing_parts_not_measured() -> None:
    result = {"ceilings": {"publish": {"rate": 1000.0}}, "relay_drain": {"rate": 1050.0}}
    by_figure = {line.figure: line.as_dict() for line in lines(result)}
    assert by_figure["drain of backlog (steady)"]["verdict"] == "MET"
    assert by_figure["drain of backlog (steady)"]["judged"] == pytest.approx(1.05)
    assert by_figure["apply of queued events (steady)"]["verdict"] == "not measured"
    assert by_figure["apply of queued events (steady)"]["value"] == "not measured yet"


def test_relay_is_judged_against_the_simple_peer_relay_too() -> None:
    result = {
        "ceilings": {"publish": {"rate": 1000.0, "best_strategy": "gather-2000"}},
        "relay_drain": {"rate": 950.0, "peer": {"rate": 1000.0}},
    }
    by_figure = {line.figure: line.as_dict() for line in lines(result)}
    assert by_figure["drain of backlog (steady)"]["verdict"] == "NOT MET"  # 0.95 < 1.0
    assert by_figure["drain vs simple peer relay"]["judged"] == pytest.approx(0.95)
    assert by_figure["drain vs simple peer relay"]["verdict"] == "NOT MET"
    assert "publish ceiling set by gather-2000" in by_figure
