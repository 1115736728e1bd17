"""Same results before and after a change: the tiny end-to-end study at two commits, result files compared exactly.

Each commit is checked out in a temporary ``git worktree`` and runs the whole notebook chain on
``configs/tiny.yaml`` (what ``tests/test_study.py``'s ``tiny_chain`` fixture runs) with its own sources first on
the path. Then every tidy result file of the two runs (``results/*.csv`` and ``results/*.json``) is compared
exactly: the same files, the same columns and rows, every value equal (floats bit for bit). Columns and keys
that hold wall-clock time, dates or the git commit differ between any two runs and are left out (their names
are printed). Prints the differences and one verdict line; exit 0 when identical, 1 otherwise.

    nice -n 19 .venv/bin/python bench/same_results.py 4fc9d55 HEAD [--keep DIR]
    .venv/bin/python bench/same_results.py --runs RUN_A RUN_B     # compare two finished runs only

``--runs`` compares any two finished run or result folders (``results/<study>`` as collected by
``tckr report collect``), e.g. a fresh ``make study`` against the committed ``results/mini`` after a change meant to
be exact; collect the run first so that both hold the same files. ``--out FILE`` writes the verdict with the
benchmark record (``tckr.report.bench_record``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
# wall time, dates and provenance of the run itself: never equal between two runs
VOLATILE = re.compile(r"second|time|elapsed|started|finished|created|date|commit|duration|per_s|host|python|version|run_id|path|dir",
                      re.IGNORECASE)
# logs written as parallel workers finish: their rows are compared in this order, not in the order written
LOGGED_ORDER = {"pipeline_stages.csv": ["pipeline", "stage"]}
CHAIN = "from tckr import study; study.run_study('configs/tiny.yaml', {run!r}, log=lambda m: print(m, flush=True))"


def run_chain(commit: str, work: Path) -> Path:
    """The tiny chain's run folder at ``commit`` (checked out under ``work``)."""
    tree = work / f"tree-{commit[:12]}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit], check=True,
                   capture_output=True, text=True)
    run = work / f"run-{commit[:12]}"
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", CHAIN.format(run=str(run))], cwd=tree, env=env, capture_output=True, text=True)
    print(f"{commit}: tiny chain {'finished' if done.returncode == 0 else 'FAILED'} in {time.time() - t0:.0f} s -> {run}")
    if done.returncode != 0:
        raise SystemExit(f"{commit}: the tiny chain failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return run


def _same(x, y) -> bool:
    """Equal, bit for bit for floats; two NaNs (a missing value written as NaN) count as equal."""
    return x == y or (isinstance(x, float) and isinstance(y, float) and x != x and y != y)


def _json_values(obj, prefix: str = "") -> dict[str, object]:
    """Flattened ``key.path -> value`` of a JSON document, volatile keys left out."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not VOLATILE.search(str(k)):
                out.update(_json_values(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(_json_values(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): obj}


def compare(a: Path, b: Path) -> tuple[list[str], int, set[str], int]:
    """(differences, values compared, volatile names left out, files compared) of the two runs' ``results/`` files."""
    fa = {f.name for f in (a / "results").iterdir() if f.suffix in (".csv", ".json")}
    fb = {f.name for f in (b / "results").iterdir() if f.suffix in (".csv", ".json")}
    diffs = [f"only in {a.name}: {n}" for n in sorted(fa - fb)] + [f"only in {b.name}: {n}" for n in sorted(fb - fa)]
    compared, skipped = 0, set()
    for name in sorted(fa & fb):
        if name == "phases.csv":  # the runner's log of wall times
            skipped.add(name)
            continue
        pa, pb = a / "results" / name, b / "results" / name
        if name.endswith(".json"):
            va, vb = _json_values(json.loads(pa.read_text())), _json_values(json.loads(pb.read_text()))
            if va.keys() != vb.keys():
                diffs.append(f"{name}: keys differ: {sorted(va.keys() ^ vb.keys())[:6]}")
            for k in sorted(va.keys() & vb.keys()):
                compared += 1
                if not _same(va[k], vb[k]):
                    diffs.append(f"{name}: {k}: {va[k]!r} != {vb[k]!r}")
            continue
        da, db = pd.read_csv(pa, keep_default_na=False), pd.read_csv(pb, keep_default_na=False)
        if name in LOGGED_ORDER and list(da.columns) == list(db.columns):  # rows in the order the workers finished
            da, db = (d.sort_values(LOGGED_ORDER[name], kind="stable", ignore_index=True) for d in (da, db))
        if list(da.columns) != list(db.columns) or len(da) != len(db):
            diffs.append(f"{name}: shape or columns differ: {da.shape} {list(da.columns)} vs {db.shape} {list(db.columns)}")
            continue
        for col in da.columns:
            if VOLATILE.search(col):
                skipped.add(f"{name}:{col}")
                continue
            compared += len(da)
            xs, ys = da[col].tolist(), db[col].tolist()
            bad = [i for i, (x, y) in enumerate(zip(xs, ys)) if not _same(x, y)]
            if bad:
                i = bad[0]
                diffs.append(f"{name}: column {col}: {len(bad)} of {len(da)} rows differ (row {i}: {xs[i]!r} != {ys[i]!r})")
    return diffs, compared, skipped, len(fa & fb) - ("phases.csv" in skipped)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", nargs="?", help="a commit (e.g. 4fc9d55)")
    ap.add_argument("after", nargs="?", default="HEAD", help="a commit (default HEAD)")
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary folder, removed)")
    ap.add_argument("--runs", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"),
                    help="compare these two finished run (or result) folders instead of running the tiny chain")
    ap.add_argument("--out", type=Path, help="write the verdict as JSON with the benchmark record")
    a = ap.parse_args(argv)
    if a.runs:
        return verdict(*a.runs, a.runs[0].as_posix(), a.runs[1].as_posix(), out=a.out)
    if a.before is None:
        ap.error("give a commit to compare with (or --runs RUN_A RUN_B)")
    commits = [subprocess.run(["git", "-C", str(REPO), "rev-parse", c], check=True, capture_output=True, text=True).stdout.strip()
               for c in (a.before, a.after)]
    work = a.keep or Path(tempfile.mkdtemp(prefix="tckr-same-results-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        runs = [run_chain(c, work) for c in commits]
        return verdict(*runs, commits[0][:10], commits[1][:10], out=a.out)
    finally:
        for c in commits:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(work / f"tree-{c[:12]}")],
                           capture_output=True)
        if a.keep is None:
            subprocess.run(["rm", "-rf", str(work)])


def wall_seconds(run: Path) -> dict[str, dict[str, float]]:
    """Each run's own wall times, as its logs hold them (not side by side: another sitting's load differs): seconds
    per phase (``phases.csv``) and per pipeline stage summed over the pipelines (``pipeline_stages.csv``)."""
    out = {}
    for name, key in (("phases.csv", "phase"), ("pipeline_stages.csv", "stage")):
        f = run / "results" / name
        if f.is_file():
            out[name] = {k: round(float(v), 3) for k, v in pd.read_csv(f).groupby(key, sort=True)["seconds"].sum().items()}
    return out


def verdict(run_a: Path, run_b: Path, name_a: str, name_b: str, out: Path | None = None) -> int:
    """Print the differences and the one-line verdict (and write it to ``out``); 0 when identical."""
    diffs, compared, skipped, n_files = compare(run_a, run_b)
    for d in diffs:
        print(d)
    print(f"left out (wall time, dates, commit): {', '.join(sorted(skipped))}")
    same = not diffs
    line = (f"{'IDENTICAL' if same else 'DIFFERENT'}: study results of {name_a} vs {name_b}: "
            f"{compared} values in {n_files} result files compared, {len(diffs)} differences")
    print(line)
    if out is not None:
        from tckr.core import io
        from tckr.reporting import report

        io.write_json(out, {"a": str(run_a), "b": str(run_b), "identical": same, "values_compared": compared,
                            "files_compared": n_files, "differences": diffs, "left_out": sorted(skipped),
                            "wall_seconds": {name: wall_seconds(run) for name, run in ((name_a, run_a), (name_b, run_b))},
                            "record": report.bench_record(line)})
        print(f"wrote {out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
