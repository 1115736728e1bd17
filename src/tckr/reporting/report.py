"""The generated blocks of the README and of the docs pages, written from committed files (never typed by hand).

A *result folder* (``results/<study>/``, copied out of a run folder by :func:`collect`) is the small, committable part
of a finished run: ``config.yaml``, ``environment.json``, ``seeds.json`` and ``results/`` (every CSV/JSON table the
phases wrote; the shadow pipelines' stage timings as ``results/pipeline_stages.csv``); a several-seed run is
collected seed by seed into ``seed<k>/``. :func:`block` writes the results page (``docs/results.md``): per study the
commit, machine and wall time, the teacher-vs-student table with each model's pre-registered headline attack, the
ledger's headline rows and one sentence per release point read off those numbers (:func:`leakage_sentences`);
:func:`front_table` is the README's short answer from the same files. ``tckr report write FOLDER...`` rewrites both
(:func:`update_readme`), ``tckr report check`` exits 1 when either differs. Each ``bench/`` script given ``--out
bench/measured/<name>.json`` stores a ``record`` beside its numbers (:func:`bench_record`); ``tckr report bench
bench/measured`` writes the table of ``docs/benchmarks.md`` from them (:func:`bench_table`), ``bench-check`` compares.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tckr.core import io
from tckr.privacy import ledger, metrics
from tckr.reporting import attribution, plane_report, power_report
from tckr.runfolder import artifacts
from tckr.runfolder.phases import phase_list

BEGIN = "<!-- tckr.report:begin (tckr report write ...; do not edit by hand) -->"
END = "<!-- tckr.report:end -->"
BENCH_BEGIN = "<!-- tckr.bench:begin (tckr report bench ...; do not edit by hand) -->"
BENCH_END = "<!-- tckr.bench:end -->"
FRONT_BEGIN = "<!-- tckr.front:begin (tckr report write ...; do not edit by hand) -->"
FRONT_END = "<!-- tckr.front:end -->"
RESULTS_PAGE, BENCH_PAGE = Path("docs/results.md"), Path("docs/benchmarks.md")  # the long blocks, beside the README
BENCH_RECORD_KEYS = ("command", "date", "commit", "machine", "summary")
RUN_FILES = ("config.yaml", "environment.json", "seeds.json")
RESULT_SUFFIXES = (".csv", ".json", ".md")
# what tckr.plots reads besides results/, and the PNGs of figures drawn from images too large to commit
FIGURE_INPUTS = ("mia/roc/*.csv", "classifiers/*_history.csv", "lora/loss.csv")
IMAGE_PNGS = ("real_vs_synthetic.png", "synthetic_samples.png", "real_samples.png", "lora_samples.png", "audit_pairs.png")
README_FIGURES = ("ledger", "roc")  # linked below a study's tables when images/<study>/ holds them
SEEDS_FIGURES = ("seeds_cardinality",)  # linked below a several-seed study's table
LEAKS = {"auc_ci": "AUC interval above 50%", "pooled": "pooled AUC interval above 50%", "mann_whitney": "Mann-Whitney p < 0.05"}


class ReportError(ValueError):
    """A result folder lacks what the report needs (the message names the file)."""


def collect(run_dir: str | Path, dest: str | Path) -> list[Path]:
    """Copy a finished run's small result files to ``dest`` (``results/*.csv|json|md``, the config,
    environment and seeds, ``mia/pipelines/stages.csv`` as ``results/pipeline_stages.csv``; each ``seed<k>/`` of a
    several-seed run into ``dest/seed<k>/``). Files already in ``dest`` are replaced; nothing else there is
    touched. Returns the files written."""
    run_dir, dest = Path(run_dir), Path(dest)
    nested = [f for d in artifacts.seed_folders(run_dir) for f in collect(d, dest / d.name)]
    res = run_dir / "results"
    if nested and not res.is_dir():
        return nested
    if not res.is_dir():
        raise ReportError(f"{res} is missing: {run_dir} is not a run folder (or no phase has finished)")
    pairs = [(run_dir / name, dest / name) for name in RUN_FILES if (run_dir / name).is_file()]
    pairs += [(f, dest / "results" / f.name) for f in sorted(res.iterdir())
              if f.is_file() and f.suffix in RESULT_SUFFIXES and not f.name.startswith(".")]
    if (stages := run_dir / "mia" / "pipelines" / "stages.csv").is_file():
        pairs.append((stages, dest / "results" / "pipeline_stages.csv"))
    for pattern in FIGURE_INPUTS:
        pairs += [(f, dest / f.relative_to(run_dir)) for f in sorted(run_dir.glob(pattern)) if f.is_file()]
    pairs += [(run_dir / "figures" / n, dest / "images" / n) for n in IMAGE_PNGS if (run_dir / "figures" / n).is_file()]
    out = []
    for src, dst in pairs:
        with io.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        out.append(dst)
    return nested + out


def _read(folder: Path, *parts: str) -> pd.DataFrame:
    f = folder.joinpath(*parts)
    if not f.is_file():
        raise ReportError(f"{f} is missing: collect the run's results first (tckr report collect --run-dir RUN {folder})")
    return pd.read_csv(f, keep_default_na=False, na_values=[""])


def wall_time(folder: Path, phases: pd.DataFrame | None = None) -> dict[str, float]:
    """Seconds per phase of the study (its last finished attempt, ``results/phases.csv``, or ``phases`` when the
    caller has read it already) and their total."""
    phases = _read(folder, "results", "phases.csv") if phases is None else phases
    done = phases[phases["status"] == "done"].groupby("phase", sort=False)["seconds"].last()
    return {**{p: float(s) for p, s in done.items()}, "total": float(done.sum())}


def _pct(v, lo=np.nan, hi=np.nan, digits: int = 1) -> str:
    ci = "" if pd.isna(lo) or pd.isna(hi) else f" [{100 * lo:.{digits}f}, {100 * hi:.{digits}f}]"
    return "–" if pd.isna(v) else f"{100 * v:.{digits}f}{ci}"


def classifier_table(folder: Path) -> str:
    """Teacher vs students: real-test accuracy and the pre-registered headline attack on each (percent)."""
    clf = _read(folder, "results", "classifiers.csv")
    variant = ledger.headline(folder)
    heads = ledger.classifier_headlines(folder, variant).set_index("target") if (folder / "results" / "mia.csv").is_file() else pd.DataFrame()
    lines = [f"| model | role | cardinality | labels | test accuracy (%) | {variant} AUC (%) [95% CI] | TPR@1% FPR (%) | shadows |",
             "|---|---|---|---|---|---|---|---|"]
    clf = clf.sort_values(["role", "cardinality"], ascending=[False, True], na_position="first")
    for _, r in clf.iterrows():
        h = heads.loc[r["model"]] if r["model"] in heads.index else None
        card = "–" if pd.isna(r.get("cardinality")) else artifacts.markdown_cell(f"{float(r['cardinality']):g}× |D|")
        lines.append(f"| {r['model']} | {r['role']} | {card} | {r.get('label_mode') or '–'} | {r['test_accuracy']:.2f} | "
                     + (f"{_pct(h['auc'], h['auc_lo'], h['auc_hi'])} | {_pct(h['tpr_at_1pct'])} | {h['shadows']} |"
                        if h is not None else "– | – | – |"))
    return "\n".join(lines) + "\n"


def headline_rows(folder: Path) -> pd.DataFrame:
    """The headline ledger rows of a study, each with ``leaks`` (:func:`tckr.ledger.leaks_measurably`)."""
    t = ledger.headlines(_ledger(folder))
    rule = ledger.leak_rule(t, folder)
    return t.assign(leaks=ledger.leaks_measurably(t, rule=rule), rule=rule)


def _ledger(folder: Path) -> pd.DataFrame:
    """``results/ledger.csv``; one written before the ledger pooled the leave-one-pipeline-out AUCs gets them from
    ``results/mia_pipeline_lopo.csv`` (:func:`tckr.ledger.with_lopo`)."""
    t = _read(folder, "results", "ledger.csv")
    if "lopo_auc" in t:
        return t
    return ledger.with_lopo(t, artifacts.read_optional_result(folder, ledger.LOPO_FILE))


def _release_label(r) -> str:
    return f"{r['release']}{'' if pd.isna(r['cardinality']) else ' ' + format(float(r['cardinality']), 'g') + '×'}{ledger.variant_label(r)}"


def _bounds_text(r) -> str:
    """A row's AUC and TPR@1% FPR, and its epsilon and leave-one-pipeline-out AUC where it has them."""
    parts = [ledger.effect_text(r, "auc"), ledger.effect_text(r, "tpr_at_1pct")]
    eps, delta = pd.to_numeric(r.get("eps_lb"), errors="coerce"), pd.to_numeric(r.get("eps_delta"), errors="coerce")
    if not pd.isna(eps):
        parts.append(f"ε ≥ {eps:.2f} (δ = {delta:g})")
    lopo = pd.to_numeric(r.get("lopo_auc"), errors="coerce")
    if not pd.isna(lopo):
        n, share = int(r["lopo_n_pipelines"]), float(r["lopo_share_above_50"])
        ci = _pct(lopo, r["lopo_auc_lo"], r["lopo_auc_hi"]).partition(" ")
        parts.append(f"leave-one-pipeline-out AUC {ci[0]}%{' ' + ci[2] if ci[2] else ''} "
                     f"({int(round(share * n))} of {n} pipelines above 50%)")
    return ", ".join(parts)


def _no_finding(r) -> str:
    """Where a row does not leak measurably under its rule (:func:`tckr.ledger.leak_rule`), what the rule saw."""
    if r["rule"] == "mann_whitney":
        return "Mann-Whitney p ≥ 0.05"
    return f"{'pooled ' * (r['rule'] == 'pooled')}AUC interval {'below' if r[('lopo_' if r['rule'] == 'pooled' else '') + 'auc_hi'] < 0.5 else 'includes'} 50%"


def leakage_sentences(rows: pd.DataFrame) -> list[str]:
    """One sentence per headline ledger row (of :func:`headline_rows`), every word about leakage read off its numbers:
    where its rule (:func:`tckr.ledger.leak_rule`) fires the release point leaks measurably, its size beside the
    teacher's; elsewhere the estimate, interval and upper bound are the finding."""
    teacher = rows[rows["release"] == "teacher"]
    beside = f" (teacher: {ledger.effect_text(teacher.iloc[0], 'auc')})" if len(teacher) else ""
    out = []
    for _, r in rows.iterrows():
        if r["leaks"]:
            out.append(f"{_release_label(r)} leaks measurably ({LEAKS[r['rule']]}): {_bounds_text(r)}"
                       + ("" if r["release"] == "teacher" else beside) + ".")
        else:
            out.append(f"{_release_label(r)}: {_no_finding(r)}; {_bounds_text(r)}.")
    return out


def seeds_block(folder: str | Path, title: str | None = None, images: str | Path = "images") -> str:
    """The Markdown of a several-seed study: real-test accuracy per model as mean ± 95% t-interval over the seeds
    (``seed<k>/results/classifiers.csv``), each seed's value, and each seed's wall time and phases; the
    accuracy-against-cardinality figure of ``images/<folder name>/`` is linked when it is there."""
    folder = Path(folder)
    seeds = artifacts.seed_folders(folder)
    if not seeds:
        raise ReportError(f"{folder} has no seed<k>/ folders: collect a several-seed run (tckr study --seeds 0 1 2)")
    times, commits = [], set()
    for d in seeds:
        log = _read(d, "results", "phases.csv")
        done = [p for p in phase_list(set(log["phase"])) if p in set(log.loc[log["status"] == "done", "phase"])]
        times.append(f"seed {d.name[4:]} {wall_time(d, log)['total'] / 60:.1f} min ({done[0]}–{done[-1]})" if done
                     else f"seed {d.name[4:]}: no phase finished")
        env = io.read_json(d / "environment.json") if (d / "environment.json").is_file() else {}
        commits.add((env.get("git", {}).get("commit") or "unknown")[:10])
    name = artifacts.study_name(seeds[0], folder.name)
    allc = artifacts.seed_classifiers(folder)
    labels = [f"seed {s}" for s in sorted(allc["seed"].unique())]
    lines = [f"### {title or name}, {len(seeds)} seeds (`{folder.as_posix()}`)", "",
             f"Config `{name}`, seeds {', '.join(d.name[4:] for d in seeds)} (training, LoRA, synthesis and attack "
             f"seeds shifted by 1000 × seed; splits fixed), commit{'s' if len(commits) > 1 else ''} "
             f"{', '.join(f'`{c}`' for c in sorted(commits))}. Wall time per seed: {'; '.join(times)}.", "",
             "| model | role | cardinality | labels | test accuracy (%), mean ± 95% CI | n | " + " | ".join(labels) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(labels)]
    allc = allc.sort_values(["role", "cardinality", "model"], ascending=[False, True, True], na_position="first")
    for model, g in allc.groupby("model", sort=False):
        r, v = g.iloc[0], g["test_accuracy"].to_numpy(float)
        ci = metrics.t_halfwidth(v)
        card = "–" if pd.isna(r.get("cardinality")) else artifacts.markdown_cell(f"{float(r['cardinality']):g}× |D|")
        per = {f"seed {s}": f"{a:.2f}" for s, a in zip(g["seed"], v)}
        lines.append(f"| {model} | {r['role']} | {card} | {r.get('label_mode') or '–'} | {v.mean():.2f}"
                     + ("" if np.isnan(ci) else f" ± {ci:.2f}") + f" | {len(v)} | "
                     + " | ".join(per.get(lab, "–") for lab in labels) + " |")
    shown = [n for n in SEEDS_FIGURES if (Path(images) / folder.name / f"{n}.png").is_file()]
    lines += ["", " ".join(f"![{folder.name}: {n}](images/{folder.name}/{n}.png)" for n in shown)] if shown else []
    return "\n".join(lines) + "\n" + ("\n" + gaps if (gaps := attribution.contributions_block(folder)) else "")


def study_block(folder: str | Path, title: str | None = None, images: str | Path = "images") -> str:
    """The Markdown of one study's results (of :func:`seeds_block` for a several-seed folder); the ledger and ROC
    figures of ``images/<folder name>/`` (:func:`figures`) are linked when they are there."""
    folder = Path(folder)
    if artifacts.seed_folders(folder):
        return seeds_block(folder, title, images)
    cfg = yaml.safe_load((folder / "config.yaml").read_text()) if (folder / "config.yaml").is_file() else None
    if cfg is None:
        raise ReportError(f"{folder / 'config.yaml'} is missing: collect the run's results first")
    env = io.read_json(folder / "environment.json") if (folder / "environment.json").is_file() else {}
    name, seeds = cfg["study"]["name"], cfg["study"].get("seeds", [0])
    log = _read(folder, "results", "phases.csv")
    wt = wall_time(folder, log)
    commit = ((git := env.get("git", {})).get("commit") or "unknown")[:10] + (" (dirty tree)" if git.get("dirty") else "")
    machine = f"{env.get('cpu_count', '?')} CPU cores, {env.get('torch_threads', '?')} torch threads" + (
        f", GPU {env['gpu']}" if env.get("gpu") else ", no GPU")
    phases = ", ".join(f"{p} {s / 60:.1f}" for p, s in wt.items() if p != "total")
    last = log.groupby("phase", sort=False)["status"].last()
    open_phases = [p for p in phase_list(set(log["phase"])) if last.get(p) != "done"]
    if open_phases:
        phases += f"; **not finished: {', '.join(open_phases)}** (its time is not counted)"
    out = [f"### {title or name} (`{folder.as_posix()}`)", "",
           f"Config `{name}` (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}, single seed"
           f"{'' if len(seeds) == 1 else 's aggregated elsewhere'}), commit `{commit}`, {machine}. "
           f"Wall time **{wt['total'] / 60:.1f} min** (per phase, min: {phases}).", "",
           classifier_table(folder), ]
    if not (folder / "results" / "ledger.csv").is_file():  # phases 00-04 only (and a dose-response study's block)
        return "\n".join(out) + power_report.power_block(folder, images)
    meta = io.read_json(lj) if (lj := folder / "results" / "ledger.json").is_file() else {}
    heads = headline_rows(folder)
    out += [f"Privacy ledger, pre-registered headline per release point (`{meta.get('headline_variant', '?')}` or its "
            f"analogue; {meta.get('n_comparisons', '?')} rows in `results/ledger.csv`, Bonferroni level "
            f"{meta.get('bonferroni_level', float('nan')):.4f}; AUC and TPR in %: estimate [95% bootstrap interval], "
            "≤ one-sided 95% upper bound; – where the result files predate a column):", "",
            ledger.markdown(heads, headline_only=True).rstrip("\n"), ""]
    out += [f"- {line}" for line in leakage_sentences(heads)] + [""]
    canaries = canary_rows(folder)
    if len(canaries):
        n = int(canaries["n_members"].iloc[0] + canaries["n_nonmembers"].iloc[0])
        out += [f"Mislabeled canaries (`mia.canaries`: {n} examples of P whose label is flipped in caption, prompt and "
                "teacher target, scored on the canaries alone; a worst-case audit, never a headline), the same "
                "pre-registered attack per release point:", "",
                ledger.markdown(canaries).rstrip("\n"), ""]
    shown = [(n, f"images/{folder.name}/{n}.png") for n in README_FIGURES if (Path(images) / folder.name / f"{n}.png").is_file()]
    if shown:
        out += [" ".join(f"![{folder.name}: {n}]({path})" for n, path in shown), ""]
    return "\n".join(out)


def canary_rows(folder: str | Path) -> pd.DataFrame:
    """The ledger's mislabeled-canary rows (``subset`` = ``canaries``) of the attacks that are the pre-registered
    headline of their release point (same release, cardinality, label mode, family and attack); empty without canaries."""
    t = ledger.with_subset(_read(Path(folder), "results", "ledger.csv"))
    keys = ["release", "cardinality", "label_mode", "family", "attack"]
    return t[t["subset"] == "canaries"].merge(ledger.headlines(t)[keys], on=keys, how="inner").reset_index(drop=True)


def _control_rows(folder: Path) -> pd.DataFrame:
    """A study's headline ledger rows and, for the students, the classifier-shadow row of the same LiRA variant
    (the attack the pipeline-aware one replaces), each with ``leaks``."""
    t = ledger.main_rows(_ledger(folder))
    variant = io.read_json(folder / "results" / "ledger.json").get("headline_variant") if (
        folder / "results" / "ledger.json").is_file() else None
    beside = (t["release"] == "student") & (t["source"] == "mia.csv") & (t["attack"] == variant)
    t = t[t["headline"] | beside]
    return t.assign(leaks=ledger.leaks_measurably(t, folder), rule=ledger.leak_rule(t, folder))


def control_table(folders: list[str | Path]) -> str:
    """Each release point and attack family under every study given (a study and its positive control): the
    pre-registered attack's AUC and TPR@1% FPR (estimate, 95% interval, one-sided 95% upper bound) per cardinality,
    marked where its AUC interval lies above 50%. A bound of one study is read beside the same attack in the control."""
    folders = [Path(f) for f in folders]
    rows = {f.name: _control_rows(f) for f in folders}
    keys = list(dict.fromkeys(k for t in rows.values() for k in zip(t["release"], t["label_mode"].fillna("–"), t["family"])))
    order = {"teacher": 0, "generator": 1, "synthetic set": 2, "student": 3}
    keys.sort(key=lambda k: (order.get(k[0], 9), k[1] == "hard", not k[2].endswith("shadow pipelines")))
    lines = ["| release | attack family | " + " | ".join(f"`{n}`" for n in rows) + " |", "|---|---|" + "---|" * len(rows)]
    for release, mode, family in keys:
        cells = []
        for t in rows.values():
            g = t[(t["release"] == release) & (t["label_mode"].fillna("–") == mode) & (t["family"] == family)]
            cells.append("<br>".join(
                ("" if pd.isna(r["cardinality"]) else f"{float(r['cardinality']):g}×{ledger.variant_label(r)}: ")
                + f"{r['attack']} {ledger.effect_text(r, 'auc')}, {ledger.effect_text(r, 'tpr_at_1pct')}"
                + (" **leaks measurably**" if r["leaks"] else "") for _, r in g.iterrows()) or "–")
        label = release + (" (hard labels)" if mode == "hard" else "")
        lines.append(f"| {label} | {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def block(folders: list[str | Path], images: str | Path = "images") -> str:
    """The results page's whole block for these result folders, markers included."""
    if not folders:
        raise ReportError("no result folders given (e.g. results/mini results/mini-leaky)")
    body = "\n".join(study_block(f, images=images) for f in folders) + plane_report.block(folders, images)
    with_ledger = [f for f in folders if (Path(f) / "results" / "ledger.csv").is_file()]
    if len(with_ledger) > 1:
        body += ("\n### Each attack beside its positive control\n\nThe pre-registered attack per release point in each "
                 "study (**leaks measurably** under the study's pre-registered rule, `tckr.privacy.ledger.leak_rule`; elsewhere the "
                 "upper bound is the finding); a student's "
                 "classifier-shadow row is the same LiRA variant with "
                 "shadows that do not replicate a student's training.\n\n" + control_table(with_ledger) + "\n")
    cmd = "tckr report write " + " ".join(Path(f).as_posix() for f in folders)
    return f"{BEGIN}\n_Written by `{cmd}` from the committed result files._\n\n{body}{END}"


def front_table(folders: list[str | Path]) -> str:
    """Per config with a ledger (its first folder; later ones are earlier versions): teacher and students, accuracy (mean ± 95%
    t-interval over ``<folder>-seeds``, else an unclaimed several-seed folder of its config) and headline (:func:`leakage_sentences`)."""
    folders = [Path(f) for f in folders]
    sfx = artifacts.SEEDS_SUFFIX
    named = {f.name.removesuffix(sfx): s for f in folders if f.name.endswith(sfx) and (s := artifacts.seed_folders(f))}
    seeds = {artifacts.study_name(s[0]): s for f in folders if f.name.removesuffix(sfx) not in named and (s := artifacts.seed_folders(f))}
    lines = ["| study | model | test accuracy (%) | membership inference | finding |", "|---|---|---|---|---|"]
    studies: dict[str, Path] = {}
    for f in [f for f in folders if not artifacts.seed_folders(f) and (f / "results" / "ledger.csv").is_file()]:
        studies.setdefault(artifacts.study_name(f), f)
    for name, f in studies.items():
        heads, clf = headline_rows(f).set_index("target"), _read(f, "results", "classifiers.csv")
        accs = pd.concat([_read(d, "results", "classifiers.csv") for d in named.get(f.name) or seeds.get(name, [f])])
        for model in clf.sort_values(["role", "cardinality"], ascending=[False, True], na_position="first")["model"]:
            v = accs.loc[accs["model"] == model, "test_accuracy"].to_numpy(float)
            acc = f"{v.mean():.2f} ± {metrics.t_halfwidth(v):.2f} ({len(v)} seeds)" if len(v) > 1 else f"{v.mean():.2f} (1 run)"
            r = heads.loc[model] if model in heads.index else None
            finding = "not attacked" if r is None else "**leaks measurably**" if r["leaks"] else _no_finding(r)
            lines.append(f"| `{f.name}` | {model} | {acc} | {'–' if r is None else _front_effect(r)} | {finding} |")
    return "\n".join(lines) + "\n"


def _front_effect(r) -> str:
    """The front table's attack cell: the headline AUC, and a student's pooled leave-one-pipeline-out AUC."""
    lopo = pd.to_numeric(r.get("lopo_auc"), errors="coerce")
    pooled = "" if pd.isna(lopo) else (f"; pooled over {int(r['lopo_n_pipelines'])} pipelines "
                                       f"{_pct(lopo, r['lopo_auc_lo'], r['lopo_auc_hi']).replace(' ', '% ', 1)}")
    return f"{r['attack']} {ledger.effect_text(r, 'auc')}{pooled}"


def front_block(folders: list[str | Path]) -> str:
    """The README's short results block (:func:`front_table`), markers included."""
    cmd = "tckr report write " + " ".join(Path(f).as_posix() for f in folders)
    reading = plane_report.front_sentences(folders)  # the privacy-utility plane's, where a study has a DP study
    bullets = "\n" + "".join(f"- {s}\n" for s in reading) if reading else ""
    return (f"{FRONT_BEGIN}\n_Written by `{cmd}` from the committed result files; the other release points are on "
            f"the [results page]({RESULTS_PAGE.as_posix()})._\n\n{front_table(folders)}{bullets}{FRONT_END}")


def bench_record(summary: str, argv: list[str] | None = None) -> dict[str, str]:
    """What a benchmark stores beside its numbers (key ``record`` of its ``--out`` JSON): the command that made
    them (``argv``, default ``sys.argv``, with the script's path relative to the repository), the date, the commit
    (``+dirty`` when tracked files differed), the machine and ``summary``, one line computed from the numbers."""
    from tckr.core import paths  # lazy: only a benchmark that writes its result needs git and the repository root
    from tckr.runfolder import environment

    argv = list(sys.argv if argv is None else argv)
    if argv:
        script = Path(argv[0]).resolve()
        argv[0] = script.relative_to(paths.ROOT).as_posix() if script.is_relative_to(paths.ROOT) else argv[0]
    git = environment.git_commit()
    commit = (git["commit"] or "unknown")[:7] + ("+dirty" if git.get("dirty") else "")
    return {"command": "python " + shlex.join(argv), "date": _dt.date.today().isoformat(), "commit": commit,
            "machine": f"{os.cpu_count()} CPU cores", "summary": summary}


def bench_table(folder: str | Path) -> str:
    """The benchmark table: one row per ``*.json`` in ``folder`` (each with a :func:`bench_record`),
    sorted by file name."""
    folder = Path(folder)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ReportError(f"{folder} holds no benchmark result (*.json): run a bench/ script with --out {folder}/<name>.json")
    rows = ["| benchmark | result | command | measured |", "|---|---|---|---|"]
    for f in files:
        rec = io.read_json(f).get("record")
        missing = [k for k in BENCH_RECORD_KEYS if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise ReportError(f"{f} has no record {missing} (tckr.report.bench_record): rerun its benchmark with --out")
        rows.append(f"| `{f.stem}` | {artifacts.markdown_cell(rec['summary'])} | `{artifacts.markdown_cell(_shown_command(rec['command'], f))}` | "
                    f"{rec['date']}, {rec['commit']}, {rec['machine']} |")
    return "\n".join(rows) + "\n"


def _shown_command(command: str, result: Path) -> str:
    """A benchmark's command as shown: an absolute ``--out`` is the committed file; another absolute path (a copy of a
    run on the measuring machine) keeps its last two parts after ``…/``."""
    args = command.split(" ")
    for i, a in enumerate(args):
        if a.startswith("/"):
            args[i] = result.as_posix() if i and args[i - 1] == "--out" else "…/" + "/".join(Path(a).parts[-2:])
    return " ".join(args)


def bench_block(folder: str | Path) -> str:
    """The whole benchmark block for ``folder``, markers included."""
    cmd = "tckr report bench " + Path(folder).as_posix()
    return f"{BENCH_BEGIN}\n_Written by `{cmd}` from the committed benchmark results._\n\n{bench_table(folder)}{BENCH_END}"


def _replaced(file: Path, begin: str, end: str, new_block: str, what: str) -> tuple[Path, str, str]:
    """``(file, text, text with the block between the markers replaced)``; an error when the markers are missing."""
    text = file.read_text() if file.is_file() else ""
    if begin not in text or end not in text:
        raise ReportError(f"{file} has no {what} block: put the two marker lines\n{begin}\n{end}\nwhere it goes")
    head, rest = text.split(begin, 1)
    return file, text, head + new_block + rest.split(end, 1)[1]


def _write_blocks(edits: list[tuple[Path, str, str]], check: bool) -> bool:
    """Write the files whose text changed (none with ``check``, and none before every file had its markers)."""
    changed = [(f, new) for f, old, new in edits if new != old]
    for f, new in [] if check else changed:
        io.write_text(f, new)
    return bool(changed)


def update_readme(readme: str | Path, folders: list[str | Path], *, check: bool = False) -> bool:
    """Replace the short block between the front markers of ``readme`` (:func:`front_block`) and the whole results
    block of the results page beside it (``docs/results.md``, :func:`block`); True when either changed (with
    ``check`` nothing is written). An error when a file lacks its markers."""
    readme = Path(readme)
    return _write_blocks([_replaced(readme.parent / RESULTS_PAGE, BEGIN, END, block(folders, readme.parent / "images"),
                                    "results"),
                          _replaced(readme, FRONT_BEGIN, FRONT_END, front_block(folders), "front-page results")], check)


def update_bench(readme: str | Path, folder: str | Path, *, check: bool = False) -> bool:
    """Replace the block of ``docs/benchmarks.md`` beside ``readme`` with :func:`bench_block`, and the README's speed
    row when ``folder`` holds the before/after rooflines (:mod:`tckr.reporting.speed_report`); True when either changed."""
    from tckr.reporting import speed_report as sr
    edits = [_replaced(Path(readme).parent / BENCH_PAGE, BENCH_BEGIN, BENCH_END, bench_block(folder), "benchmark")]
    speed = [_replaced(Path(readme), sr.SPEED_BEGIN, sr.SPEED_END, sr.speed_block(folder), "speed")] if sr.has_speed(folder) else []
    return _write_blocks(edits + speed, check)
