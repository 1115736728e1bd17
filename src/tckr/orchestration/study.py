"""The whole study headless: every phase notebook, in order, on one config.

    tckr study configs/mini.yaml [--run-dir runs/<id>] [--force] [--phases 03_generate,04_run_evaluate]

Phases (:data:`tckr.runfolder.phases.PHASES`): 00_data, 01_captions, 02_lora_finetune, 03_generate,
04_run_evaluate, 05_mia_lira (membership mask, classifier shadows, the attacks on the teacher and students with
them), 06_shadow_pipelines, 07_generator_attacks, 08_audit_ledger (ledger, AOP, memorisation audit), 09_figures.
Executed notebooks go to ``<run>/notebooks/``. A phase is skipped only when it is *current*: its done-record
(``<run>/notebooks/.<phase>.done.json``) exists, it was made under the phase's present declarations, and the
settings it read (its sections of the run's ``config.yaml``), the files it read (its inputs) and the files it wrote
are what they were when it finished. What it wrote is derived, not listed by hand: every file found under the outputs the phase declares
(:class:`tckr.runfolder.phases.Phase`: results and caches), so a deleted or changed result or cache makes it run
again and rebuild it. Files are identified by sha256 (size and modification time spare re-reading an unchanged
file), so a copied or moved run folder is still current. A phase whose inputs changed runs again after everything
it declared is removed (:func:`_invalidate`: caches included, files of other phases never). A phase refuses to
start while an upstream phase is not current, naming the phase to run. A failed phase leaves no done-record.
``<run>/results/phases.csv`` gets one row per attempt: ``started`` (timestamp), ``phase``, ``status`` (done,
failed, refused), ``seconds``, ``reason``. ``--force`` runs the selected phases even when they are current. One
process at a time works on a run folder (:func:`tckr.runfolder.lock.hold`; a second one gets
:class:`~tckr.runfolder.lock.RunLocked` naming the holder's PID). With several ``study.seeds`` each seed runs in
``<run>/seed<k>/`` and ``<run>/results/`` gets the mean ± 95% CI table over seeds.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tckr.core import io, paths, progress
from tckr.core.config import load_config
from tckr.core.notebook import execute_notebook
from tckr.datasets import provenance
from tckr.privacy import ledger
from tckr.runfolder import artifacts, lock, runs
from tckr.runfolder.phases import ADAPTER, PHASE, PHASES, matches, owned_files, owner

HISTORY_COLUMNS = ["started", "phase", "status", "seconds", "reason"]


class PhaseFailed(RuntimeError):
    """A phase notebook raised; the message names the phase and its executed notebook."""


class PhaseBlocked(PhaseFailed):
    """A phase cannot start because a phase it reads from is not current; the message names the phase to run."""


@dataclass
class State:
    """Whether a phase is current; ``why`` says what is not; ``stale_inputs`` when it read other settings or files."""

    current: bool
    why: str = ""
    stale_inputs: bool = False


def _done_marker(run_dir: Path, phase: str) -> Path:
    return run_dir / "notebooks" / f".{phase}.done.json"


# --------------------------------------------------------------------------- what a phase read and wrote


def _config_hash(run: runs.Run, phase: str) -> str:
    tree = run.cfg.to_dict()

    def part(key: str) -> Any:
        if key == "*":
            return tree
        section, _, name = key.partition(".")
        return tree[section][name] if name else tree[section]

    return hashlib.sha256(json.dumps({k: part(k) for k in PHASE[phase].config}, sort_keys=True).encode()).hexdigest()[:16]


def _files(run: runs.Run, patterns: tuple[str, ...]) -> list[str]:
    """The run-relative paths ``patterns`` name now: every explicit one (present or not), and glob matches."""
    out: list[str] = []
    for pat in patterns:
        pat = pat.replace(ADAPTER, f"{artifacts.LORA_DIR}/{artifacts.adapter_name(run.cfg)}")
        if "*" not in pat:
            out.append(pat)
            continue
        out += sorted(rel for rel in (f.relative_to(run.dir).as_posix() for f in run.dir.glob(pat) if f.is_file())
                      if not any(part.startswith(".") for part in rel.split("/")) and rel != "results/phases.csv")
    return out


def _input_files(run: runs.Run, phase: str) -> list[str]:
    """The files ``phase`` reads that other phases make (its own outputs are no inputs)."""
    return [rel for rel in _files(run, PHASE[phase].inputs) if owner(rel) != phase]


def _identity(run: runs.Run, rel: str, before: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """size, mtime and sha256 of a run file (None when missing); the sha256 of ``before`` is reused when the
    size and modification time are the same, so an unchanged file is not read again."""
    f = run.dir / rel
    if not f.is_file():
        return None
    st = f.stat()
    if before and before.get("size") == st.st_size and before.get("mtime_ns") == st.st_mtime_ns:
        return dict(before)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": io.sha256_file(f)}


def _identities(run: runs.Run, rels: list[str], before: dict[str, Any] | None = None) -> dict[str, Any]:
    before = before or {}
    return {rel: _identity(run, rel, before.get(rel)) for rel in rels}


def _differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = []
    for rel in sorted(set(recorded) | set(now)):
        a, b = recorded.get(rel), now.get(rel)
        if (a or {}).get("sha256") != (b or {}).get("sha256"):
            out.append(f"{rel} {'missing' if b is None else 'new' if a is None else 'changed'}")
    return out


def _declared(phase: str) -> dict[str, list[str]]:
    p = PHASE[phase]
    return {"config": list(p.config), "inputs": list(p.inputs), "outputs": list(p.outputs)}


def _listed(diff: list[str]) -> str:
    return f"{', '.join(diff[:4])}{' ...' if len(diff) > 4 else ''}"


def _read_record(run: runs.Run, phase: str) -> dict[str, Any] | None:
    marker = _done_marker(run.dir, phase)
    if not marker.is_file():
        return None
    try:
        rec = io.read_json(marker)
    except io.CorruptFileError:
        return None
    return rec if isinstance(rec, dict) else None


def _last_attempt(run: runs.Run, phase: str) -> str | None:
    f = run.dir / "results" / "phases.csv"
    if not f.is_file():
        return None
    try:
        rows = pd.read_csv(f)
    except (ValueError, pd.errors.ParserError):
        return None
    rows = rows[(rows["phase"] == phase) & (rows["status"] != "refused")] if "phase" in rows else rows.iloc[:0]
    return str(rows["status"].iloc[-1]) if len(rows) else None


def phase_state(run: runs.Run, phase: str) -> State:
    """Whether ``phase`` is current in ``run`` (see the module docstring), and if not, why."""
    rec = _read_record(run, phase)
    if rec is None:
        if _last_attempt(run, phase) == "failed":
            return State(False, "failed in its last attempt (results/phases.csv)")
        return State(False, "has not finished")
    if "inputs" not in rec or "outputs" not in rec:
        return State(False, "was recorded without its inputs (an older version of this runner)")
    if rec.get("declared") != _declared(phase):  # its record may miss files it writes: run it again, removing nothing
        return State(False, "was recorded when it declared other settings, inputs or outputs (an older version of tckr)")
    if rec.get("config") != _config_hash(run, phase):
        return State(False, "read other settings (its sections of config.yaml changed)", stale_inputs=True)
    now = _identities(run, _input_files(run, phase), rec["inputs"])
    diff = _differences(rec["inputs"], now)
    if diff:
        return State(False, f"read other inputs ({_listed(diff)})", stale_inputs=True)
    # what it wrote, as recorded: a file that went missing or changed is a reason to run it again; a file another
    # phase left among its outputs since (a cache made on demand) is not
    out_now = _identities(run, list(rec["outputs"]), rec["outputs"])
    diff = _differences(rec["outputs"], out_now)
    if diff:
        return State(False, f"outputs are not as it left them ({_listed(diff)})")
    if out_now != rec["outputs"] or now != rec["inputs"]:  # same content, new times (a copied folder): remember them
        io.write_json(_done_marker(run.dir, phase), {**rec, "inputs": now, "outputs": out_now})
    return State(True)


def _upstream(phase: str) -> list[str]:
    """Every phase ``phase`` reads from, directly or through others, in study order."""
    found, todo = set(), list(PHASE[phase].upstream)
    while todo:
        up = todo.pop()
        if up not in found:
            found.add(up)
            todo += PHASE[up].upstream
    return sorted(found, key=PHASES.index)


def _blocker(run: runs.Run, phase: str, current: set[str]) -> tuple[str, str] | None:
    """The earliest upstream phase (direct or not) that is not current, with why; None when all are."""
    for up in _upstream(phase):
        if up not in current:
            state = phase_state(run, up)
            if not state.current:
                return up, state.why
    return None


def _invalidate(run: runs.Run, phase: str) -> list[str]:
    """Remove everything ``phase`` made from inputs that have since changed, caches included, so that running it
    again redoes the work instead of finding the old products (the phase functions skip what exists). A folder
    no other phase writes into goes whole; elsewhere only the files ``phase`` owns. Returns what was removed."""
    d = run.dir
    owned = owned_files(d, phase)
    removed = []
    for pat in PHASE[phase].outputs:
        shared = pat.endswith("/") and any(q != pat and q.startswith(pat) for p in PHASE.values() for q in p.outputs)
        if pat.endswith("/") and not shared:
            if (d / pat).is_dir():
                shutil.rmtree(d / pat)
                removed.append(pat.rstrip("/"))
            continue
        gone = [rel for rel in owned if matches(pat, rel)]
        for rel in gone:
            (d / rel).unlink()
        if gone:
            removed.append(gone[0] if len(gone) == 1 else f"{pat} ({len(gone)} files)")
    return removed


def _check_outputs(run: runs.Run, phase: str) -> str | None:
    """What a phase that ran without error failed to write, or None."""
    required = PHASE[phase].required
    missing = [rel for rel in _files(run, required) if not (run.dir / rel).is_file()]
    empty = [p for p in required if "*" in p and not _files(run, (p,))]
    if missing or empty:
        return f"it wrote no {', '.join(missing + empty)}"
    if phase == "03_generate" and "shards_sha256" not in io.read_json(run.dir / "synthetic" / "manifest.json"):
        return "its synthetic set is not complete (synthetic/manifest.json lists no shard checksums)"
    return None


# --------------------------------------------------------------------------- running


def run_phases(run: runs.Run, phases: tuple[str, ...] = PHASES, force: bool = False, log=print) -> list[dict]:
    """Execute ``phases`` on an open run; returns one record per phase (phase, status, seconds). Every message
    also goes to ``<run>/progress.log``, and the progress lines a phase writes there are echoed to ``log``.
    Holds the run folder's lock throughout (:class:`~tckr.runfolder.lock.RunLocked` when another process does)."""
    with lock.hold(run.dir):
        return _run_phases(run, phases, force, log)


def _run_phases(run: runs.Run, phases: tuple[str, ...], force: bool, log) -> list[dict]:
    progress_log = run.dir / progress.LOG_NAME
    say = log

    def log(message: str) -> None:
        progress.append(progress_log, message)
        say(message)

    records = []
    current: set[str] = set()
    config_file = str(run.dir / runs.CONFIG_FILE)
    for i, phase in enumerate(phases, 1):
        marker = _done_marker(run.dir, phase)
        head = f"[{i}/{len(phases)}] {phase:<20}"
        state = phase_state(run, phase)
        if state.current and not force:
            rec = {**_read_record(run, phase), "status": "skipped (done)"}
            log(f"{head} skipped: current, finished earlier in {rec['seconds']:.1f} s (--force redoes it)")
            records.append({k: rec[k] for k in ("phase", "status", "seconds")})
            current.add(phase)
            continue
        blocked = _blocker(run, phase, current)
        if blocked:
            up, why = blocked
            todo = ",".join(p for p in PHASES if PHASES.index(up) <= PHASES.index(p) <= PHASES.index(phase))
            msg = (f"phase {phase} cannot start: phase {up} {why}. Run {up} first, e.g. tckr study "
                   f"{run.dir / runs.CONFIG_FILE} --run-dir {run.dir} --phases {todo} (or the whole study without --phases)")
            _append_history(run, phase, "refused", 0.0, f"{up} {why}")
            raise PhaseBlocked(msg)
        reason = "forced" if state.current else state.why
        removed = _invalidate(run, phase) if state.stale_inputs else []
        shown = ", ".join(removed[:4]) + (f" ... ({len(removed)} in all)" if len(removed) > 4 else "")
        log(f"{head} running ({reason}{'; removed ' + shown if removed else ''}) ...")
        marker.unlink(missing_ok=True)
        started, started_at = time.perf_counter(), _now()
        out = run.dir / "notebooks" / f"{phase}.ipynb"
        try:
            with progress.follow(progress_log, say):
                execute_notebook(phase, run.dir, {"config": config_file}, output=out)
            problem = _check_outputs(run, phase)
        except Exception as e:  # papermill wraps the cell's error; report it with the notebook's path
            seconds = time.perf_counter() - started
            what = getattr(e, "ename", type(e).__name__)
            detail = getattr(e, "evalue", str(e))
            _append_history(run, phase, "failed", seconds, f"{what}: {detail}", started_at)
            records.append({"phase": phase, "status": "failed", "seconds": round(seconds, 1)})
            raise PhaseFailed(f"phase {phase} failed after {seconds:.1f} s: {what}: {detail}\n"
                              f"executed notebook (open it to see the failing cell): {out}") from None
        seconds = time.perf_counter() - started
        if problem:
            _append_history(run, phase, "failed", seconds, problem, started_at)
            records.append({"phase": phase, "status": "failed", "seconds": round(seconds, 1)})
            raise PhaseFailed(f"phase {phase} ran without error but {problem}; executed notebook: {out}")
        rec = {"phase": phase, "status": "done", "seconds": round(seconds, 1), "finished": _now(),
               "declared": _declared(phase), "config": _config_hash(run, phase),
               "inputs": _identities(run, _input_files(run, phase)),
               "outputs": _identities(run, owned_files(run.dir, phase))}
        io.write_json(marker, rec)
        _append_history(run, phase, "done", seconds, reason, started_at)
        records.append({k: rec[k] for k in ("phase", "status", "seconds")})
        current.add(phase)
        log(f"{head} done in {seconds:.1f} s")
    return records


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _append_history(run: runs.Run, phase: str, status: str, seconds: float, reason: str, started: str | None = None) -> None:
    """One row per attempt in ``results/phases.csv`` (earlier rows are kept); ``started`` defaults to now."""
    f = run.path("results", "phases.csv")
    row = pd.DataFrame([{"started": started or _now(), "phase": phase, "status": status, "seconds": round(seconds, 1),
                         "reason": reason.splitlines()[0][:300] if reason else ""}])
    old = None
    if f.is_file():
        try:
            old = pd.read_csv(f, keep_default_na=False)
        except (ValueError, pd.errors.ParserError):
            f.rename(f.with_suffix(f".unreadable-{int(time.time())}.csv"))  # keep it for a person to look at
    table = row if old is None or old.empty else pd.concat([old, row], ignore_index=True)
    io.save_csv(f, table[[c for c in HISTORY_COLUMNS if c in table] + [c for c in table if c not in HISTORY_COLUMNS]])


def run_study(config: str | Path, run_dir: str | Path | None = None, *, phases: tuple[str, ...] = PHASES,
              force: bool = False, seeds: list[int] | None = None, overrides: dict[str, Any] | None = None,
              log=print) -> Path:
    """Run the study for every seed of the config (``overrides``: dotted keys such as ``{"train.epochs": 3}``,
    validated like the YAML), holding the run folder's lock; return the run folder."""
    overrides = {**(overrides or {}), **({"study.seeds": list(seeds)} if seeds else {})} or None
    cfg = load_config(config, overrides)
    root = paths.resolve(run_dir) if run_dir else runs.default_run_dir(cfg)
    seeds = cfg.study.seeds
    total = time.perf_counter()
    with lock.hold(root):  # before anything is written: a second study on this folder stops here
        log(f"study {cfg.study.name} ({cfg.study.dataset}, {cfg.study.tier} tier) -> {root}")
        for other, pid in lock.held_elsewhere(root.parent):  # sharing the cores costs far more than waiting
            log(f"warning: {other} is in use by process {pid}: two studies on the same cores each run study.num_threads "
                f"({cfg.study.num_threads or 'the default number of'}) torch threads, whose OpenMP threads then spin against each other and run "
                "both far slower than one after the other; wait for it, or give each study.num_threads=1")
        for seed in seeds:
            folder = root if len(seeds) == 1 else root / f"seed{seed}"
            run = runs.open_run(cfg, folder, seed=seed)
            provenance.check_disjoint(run)
            if len(seeds) > 1:
                log(f"== seed {seed}: {folder}")
            run_phases(run, phases, force=force, log=log)
        if len(seeds) > 1:
            runs.open_run(cfg, root, seed=seeds[0])
            per_seed, table = ledger.seed_summary([root / f"seed{s}" for s in seeds])
            artifacts.write_study_table(root, table, per_seed)
    log(f"study finished in {time.perf_counter() - total:.1f} s: {root}")
    return root
