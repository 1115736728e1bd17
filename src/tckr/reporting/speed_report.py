"""The README's speed row: each stage's share of the machine before and after the last speed work, from the
committed benchmark results (``tckr report bench`` writes it beside the benchmarks page's table).

It reads three files of the benchmark folder: ``roofline_before.json`` and ``roofline.json`` (``bench/roofline.py``
run on the code before and on this code, one after the other on the same machine, same config, threads and
precision) and ``pipeline_speedup.json`` (``bench/bench_pipeline_cost.py --before``: one shadow pipeline, stage by
stage, side by side, with the files the two made compared bit for bit).
"""

from __future__ import annotations

from pathlib import Path

from tckr.core import io

SPEED_BEGIN = "<!-- tckr.speed:begin (tckr report bench ...; do not edit by hand) -->"
SPEED_END = "<!-- tckr.speed:end -->"
BEFORE, AFTER, PIPELINE = "roofline_before.json", "roofline.json", "pipeline_speedup.json"
RECIPE, STEP = "recipe_stem2.json", "classifier_step.json"


class SpeedError(ValueError):
    """The speed row cannot be written from the benchmark folder (a file is missing or the two rooflines differ in setting)."""


def has_speed(folder: str | Path) -> bool:
    """True when ``folder`` holds the before/after roofline pair the speed row is written from."""
    return (Path(folder) / BEFORE).is_file() and (Path(folder) / AFTER).is_file()


def _setting(result: dict) -> tuple:
    return result.get("config"), result.get("threads"), result.get("processes", 1), result.get("dtype"), result.get("base")


def _pair(folder: Path) -> tuple[dict, dict]:
    return io.read_json(folder / BEFORE), io.read_json(folder / AFTER)


def speed_rows(folder: str | Path, pair: tuple[dict, dict] | None = None) -> list[dict]:
    """One row per stage both rooflines time: seconds and fraction of peak before and after, and the speed-up
    (``pair``: the two rooflines, when already read)."""
    folder = Path(folder)
    before, after = pair or _pair(folder)
    if _setting(before) != _setting(after):
        raise SpeedError(f"{folder / BEFORE} and {folder / AFTER} were measured with other settings "
                         f"({_setting(before)} vs {_setting(after)}): rerun bench/roofline.py on both codes with the same ones")
    old = {s["stage"]: s for s in before["stages"]}
    rows = []
    for s in after["stages"]:
        b = old.get(s["stage"])
        if b is None:
            continue
        rows.append({"stage": s["stage"], "before_s": b["median_s"], "after_s": s["median_s"],
                     "before_fraction": b.get("fraction_of_peak"), "after_fraction": s.get("fraction_of_peak"),
                     "speedup": b["median_s"] / s["median_s"]})
    return rows


def _fraction(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def speed_block(folder: str | Path) -> str:
    """The README's speed block, markers included."""
    folder = Path(folder)
    before, after = pair = _pair(folder)
    head = (f"{SPEED_BEGIN}\n_Written by `tckr report bench {folder.as_posix()}` from `{BEFORE}` ({before['record']['commit']}) "
            f"and `{AFTER}` ({after['record']['commit']}): each stage's median time and share of the machine's float32 "
            f"matmul peak ({after['peak']['matmul']['gflops']:.0f} GFLOP/s at {after['threads']} threads)._\n\n"
            "| stage | before | after | speed-up |\n|---|---|---|---|\n")
    body = "".join(f"| {r['stage']} | {1e3 * r['before_s']:.0f} ms, {_fraction(r['before_fraction'])} | "
                   f"{1e3 * r['after_s']:.0f} ms, {_fraction(r['after_fraction'])} | {r['speedup']:.2f}× |\n"
                   for r in speed_rows(folder, pair))
    tail = ""
    if (folder / PIPELINE).is_file():
        p = io.read_json(folder / PIPELINE)
        total = next(r for r in p["speedups"] if r["stage"] == "total (one pipeline)")
        files = p["files"]
        rounds, ratio = p.get("rounds", 1), p.get("total_ratio")
        times = f"{total['before_s']:.0f} s → {total['after_s']:.0f} s ({total['speedup']:.2f}×)"
        if rounds > 1 and ratio:
            how = (f", {rounds} pairs run in alternating order: median {times}, per round "
                   + ", ".join(f"{x:.2f}×" for x in ratio["per_round"])
                   + f", geometric mean {ratio['geometric_mean']:.2f}× (95% interval {ratio['ci_low']:.2f}–{ratio['ci_high']:.2f})")
        else:
            how = f" one after the other: {times}"
        tail = (f"\nOne shadow pipeline of `{p['config']}` ({p['threads']} threads), {p['before_commit']} against "
                f"{p['record']['commit']}{how}; {len(files['identical'])} of "
                f"{len(files['identical']) + len(files['different'])} of its files identical bit for bit (`{PIPELINE}`).\n")
    return head + body + tail + recipe_sentence(folder) + SPEED_END


def recipe_sentence(folder: str | Path) -> str:
    """What the recipe change of ``recipe_stem2.json`` buys and costs, or "" when the folder lacks it."""
    folder = Path(folder)
    if not (folder / RECIPE).is_file():
        return ""
    r = io.read_json(folder / RECIPE)
    lora = [c for c in r.get("contrasts", []) if c["contrast"] == "lora"]
    if not lora:
        return ""
    changes = ", ".join(f"`{k}={v}`" for k, v in r["changes"].items())
    step = next((v for v in io.read_json(folder / STEP)["variants"] if v["variant"].startswith("stem stride")), None) \
        if (folder / STEP).is_file() and "classifier.stem_stride" in r["changes"] else None
    each = [c for c in lora if c["cardinality"] != "mean"]  # bench/recipe_change.py marks the mean over them "mean"
    pooled = next((c for c in lora if c["cardinality"] == "mean"), each[-1])
    narrows = pooled["mean_difference"] < 0
    # the reading follows the interval: a fall whose interval reaches no change is said to be one on average only
    verb = ("narrows" if pooled["ci_high"] < 0 else "narrows on average, by an interval that reaches no change"
            if narrows else "does not narrow")
    buys = f" a classifier's training step runs {step['speedup']:.2f}× faster (`{STEP}`), {'but' if narrows else 'and'}" if step else ""
    each = ", ".join(f"{c['cardinality'].replace('x', '×')} |D| {c['reference_mean']:+.1f} → {c['changed_mean']:+.1f}"
                     for c in each)
    mean = "averaged over the cardinalities" if pooled["cardinality"] == "mean" else "the change"
    per_seed = ", ".join(f"{b - a:+.1f}" for a, b in zip(pooled["reference"], pooled["changed"]))
    return (f"\nWith {changes}{buys} what the LoRA adds (the LoRA student's lead over the base generator's, the "
            f"teacher's labels on both, points of real-test accuracy over seeds {', '.join(str(k) for k in pooled['seeds'])}) "
            f"{verb}: {each}; {mean} {pooled['mean_difference']:+.1f} "
            f"[{pooled['ci_low']:+.1f}, {pooled['ci_high']:+.1f}], per seed {per_seed} (`{RECIPE}`).\n")
