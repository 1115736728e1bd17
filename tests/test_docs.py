"""The documentation: the README is a short front page whose links resolve, the docs/ site builds with
``mkdocs build --strict`` (a broken link or anchor fails it), the public API page lists ``tckr.PUBLIC`` exactly, and no
page gives a machine's own paths or names files the repository does not hold."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

import tckr
from tckr.core import paths

ROOT = paths.ROOT
README = ROOT / "README.md"
MAX_README_LINES = 200
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "images" not in p.relative_to(ROOT / "docs").parts)
# What a reader must not be told to use: this machine's folders as instructions, files the repository does not
# hold (the git-ignored bench/results/ among them), the retired Hugging Face login command, the old release form.
STALE = {r"(?m)(?:^|(?<=[\s`'\"(=]))/(work|root|tmp)/": "an absolute path of the machine that wrote it",
         r"REFERENCE\.md|STYLE\.md": "a file the repository does not hold",
         r"bench/results/": "bench/results/ is git-ignored: point at bench/measured/ or give the command",
         r"huggingface-cli login": "the pinned huggingface_hub's login is `hf auth login`",
         r"python -m tckr\.release": "the release command is `tckr release --run-dir runs/<id>`",
         r"not implemented \(tensorboard": "--set train.log=tensorboard is implemented",
         r"work in progress": "say what is done or not, not that someone is on it",
         r"\(issue \d+\)|\bissue \d+\b": "a tracker reference: give the reason and its evidence instead"}


def _links(text: str) -> list[str]:
    """Every link and image target of a Markdown text, as a GFM renderer finds them."""
    out = []
    for tok in MarkdownIt("commonmark").enable("table").parse(text):
        for child in tok.children or []:
            if child.type == "link_open":
                out.append(child.attrs["href"])
            elif child.type == "image":
                out.append(child.attrs["src"])
    return out


def _slug(heading: str) -> str:
    """The anchor GitHub and mkdocs' toc give a heading (lower case, punctuation dropped, spaces to hyphens)."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", text)).strip("-")


def test_readme_is_a_short_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    text = "\n".join(lines)
    for needed in ("make study", "make test", "tckr study configs/tiny.yaml", "<!-- tckr.front:begin"):
        assert needed in text, needed


def test_every_relative_link_of_the_readme_resolves():
    bad = []
    for href in _links(README.read_text()):
        if re.match(r"^[a-z]+:", href) or href.startswith("#"):
            continue
        path, _, anchor = href.partition("#")
        target = (README.parent / path).resolve()
        if not target.exists():
            bad.append(f"{href}: no such file")
        elif anchor and target.suffix == ".md":
            slugs = {_slug(h) for h in re.findall(r"^#+ (.+)$", target.read_text(), re.M)}
            if anchor not in slugs:
                bad.append(f"{href}: no heading with that anchor")
    assert not bad, bad
    assert any(h.startswith("docs/") for h in _links(README.read_text()))  # the README links into the docs


def test_the_link_check_sees_a_broken_link():
    assert _links("[a](docs/nope.md) ![b](images/x.png) [c](https://x.org)") == ["docs/nope.md", "images/x.png", "https://x.org"]
    assert _slug("The paper tier on a GPU") == "the-paper-tier-on-a-gpu"
    assert _slug("Reports (`tckr.report`)") == "reports-tckrreport"


def test_the_docs_site_builds_strictly_offline(tmp_path):
    """``mkdocs build --strict`` turns every warning (a link to a missing page or anchor, a page left out of the nav)
    into a failure; the build needs no network."""
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, env={**_env(), "NO_MKDOCS_2_WARNING": "1"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "site" / "results.html").is_file() and (tmp_path / "site" / "images" / "mini" / "ledger.png").is_file()


def test_mkdocs_strict_fails_on_a_broken_anchor(tmp_path):
    """The build above can fail: a copy of the site with one broken anchor does."""
    import shutil

    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs", symlinks=True)
    (tmp_path / "docs" / "images").unlink()
    (tmp_path / "docs" / "images").symlink_to(ROOT / "images")
    with (tmp_path / "docs" / "cli.md").open("a") as f:
        f.write("\nSee [nothing](runbook.md#no-such-heading).\n")
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**_env(), "NO_MKDOCS_2_WARNING": "1"})
    assert res.returncode != 0 and "no-such-heading" in res.stdout + res.stderr


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_every_docs_page_is_in_the_nav():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(entry):
        if isinstance(entry, str):
            return [entry]
        if isinstance(entry, list):
            return [p for e in entry for p in pages(e)]
        return [p for v in entry.values() for p in pages(v)]

    assert sorted(pages(nav)) == sorted(p.relative_to(ROOT / "docs").as_posix() for p in PAGES)


def test_the_api_page_lists_the_facade_table_exactly():
    text = (ROOT / "docs" / "api.md").read_text()
    rows = re.findall(r"^\| `tckr\.(\w+)` \| (.+?) \| (.+?) \|$", text, re.M)
    listed = {m: (set(re.findall(r"`(\w+)`", names)), set(re.findall(r"`([\w.]+)`", homes))) for m, names, homes in rows}
    public = {m: ({n for ns in h.values() for n in ns}, set(h)) for m, h in tckr.PUBLIC.items()}
    assert listed == public


@pytest.mark.parametrize("doc", [README, *PAGES, ROOT / "pyproject.toml", ROOT / "models" / "tiny-sd-fashion" / "README.md",
                                 *sorted((ROOT / "configs").rglob("*.yaml"))],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_stale_instructions(doc):
    text = doc.read_text()
    found = [f"{m.group(0)!r}: {why}" for pattern, why in STALE.items() for m in re.finditer(pattern, text)]
    assert not found, found


def test_the_stale_check_sees_each_kind():
    text = "cd /work/x; see REFERENCE.md; bench/results/a.json; huggingface-cli login; (issue 3)"
    assert sum(bool(re.search(p, text)) for p in STALE) == 5
    assert not re.search(next(iter(STALE)), "runs/<id>/tmp/ and ~/work/ and $HOME/tmp/")


def test_the_executed_example_evaluates_the_released_classifiers():
    """``docs/examples/04_run_evaluate.md`` (``make example``) shows every released classifier at the accuracy its
    sidecar records, recomputed equal: an example left from an earlier release fails here."""
    import json

    example = (ROOT / "docs" / "examples" / "04_run_evaluate.md").read_text()
    rows = {m[1]: (m[2], m[3], m[4]) for m in re.finditer(
        r"<td>([\w.]+\.safetensors)</td>\s*<td>([\d.]+)</td>\s*<td>([\d.]+)</td>\s*<td>(\w+)</td>", example)}
    sidecars = sorted((ROOT / "trained_mbnv3").glob("*/*.json"))
    assert sidecars and len(rows) == len(sidecars), (sorted(rows), [s.name for s in sidecars])
    for side in sidecars:
        acc = f"{json.loads(side.read_text())['test_accuracy']:.2f}"
        assert rows.get(side.with_suffix(".safetensors").name) == (acc, acc, "True"), side.name
