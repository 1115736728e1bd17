"""What a recipe change costs in accuracy and buys in time: two several-seed studies of phases 00-04 on the same seeds.

Reads two result folders (or run folders) made by ``tckr study`` with ``study.seeds`` (``seed<k>/results/``): the
reference (``results/mini-seeds``) and the same config with the change (``--set`` on the command line), e.g.

    tckr study results/mini-seeds/config.yaml --run-dir runs/mini-fast-seeds --set study.name=mini-fast-seeds \\
        --set classifier.stem_stride=2 --set generator.dtype=bfloat16 --phases 00_data,...,04_run_evaluate
    python bench/recipe_change.py results/mini-seeds runs/mini-fast-seeds --out bench/measured/recipe_fast.json

For every model both hold on every seed: each seed's real-test accuracy in both, the paired difference (changed −
reference) with its mean and 95% t-interval over the seeds, and whether each changed value lies within the
reference's seed spread (its mean ± 2 sd over the seeds). For every contrast of
:mod:`tckr.reporting.attribution` (``lora``: the LoRA student − the base generator's, what D adds through the
generator; ``teacher``, ``public_gap``, ``student_gap``) at every cardinality both hold: its value per seed in both
and the paired change of the contrast (changed − reference), mean and 95% t-interval; with several cardinalities
also ``mean``: each seed's contrast averaged over them, paired the same way. A change can keep every model
within the spread and still narrow the ``lora`` contrast, the mechanism the mini tier exists to exercise. For every phase: the mean seconds over the seeds in both
and the ratio. The two were run at different times: the phase times are as each study recorded them (its own
machine load), the ratio a guide, not a side-by-side measurement.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def flat(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def accuracy_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Real-test accuracy, one row per model and one column per seed, of :func:`per_seed`'s ``classifiers.csv``."""
    return frame.pivot(index="model", columns="seed_run", values="test_accuracy")


def per_seed(folder: Path, name: str) -> pd.DataFrame:
    """``name`` (``classifiers.csv`` or ``phases.csv``) of every ``seed<k>`` of ``folder``, with a ``seed_run`` column."""
    seeds = sorted(folder.glob("seed*/results/" + name))
    if not seeds:
        raise SystemExit(f"{folder} holds no seed<k>/results/{name}: give a several-seed study's result or run folder")
    return pd.concat([pd.read_csv(f).assign(seed_run=int(f.parts[-3][4:])) for f in seeds], ignore_index=True)


def accuracy_rows(a: pd.DataFrame, b: pd.DataFrame) -> list[dict]:
    """Per model on the seeds both hold (``a``, ``b``: :func:`accuracy_table` of the reference and the change):
    accuracies, the paired difference's mean and t-interval, within-spread flags."""
    seeds = sorted(set(a.columns) & set(b.columns))
    rows = []
    for model in sorted(set(a.index) & set(b.index), key=lambda m: (m != "teacher", m)):
        x, y = a.loc[model, seeds].to_numpy(float), b.loc[model, seeds].to_numpy(float)
        d = y - x
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else np.nan
        lo, hi = x.mean() - 2 * x.std(ddof=1), x.mean() + 2 * x.std(ddof=1)
        rows.append({"model": model, "seeds": seeds, "reference": x.round(2).tolist(), "changed": y.round(2).tolist(),
                     "mean_difference": float(d.mean()), "ci_low": float(d.mean() - half), "ci_high": float(d.mean() + half),
                     "within_spread": [bool(lo <= v <= hi) for v in y]})
    return rows


def contrast_rows(a: pd.DataFrame, b: pd.DataFrame) -> list[dict]:
    """Per attribution contrast and cardinality both hold on their common seeds (``a``, ``b``: :func:`accuracy_table`
    of the reference and the change; the pairs are :func:`tckr.reporting.attribution.contrast_pairs`): the contrast
    (a − b, points) per seed in each, their means, and the paired change (changed − reference) with its mean and 95%
    t-interval."""
    from tckr.privacy import metrics
    from tckr.reporting import attribution

    seeds = sorted(set(a.columns) & set(b.columns))

    def row(name, part, what, x, y):
        d, half = y - x, metrics.t_halfwidth(y - x)
        return {"contrast": name, "cardinality": part, "what": what, "seeds": seeds,
                "reference": x.round(2).tolist(), "changed": y.round(2).tolist(),
                "reference_mean": float(x.mean()), "changed_mean": float(y.mean()),
                "mean_difference": float(d.mean()), "ci_low": float(d.mean() - half), "ci_high": float(d.mean() + half)}

    rows = []
    pairs = attribution.contrast_pairs(set(a.index) & set(b.index))
    for name, group in itertools.groupby(pairs, key=lambda p: p[0]):  # contrast_pairs gives a contrast's pairs together
        xs, ys = [], []
        for _, _, part, ma, mb, what in group:
            xs.append((a.loc[ma, seeds] - a.loc[mb, seeds]).to_numpy(float))
            ys.append((b.loc[ma, seeds] - b.loc[mb, seeds]).to_numpy(float))
            rows.append(row(name, part, what, xs[-1], ys[-1]))
        if len(xs) > 1:  # each seed's mean over the cardinalities: one reading of the contrast, paired over seeds
            rows.append(row(name, "mean", what, np.mean(xs, axis=0), np.mean(ys, axis=0)))
    return rows


def lora_summary(contrasts: list[dict]) -> str:
    """The ``lora`` contrast's reading for the record's summary: each cardinality's mean before -> after, and the
    paired change of its mean over the cardinalities (of the one cardinality when there is one)."""
    lora = [c for c in contrasts if c["contrast"] == "lora"]
    if not lora:
        return ""
    each = [c for c in lora if c["cardinality"] != "mean"]
    pooled = next((c for c in lora if c["cardinality"] == "mean"), each[-1])
    where = "averaged over the cardinalities" if pooled["cardinality"] == "mean" else "its change"
    each = ", ".join(f"{c['cardinality']} {c['reference_mean']:+.2f} -> {c['changed_mean']:+.2f}" for c in each)
    return (f"; lora contrast (points) {each}; {where} {pooled['mean_difference']:+.2f} "
            f"[{pooled['ci_low']:+.2f}, {pooled['ci_high']:+.2f}] (per seed "
            + ", ".join(f"{b - a:+.2f}" for a, b in zip(pooled["reference"], pooled["changed"])) + ")")


def phase_rows(ref: pd.DataFrame, new: pd.DataFrame) -> list[dict]:
    a, b = ref.groupby("phase")["seconds"].mean(), new.groupby("phase")["seconds"].mean()
    return [{"phase": p, "reference_s": float(a[p]), "changed_s": float(b[p]), "speedup": float(a[p] / b[p])}
            for p in sorted(set(a.index) & set(b.index))]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference", help="several-seed folder of the recipe as committed (e.g. results/mini-seeds)")
    ap.add_argument("changed", help="several-seed folder of the same config with the change")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from tckr.core import io
    from tckr.runfolder import runs

    ref_dir, new_dir = Path(args.reference), Path(args.changed)
    flat_a, flat_b = (flat(runs.read_saved_config(f / "config.yaml").to_dict()) for f in (ref_dir, new_dir))
    changes = {k: v for k, v in flat_b.items() if flat_a.get(k) != v and k != "study.name"}
    ref_acc, new_acc = (accuracy_table(per_seed(d, "classifiers.csv")) for d in (ref_dir, new_dir))
    acc, contrasts = accuracy_rows(ref_acc, new_acc), contrast_rows(ref_acc, new_acc)
    phases = phase_rows(per_seed(ref_dir, "phases.csv"), per_seed(new_dir, "phases.csv"))
    print(f"{new_dir} against {ref_dir}: {changes}")
    for r in acc:
        print(f"{r['model']:24s} {r['reference']} -> {r['changed']}  difference {r['mean_difference']:+.2f} "
              f"[{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]  within the reference's spread: {r['within_spread']}")
    for c in contrasts:
        print(f"{c['contrast']:12s} {c['cardinality']:>5s} {c['reference_mean']:+6.2f} -> {c['changed_mean']:+6.2f} points, "
              f"change {c['mean_difference']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]  ({c['what']})")
    for p in phases:
        print(f"{p['phase']:18s} {p['reference_s']:7.1f} s -> {p['changed_s']:7.1f} s  {p['speedup']:.2f}x")
    if args.out:
        from tckr.reporting import report

        total_a = sum(p["reference_s"] for p in phases)
        total_b = sum(p["changed_s"] for p in phases)
        outside = [r["model"] for r in acc if not all(r["within_spread"])]
        teacher = next((r for r in acc if r["model"] == "teacher"), None)
        summary = (", ".join(f"{k}={v}" for k, v in changes.items()) + f" over {len(acc[0]['seeds'])} seeds: phases "
                   f"{total_a / 60:.1f} -> {total_b / 60:.1f} min a seed ({total_a / total_b:.2f}x, each study's own timing)"
                   + (f"; teacher {teacher['mean_difference']:+.2f} points [{teacher['ci_low']:+.2f}, {teacher['ci_high']:+.2f}]"
                      if teacher else "")
                   + f"; {len(acc) - len(outside)} of {len(acc)} models within the reference's seed spread on every seed"
                   + (f" (not: {', '.join(outside)})" if outside else "")
                   + lora_summary(contrasts))
        io.write_json(args.out, {"reference": str(ref_dir), "changed": str(new_dir), "changes": changes,
                                 "accuracy": acc, "contrasts": contrasts, "phases": phases, "record": report.bench_record(summary)})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
