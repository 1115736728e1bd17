"""The whole study headless: every phase notebook, in order, on one config.

    tckr study configs/mini.yaml [--run-dir runs/<id>] [--force] [--phases 03_generate,04_run_evaluate]

Executed notebooks go to ``<run>/notebooks/``. A phase is skipped only when it is *current*: its done-record
(``<run>/notebooks/.<phase>.done.json``) exists, and the settings it read (its sections of the run's
``config.yaml``) and the files it read (its inputs: :data:`SPEC`) and wrote (its outputs) are what they were
when it finished. Files are identified by sha256 (size and modification time spare re-reading an unchanged
file), so a copied or moved run folder is still current. A phase whose inputs changed runs again after its
products of the old inputs are removed (:func:`_invalidate`); a phase whose outputs changed or went missing runs
again and rebuilds them (damaged shards and classifiers are detected by checksum and made again). A phase
refuses to start while an upstream phase (:data:`UPSTREAM`) is not current, naming the phase to run. A failed
phase leaves no done-record. ``<run>/results/phases.csv`` gets one row per attempt: ``started`` (timestamp),
``phase``, ``status`` (done, failed, refused), ``seconds``, ``reason``. ``--force`` runs the selected phases
even when they are current. With several ``study.seeds`` each seed runs in ``<run>/seed<k>/`` and
``<run>/results/`` gets the mean ± 95% CI table over seeds.
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
from tckr.runfolder import artifacts, runs

PHASES = ("00_data", "01_captions", "02_lora_finetune", "03_generate", "04_run_evaluate", "05_mia_lira", "06_figures")

# The phases whose products each phase reads.
UPSTREAM = {
    "00_data": (),
    "01_captions": ("00_data",),
    "02_lora_finetune": ("01_captions",),
    "03_generate": ("01_captions", "02_lora_finetune"),
    "04_run_evaluate": ("03_generate",),
    "05_mia_lira": ("04_run_evaluate",),
    "06_figures": ("04_run_evaluate", "05_mia_lira"),
}

ADAPTER = "{adapter}"  # lora/lora_<generator arch>_<dataset>.safetensors (tckr.artifacts.adapter_name)

# Per phase: the config sections it reads, the files it reads (inputs) and writes (outputs), relative to the run
# folder; a pattern with "*" matches every file it globs (hidden temporary files excluded).
SPEC: dict[str, dict[str, tuple[str, ...]]] = {
    "00_data": {"config": ("study.dataset", "data"), "inputs": (),
                "outputs": ("splits/D.npy", "splits/H.npy", "splits/val.npy", "splits/pool.npy", "splits/public.npy")},
    "01_captions": {"config": ("captions",), "inputs": ("splits/D.npy",), "outputs": ("captions/captions.csv",)},
    "02_lora_finetune": {"config": ("generator", "lora"), "inputs": ("splits/D.npy", "captions/captions.csv"),
                         "outputs": (ADAPTER,)},
    "03_generate": {"config": ("generator", "synthesis"), "inputs": (ADAPTER, "captions/captions.csv"),
                    "outputs": ("synthetic/manifest.json", "synthetic/shards/*", "synthetic/subsets/*.npy")},
    "04_run_evaluate": {"config": ("classifier", "train", "gkd", "synthesis"),
                        "inputs": ("synthetic/manifest.json", "synthetic/subsets/*.npy"),
                        "outputs": ("classifiers/*.safetensors", "results/classifiers.csv")},
    "05_mia_lira": {"config": ("classifier", "train", "mia", "audit"), "inputs": ("classifiers/*.safetensors", "mia/keep.npy"),
                    "outputs": ("results/mia.csv",)},
    "06_figures": {"config": ("*",), "inputs": ("results/*.csv",), "outputs": ("results/table.csv",)},
}
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
    part = {k: (tree if k == "*" else tree["study"]["dataset"] if k == "study.dataset" else tree[k]) for k in SPEC[phase]["config"]}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]


def _files(run: runs.Run, patterns: tuple[str, ...]) -> list[str]:
    """The run-relative paths ``patterns`` name now: every explicit one (present or not), and glob matches."""
    out: list[str] = []
    for pat in patterns:
        pat = pat.replace(ADAPTER, f"{artifacts.LORA_DIR}/{artifacts.adapter_name(run.cfg)}")
        if "*" not in pat:
            out.append(pat)
            continue
        folder, glob = pat.rsplit("/", 1)
        out += sorted(f"{folder}/{f.name}" for f in (run.dir / folder).glob(glob)
                      if f.is_file() and not f.name.startswith(".") and f.name != "phases.csv")
    return out


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


def _identities(run: runs.Run, patterns: tuple[str, ...], before: dict[str, Any] | None = None) -> dict[str, Any]:
    before = before or {}
    return {rel: _identity(run, rel, before.get(rel)) for rel in _files(run, patterns)}


def _differences(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    out = []
    for rel in sorted(set(recorded) | set(now)):
        a, b = recorded.get(rel), now.get(rel)
        if (a or {}).get("sha256") != (b or {}).get("sha256"):
            out.append(f"{rel} {'missing' if b is None else 'new' if a is None else 'changed'}")
    return out


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
    if rec.get("config") != _config_hash(run, phase):
        return State(False, "read other settings (its sections of config.yaml changed)", stale_inputs=True)
    now = _identities(run, SPEC[phase]["inputs"], rec["inputs"])
    diff = _differences(rec["inputs"], now)
    if diff:
        return State(False, f"read other inputs ({', '.join(diff[:4])}{' ...' if len(diff) > 4 else ''})", stale_inputs=True)
    out_now = _identities(run, SPEC[phase]["outputs"], rec["outputs"])
    diff = _differences(rec["outputs"], out_now)
    if diff:
        return State(False, f"outputs are not as it left them ({', '.join(diff[:4])}{' ...' if len(diff) > 4 else ''})")
    if out_now != rec["outputs"] or now != rec["inputs"]:  # same content, new times (a copied folder): remember them
        io.write_json(_done_marker(run.dir, phase), {**rec, "inputs": now, "outputs": out_now})
    return State(True)


def _upstream(phase: str) -> list[str]:
    """Every phase ``phase`` reads from, directly or through others, in study order."""
    found, todo = set(), list(UPSTREAM[phase])
    while todo:
        up = todo.pop()
        if up not in found:
            found.add(up)
            todo += UPSTREAM[up]
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
    """Remove what ``phase`` made from inputs that have since changed, so that running it again redoes the work
    instead of finding the old products (the phase functions skip what exists). Returns what was removed."""
    d = run.dir
    targets: list[Path] = {
        "01_captions": [d / "captions"],
        "02_lora_finetune": [d / "lora"],
        "03_generate": [d / "synthetic"],
        "04_run_evaluate": [*(d / "classifiers").glob("*synth*"), d / "ablation", d / "results" / "classifiers.csv",
                            d / "results" / "ablation.csv"],
        "05_mia_lira": [*(f for f in (d / "mia" / "logits").glob("*.npy") if not f.name.startswith("shadow_")),
                        d / "mia" / "scores", d / "mia" / "roc", d / "results" / "mia.csv", d / "results" / "aop.csv"],
    }.get(phase, [])
    removed = []
    for t in sorted(set(targets)):
        if t.is_dir():
            shutil.rmtree(t)
        elif t.exists():
            t.unlink()
        else:
            continue
        removed.append(str(t.relative_to(d)))
    return removed


def _check_outputs(run: runs.Run, phase: str) -> str | None:
    """What a phase that ran without error failed to write, or None."""
    missing = [rel for rel in _files(run, SPEC[phase]["outputs"]) if not (run.dir / rel).is_file()]
    empty = [p for p in SPEC[phase]["outputs"] if "*" in p and not _files(run, (p,))]
    if missing or empty:
        return f"it wrote no {', '.join(missing + empty)}"
    if phase == "03_generate" and "shards_sha256" not in io.read_json(run.dir / "synthetic" / "manifest.json"):
        return "its synthetic set is not complete (synthetic/manifest.json lists no shard checksums)"
    return None


# --------------------------------------------------------------------------- running


def run_phases(run: runs.Run, phases: tuple[str, ...] = PHASES, force: bool = False, log=print) -> list[dict]:
    """Execute ``phases`` on an open run; returns one record per phase (phase, status, seconds). Every message
    also goes to ``<run>/progress.log``, and the progress lines a phase writes there are echoed to ``log``."""
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
        head = f"[{i}/{len(phases)}] {phase:<18}"
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
               "config": _config_hash(run, phase), "inputs": _identities(run, SPEC[phase]["inputs"]),
               "outputs": _identities(run, SPEC[phase]["outputs"])}
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
    validated like the YAML); return the run folder."""
    overrides = {**(overrides or {}), **({"study.seeds": list(seeds)} if seeds else {})} or None
    cfg = load_config(config, overrides)
    root = paths.resolve(run_dir) if run_dir else runs.default_run_dir(cfg)
    seeds = cfg.study.seeds
    total = time.perf_counter()
    log(f"study {cfg.study.name} ({cfg.study.dataset}, {cfg.study.tier} tier) -> {root}")
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
