"""Figures in README.md and docs/*.md come from the last full benchmark run, never by hand."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from benchmarks import quotes

REPO = Path(__file__).resolve().parents[2]

RUN = {
    "command": "python benchmarks/run.py",
    "machine": {"date": "2030-01-01 00:00 UTC", "cores": 2},
    "results": {
        "B1": {"title": "t", "seconds": 1, "skipped": "", "data": {"vqpu_start": 1.26},
               "rows": [{"metric": "GHZ-5: vqpu vs faster hand loop = hand(all)", "unit": "s", "ours": [0.006, 0.007, 0.008],
                         "base": [0.005, 0.006, 0.007], "ratio": 1.1, "target": "<= 1.2x", "met": True}]},
        "B5": {"title": "t", "seconds": 1, "skipped": "", "data": {},
               "rows": [{"metric": "100 GHZ-5 tasks: one batch request vs one request each", "unit": "s", "ours": [0.5],
                         "base": [0.75], "ratio": 0.5 / 0.75, "target": "", "met": None}]},
    },
}


def test_a_quote_is_rewritten_from_the_run_whatever_was_typed_there() -> None:
    text = "Round trip: <!-- quote: B1 GHZ-5 -->9.99 ms, typed by hand<!-- end quote -->. Start: <!-- quote: B1 vQPU start -->?<!-- end quote -->"

    filled = quotes.fill(text, RUN)

    assert "9.99" not in filled
    assert "<!-- quote: B1 GHZ-5 -->7 ms against 6 ms (1.10x, the median of per-round ratios; target 1.2x: met in the full run of 2030-01-01 00:00 UTC)<!-- end quote -->" in filled
    assert "<!-- quote: B1 vQPU start -->1.3 s (the full run of 2030-01-01 00:00 UTC)<!-- end quote -->" in filled
    assert quotes.fill(filled, RUN) == filled  # the markers stay: the next run rewrites them again


def test_batch_quote_says_how_much_faster_one_batch_was() -> None:
    filled = quotes.fill("<!-- quote: B5 batches -->x<!-- end quote -->", RUN)

    assert "100 tasks took 750 ms one by one and 500 ms as one batch (1.50x as fast)" in filled


def test_limits_quotes_build_the_connection_table_and_the_deadline_sentence() -> None:
    run = copy.deepcopy(RUN)
    conn = {"threads_before": 9, "threads": 9, "rss_growth_mib": 0.6, "held": 101, "ghz5_median": 0.0058,
            "ghz5_max": 0.0076, "first_closed_s": 5.01, "all_closed_s": 5.02}
    data = {f"conn100_{key}": value for key, value in conn.items()}
    data.update(deadline_first=1.0, deadline_last=1.03, next_fastest=0.016, next_slowest=0.018)
    run["results"]["B11"] = {"title": "t", "seconds": 1, "skipped": "", "rows": [], "data": data}

    table = quotes.fill("<!-- quote: B11 idle connections -->x<!-- end quote -->", run)
    sentence = quotes.fill("<!-- quote: B11 deadlines -->x<!-- end quote -->", run)

    assert "| 100 | 9 → 9 | +0.6 MiB | 101 | 5.8 ms / 7.6 ms | 5.01 s / 5.02 s |" in table
    assert "after 1.00-1.03 s; the next task that needs a worker took 0.02-0.02 s (BENCHMARKS.md, B11" in sentence


def test_a_figure_the_run_does_not_have_is_said_to_be_missing_not_invented() -> None:
    run = copy.deepcopy(RUN)
    del run["results"]["B1"]["data"]["vqpu_start"]
    del run["results"]["B5"]

    filled = quotes.fill("<!-- quote: B1 vQPU start -->1.5 s<!-- end quote --> <!-- quote: B5 batches -->x<!-- end quote -->", run)

    assert "1.5 s" not in filled
    assert filled.count("not measured in the full run of 2030-01-01 00:00 UTC") == 2


def test_an_unknown_quote_name_stops_the_update() -> None:
    with pytest.raises(SystemExit, match="unknown quote 'B99 nothing'"):
        quotes.fill("<!-- quote: B99 nothing -->x<!-- end quote -->", RUN)


def test_readme_and_docs_hold_what_the_last_full_run_measured() -> None:
    """A figure edited by hand in a quote (or the README's table) differs from the generated one."""
    last_run = json.loads((REPO / "benchmarks" / "last_run.json").read_text())
    readme = (REPO / "README.md").read_text()
    head, rest = readme.split(quotes.BEGIN, 1)
    _, tail = rest.split(quotes.END, 1)
    stale = [] if quotes.fill(head + quotes.block(last_run) + tail, last_run) == readme else ["README.md"]
    for doc in sorted((REPO / "docs").glob("*.md")):
        text = doc.read_text()
        if quotes.fill(text, last_run) != text:
            stale.append(f"docs/{doc.name}")
    assert not stale, f"not what benchmarks/last_run.json says (run `python -m benchmarks.quotes`): {stale}"
    assert "<!-- quote: B1 GHZ-5 -->" in (REPO / "docs" / "architecture.md").read_text()
