"""How long the ``tckr`` command takes to answer: two user errors, ``--help`` and ``--version``, side by side.

Each command runs as its own process (the installed ``tckr`` script next to this Python, else ``python -m
tckr.cli``) with this checkout's ``src/`` first on the path, ``--repeats`` times in turn (round-robin, so a burst
of load on the machine hits every command alike); the median wall time is reported, with the start-up of a bare
``python -c pass`` as the floor. ``--baseline REV`` also times the same commands on the sources of commit REV
(``git archive``), in the same rounds: the before and after of a change, on the same machine at the same time.

    .venv/bin/python bench/bench_cli_latency.py --baseline 59591d2 --out bench/measured/cli_latency.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {  # name -> arguments of tckr; the two errors must be told at once, without loading any phase
    "study configs/nope.yaml": ["study", "configs/nope.yaml"],
    "shadows --shard 0/4": ["shadows", "--shard", "0/4"],
    "--help": ["--help"],
    "--version": ["--version"],
}


def tckr_command() -> list[str]:
    """The ``tckr`` console script beside this interpreter (what a user types), else ``python -m tckr.cli``."""
    script = Path(sys.executable).parent / "tckr"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tckr.cli"]


def sources_at(rev: str, into: Path) -> Path:
    """``src/`` of commit ``rev`` extracted under ``into``; returns the ``src`` folder."""
    tar = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    return into / "src"


def timed(argv: list[str], src: Path) -> tuple[float, int]:
    """Wall seconds and exit status of one run of ``argv`` from the repository root with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), *filter(None, [os.environ.get("PYTHONPATH")])])}
    t0 = time.perf_counter()
    res = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0, res.returncode


def measure(trees: dict[str, Path], repeats: int) -> dict[str, dict]:
    """``{tree: {command: {"seconds": [...], "median_s": m, "exit_status": s}}}``, plus ``python -c pass``."""
    base = tckr_command()
    jobs = {(tree, name): base + args for tree in trees for name, args in COMMANDS.items()}
    jobs[("python", "python -c pass")] = [sys.executable, "-c", "pass"]
    seconds: dict[tuple[str, str], list[float]] = {k: [] for k in jobs}
    status: dict[tuple[str, str], int] = {}
    for _ in range(repeats):
        for key, argv in jobs.items():
            s, status[key] = timed(argv, trees.get(key[0], ROOT / "src"))
            seconds[key].append(round(s, 4))
    out: dict[str, dict] = {}
    for (tree, name), runs in seconds.items():
        out.setdefault(tree, {})[name] = {"seconds": runs, "median_s": round(statistics.median(runs), 3),
                                          "exit_status": status[(tree, name)]}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="runs of each command (default %(default)s); the median is kept")
    p.add_argument("--baseline", metavar="REV", help="also time the commands on the sources of this git commit")
    p.add_argument("--out", default=None, help="write the result JSON here")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this checkout": ROOT / "src"}
        if args.baseline:
            trees[f"baseline {args.baseline}"] = sources_at(args.baseline, Path(tmp))
        res = measure(trees, args.repeats)
    result = {"command": tckr_command(), "repeats": args.repeats, "cpu_count": os.cpu_count(),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "median_s": res}
    floor = res["python"]["python -c pass"]["median_s"]
    print(f"load average before {load_before[0]:.2f}, after {result['loadavg_after'][0]:.2f}; "
          f"python -c pass: {floor:.2f} s (median of {args.repeats})")
    for tree in trees:
        for name, r in res[tree].items():
            print(f"{tree:28s} tckr {name:28s} {r['median_s']:6.2f} s  (exit {r['exit_status']})")
    if args.out:
        from tckr.core import io
        from tckr.reporting import report

        now = res["this checkout"]
        summary = ("median wall time of tckr, " + ", ".join(f"`{n}` {r['median_s']:.2f} s" for n, r in now.items()))
        if args.baseline:
            before = res[f"baseline {args.baseline}"]
            summary += (" (at " + args.baseline + ": " + ", ".join(
                f"{before[n]['median_s']:.2f} s" + (f" exiting {before[n]['exit_status']}" if before[n]["exit_status"] !=
                                                    now[n]["exit_status"] else "") for n in now) + ")")
        summary += (f"; a bare python start {floor:.2f} s; {args.repeats} runs each, round-robin, on "
                    f"{os.cpu_count()} CPU cores shared with other jobs (load average {load_before[0]:.1f}): "
                    "the absolute numbers are this loaded machine's")
        result["record"] = report.bench_record(summary)
        io.write_json(args.out, result)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
