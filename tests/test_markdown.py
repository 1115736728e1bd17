"""Every Markdown table the repository shows renders as written: each row has as many cells as its header (GFM).

A ``|`` inside a cell (``0.1× |D|``) ends the cell unless escaped; a GFM renderer then drops the cells past the
header's count without a word, so the row shows shifted or cut values. Tables are found with a real GFM parser
(markdown-it-py's table rule); each row's cells are counted the way GFM splits them (on every unescaped ``|``,
code spans included)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from markdown_it import MarkdownIt

from tckr.core import paths
from tckr.runfolder import artifacts

PIPE = re.compile(r"(?<!\\)\|")


def gfm_cells(line: str) -> list[str]:
    """The cells of one table row as GFM splits it: on unescaped pipes, a leading and a trailing one optional."""
    row = line.strip()
    row = row.removeprefix("|")
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return PIPE.split(row)


def bad_rows(text: str) -> list[str]:
    """``line N: k cells, header h: <row>`` for every table row of ``text`` whose cell count differs from its
    header's (the number of header cells the parser made)."""
    lines = text.splitlines()
    problems, header, at = [], 0, 0
    for tok in MarkdownIt("commonmark").enable("table").parse(text):
        if tok.type == "thead_open":
            header = 0
        elif tok.type == "th_open":
            header += 1
        elif tok.type == "tr_open":
            at = tok.map[0]
        elif tok.type == "tr_close":
            n = len(gfm_cells(lines[at]))
            if n != header:
                problems.append(f"line {at + 1}: {n} cells, header {header}: {lines[at][:120]}")
    return problems


DOCUMENTS = ("README.md", "docs/*.md", "*/README.md", "models/*/README.md", "results/*/results/*.md")  # what GitHub shows


def _documents() -> list[Path]:
    return sorted({f for pattern in DOCUMENTS for f in paths.ROOT.glob(pattern)})


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: p.relative_to(paths.ROOT).as_posix())
def test_every_table_row_has_as_many_cells_as_its_header(doc):
    text = doc.read_text()
    assert not bad_rows(text), f"{doc.relative_to(paths.ROOT)}: " + "\n".join(bad_rows(text))


def test_the_check_sees_a_pipe_that_splits_a_cell():
    good = "| model | cardinality |\n|---|---|\n| student | 0.1× \\|D\\| |\n"
    bad = "| model | cardinality |\n|---|---|\n| student | 0.1× |D| |\n"
    assert bad_rows(good) == []
    assert bad_rows(bad) == ["line 3: 4 cells, header 2: | student | 0.1× |D| |"]
    html = MarkdownIt("commonmark").enable("table").render(good)
    assert "<td>0.1× |D|</td>" in html  # the escaped pipe renders as a pipe inside its cell
    results = MarkdownIt("commonmark").enable("table").parse((paths.ROOT / "docs" / "results.md").read_text())
    assert sum(t.type == "table_open" for t in results) >= 10  # the parser finds the results page's tables


def test_the_study_table_escapes_pipes_in_its_cells():
    t = pd.DataFrame({"model": ["teacher", "student|D|"], "role": ["teacher", "student"], "cardinality": [float("nan"), 0.1],
                      "accuracy": [90.0, 41.0], "auc_mia": [60.0, 50.5], "tpr_at_1pct": [3.0, 1.0], "aop": [62.5, 40.0]})
    md = artifacts.table_markdown(t)
    assert bad_rows(md) == [] and "| student\\|D\\| | 0.1× |" in md
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "<td>student|D|</td>" in html and "<td>0.1×</td>" in html
    assert artifacts.markdown_cell("a|b\nc") == "a\\|b c"


# committed, with a ledger
SINGLE_RUNS = ("mini", "mini-full", "mini-full-earlier-base", "mini-leaky", "mini-leaky-earlier-base", "mini-leaky-t2i",
               "mini-d5000-s16")
SEEDED = ("mini-seeds", "mini-seeds-5x", "mini-full-earlier-base-seeds")
DP_STUDIES = ("mini-dp",)  # committed DP studies: their models on their study's plane


def _generated_tables() -> dict[str, str]:
    """Every Markdown table the reporting generates, from the committed result folders: the ledger (whole, headline
    rows, canaries alone), the study table of one run and of several seeds, the README's results block with its
    per-study, seeds and control tables, the benchmark table and the privacy–utility table."""
    from tckr.privacy import ledger
    from tckr.reporting import plane, report

    results = paths.ROOT / "results"
    out = {}
    for name in SINGLE_RUNS:
        f = results / name
        t = ledger.with_subset(pd.read_csv(f / "results" / "ledger.csv"))
        out[f"{name} ledger"] = ledger.markdown(t)
        out[f"{name} ledger headline"] = ledger.markdown(t, headline_only=True)
        if (t["subset"] == "canaries").any():
            out[f"{name} ledger canaries"] = ledger.markdown(t[t["subset"] == "canaries"])
        out[f"{name} study table"] = artifacts.table_markdown(ledger.study_table(f))
        out[f"{name} classifier table"] = report.classifier_table(f)
        every = [results / n for n in (*SINGLE_RUNS, *DP_STUDIES)]
        out[f"{name} privacy-utility"] = plane.markdown(plane.table(f, plane.control_folders(f, every),
                                                                    plane.dp_folders(f, every)))
    for name in SEEDED:
        seeds = artifacts.seed_folders(results / name)
        out[f"{name} seeds table"] = artifacts.table_markdown(ledger.seed_summary(seeds)[1])
        out[f"{name} seeds block"] = report.seeds_block(results / name)
    out["results block"] = report.block([results / n for n in ("mini", "mini-seeds", "mini-full", "mini-full-earlier-base-seeds",
                                                               "mini-leaky", "mini-leaky-t2i", *DP_STUDIES)])
    out["benchmark table"] = report.bench_table(paths.ROOT / "bench" / "measured")
    return out


def test_every_generated_table_parses_as_gfm_with_its_header_cell_count():
    tables = _generated_tables()
    for what, text in tables.items():
        n = sum(t.type == "table_open" for t in MarkdownIt("commonmark").enable("table").parse(text))
        assert n >= 1, f"{what}: the GFM parser finds no table"
        assert not bad_rows(text), f"{what}: " + "\n".join(bad_rows(text))
    # the privacy-utility table renders each row's cells where they belong
    html = MarkdownIt("commonmark").enable("table").render(tables["mini privacy-utility"])
    assert "<td>control_student</td>" in html and "<th>TPR@1% FPR (%)</th>" in html
    assert "<td>dp_teacher</td>" in html and "<td>matched_teacher</td>" in html  # mini-dp's models on mini's plane
