"""The figures drawn from the committed result folders: headline ROC with bootstrap bands, the front page's ledger,
the seeds figure's ticks and the privacy–utility plane with its table. Every check reads the plotted data back."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tckr.core import paths
from tckr.privacy import ledger, metrics
from tckr.reporting import canvas, plane, plots, privacy_figures, seeds_figure
from tckr.runfolder import artifacts

RESULTS = paths.ROOT / "results"
MAX_PX = (1600, 1200)  # README width at the saved dpi


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _copy(study: str, dest: Path, roc: bool = False) -> Path:
    """A committed result folder copied without its ROC files (unless ``roc``), so drawing writes only under tmp."""
    ignore = None if roc else shutil.ignore_patterns("mia", "images", "figures")
    return Path(shutil.copytree(RESULTS / study, dest / study, ignore=ignore))


def test_roc_band_resamples_members_and_non_members_of_the_saved_roc():
    rng = np.random.default_rng(3)
    member = np.r_[np.ones(300, bool), np.zeros(500, bool)]
    scores = np.round(rng.normal(member * 0.8, 1.0), 1)  # rounded: ties, so some ROC steps move both rates
    fpr, tpr = metrics.roc(scores, member)
    grid = np.geomspace(1e-3, 1, 50)
    lo, hi = privacy_figures.roc_band(fpr, tpr, 300, 500, grid)
    at = np.array([tpr[fpr <= g].max() for g in grid])
    assert (lo <= at + 1e-12).mean() > 0.9 and (at <= hi + 1e-12).mean() > 0.9
    assert (hi - lo).max() > 0.05 and (lo <= hi).all()
    again = privacy_figures.roc_band(fpr, tpr, 300, 500, grid)
    np.testing.assert_array_equal(lo, again[0])  # seeded: the same band every time
    assert not np.array_equal(hi, privacy_figures.roc_band(fpr, tpr, 300, 500, grid, seed=1)[1])
    # the bootstrap of the examples themselves (metrics' resampling) gives the same spread at 10% FPR
    draws = []
    for b in range(200):
        r = np.random.default_rng(100 + b)
        ix = np.r_[r.choice(300, 300), 300 + r.choice(500, 500)]
        f, t = metrics.roc(scores[ix], member[ix])
        draws.append(t[f <= 0.1].max())
    k = np.searchsorted(grid, 0.1)
    assert abs((hi[k] - lo[k]) - (np.percentile(draws, 97.5) - np.percentile(draws, 2.5))) < 0.05
    with pytest.raises(ValueError, match="members"):
        privacy_figures.roc_band(fpr, tpr, 301, 500, grid)


def _legend_auc(label: str) -> list[float]:
    return [float(x) for x in re.findall(r"\d+\.\d", label.split("AUC", 1)[1])]


def _table_auc(md: str, release: str, card: str, attack: str) -> list[float]:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 4 and cells[0] == release and cells[1] == card and cells[3] == f"**{attack}**":
            return [float(x) for x in re.findall(r"\d+\.\d", cells[4].split(", ≤")[0])]
    raise AssertionError(f"no headline row {release} {card} {attack}")


@pytest.mark.parametrize("study", ["mini", "mini-full", "mini-leaky-t2i"])
def test_roc_draws_every_headline_row_with_the_tables_auc(study, tmp_path):
    folder = RESULTS / study
    heads = privacy_figures.headline_rows(folder)
    md = ledger.markdown(ledger.with_subset(artifacts.read_result(folder, "ledger.csv")), headline_only=True)
    fig = privacy_figures.roc_figure(folder)
    drawn = {}
    for ax in fig.axes:
        if not ax.lines:
            continue
        assert ax.get_xscale() == ax.get_yscale() == "log"
        marks = sorted(ln.get_xdata()[0] for ln in ax.lines if ln.get_linestyle() == "--")
        assert marks == [0.1, 1.0]  # percent
        for ln in ax.lines:
            if "AUC" in ln.get_label():
                drawn[ln.get_label().split(":")[0]] = ln
    assert len(drawn) == len(heads)
    for _, r in heads.iterrows():
        ln = drawn[privacy_figures.row_label(r)]
        roc = artifacts.read_roc(folder, privacy_figures.roc_stem(r), r["attack"])
        np.testing.assert_allclose(ln.get_ydata(), 100 * roc["tpr"])
        card = "–" if pd.isna(r["cardinality"]) else f"{r['cardinality']:g}×{ledger.variant_label(r)}"
        assert _legend_auc(ln.get_label()) == _table_auc(md, r["release"], card, r["attack"])
        assert len(_legend_auc(ln.get_label())) == 3  # estimate and its 95% interval
    pipes = heads[heads["source"] == "mia_pipeline.csv"]  # students through their shadow pipelines, not mia.csv's rows
    assert len(pipes) and all(privacy_figures.roc_stem(r).endswith("_pipeline") for _, r in pipes.iterrows())
    out = canvas.save_figure(fig, tmp_path / "roc")
    w, h = png_size(out[1])
    assert w <= MAX_PX[0] and h <= MAX_PX[1]


@pytest.mark.parametrize("study", ["mini", "mini-full", "mini-leaky"])
def test_front_page_ledger_has_headline_rows_canaries_apart_and_fits_the_readme(study, tmp_path):
    folder = RESULTS / study
    t = ledger.with_subset(artifacts.read_result(folder, "ledger.csv"))
    fig = privacy_figures.ledger_headline_figure(folder)
    n_head = int(t["headline"].sum())
    heads = ledger.headlines(t)
    key = ["source", "target", "attack"]
    n_canary = int(t[t["subset"] == "canaries"].set_index(key).index.isin(heads.set_index(key).index).sum())
    assert len(fig.axes) == (4 if n_canary else 2)
    auc_axes = fig.axes[0::2]
    assert len(auc_axes[0].get_yticklabels()) == n_head
    points = auc_axes[0].lines[0].get_xdata()
    np.testing.assert_allclose(sorted(points), sorted(100 * heads["auc"]))
    if n_canary:
        assert len(auc_axes[1].get_yticklabels()) == n_canary
        canary_auc = auc_axes[1].lines[0].get_xdata()
        assert max(canary_auc) > max(auc_axes[0].get_xlim())  # it would have stretched the headline panel
    w, h = png_size(canvas.save_figure(fig, tmp_path / "ledger_headline")[1])
    assert w <= MAX_PX[0] and h <= MAX_PX[1]


@pytest.mark.parametrize("study", ["mini-seeds", "mini-full-earlier-base-seeds"])
def test_seeds_figure_ticks_are_the_cardinalities_and_the_teacher_has_its_band(study, tmp_path, monkeypatch):
    folder = _copy(study, tmp_path)
    drawn = {}
    save = canvas.save_figure

    def keep(fig, stem):
        drawn["ax"] = fig.axes[0]
        drawn["labels"] = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        drawn["ticks"] = list(fig.axes[0].get_xticks())
        return save(fig, stem)

    monkeypatch.setattr(canvas, "save_figure", keep)
    out = seeds_figure.seeds_cardinality_figure(folder)
    allc = pd.concat([pd.read_csv(d / "results" / "classifiers.csv") for d in artifacts.seed_folders(folder)])
    cards = sorted(allc.loc[allc["role"] == "student", "cardinality"].unique())
    assert drawn["ticks"] == pytest.approx(cards)
    assert drawn["labels"] == [f"{c:g}×" for c in cards]
    teacher = allc.loc[allc["role"] == "teacher", "test_accuracy"].to_numpy(float)
    ax = drawn["ax"]
    mean_line = [ln for ln in ax.lines if ln.get_label().startswith("teacher")]
    assert mean_line and mean_line[0].get_ydata()[0] == pytest.approx(teacher.mean())
    span = ax.patches[0]  # the teacher's 95% band (axhspan: a Rectangle, a Polygon in older matplotlib)
    band = [span.get_y(), span.get_y() + span.get_height()] if hasattr(span, "get_height") else span.get_xy()[:, 1]
    h = metrics.t_halfwidth(teacher)
    assert min(band) == pytest.approx(teacher.mean() - h) and max(band) == pytest.approx(teacher.mean() + h)
    w, hgt = png_size(out[1])
    assert w <= MAX_PX[0] and hgt <= MAX_PX[1]


def test_privacy_utility_table_has_one_row_per_model_from_the_ledger_and_the_seeds(tmp_path):
    mini, control = RESULTS / "mini", RESULTS / "mini-leaky-t2i"
    t = plane.table(mini, [control])
    assert list(t.columns) == plane.COLUMNS
    clf, ctrl = artifacts.read_result(mini, "classifiers.csv"), artifacts.read_result(control, "classifiers.csv")
    students = ctrl.loc[ctrl["role"] == "student", "model"]
    assert list(t["model"]) == list(clf["model"]) + list(students)
    assert list(t["kind"]) == list(clf["role"]) + ["control_student"] * len(students)
    assert list(t["study"]) == ["mini"] * len(clf) + ["mini-leaky-t2i"] * len(students)
    heads = ledger.headlines(ledger.with_subset(artifacts.read_result(mini, "ledger.csv"))).set_index("target")
    for _, r in t[t["study"] == "mini"].iterrows():
        h = heads.loc[r["model"]]
        assert r["auc"] == pytest.approx(100 * h["auc"]) and r["tpr_at_1"] == pytest.approx(100 * h["tpr_at_1pct"])
        assert r["tpr_at_1_lo"] == pytest.approx(100 * h["tpr_at_1pct_lo"])
        seeds = [pd.read_csv(d / "results" / "classifiers.csv").set_index("model").loc[r["model"], "test_accuracy"]
                 for d in artifacts.seed_folders(RESULTS / "mini-seeds")]
        assert r["accuracy"] == pytest.approx(np.mean(seeds)) and "mini-seeds" in r["source"]
        assert r["accuracy_hi"] - r["accuracy"] == pytest.approx(metrics.t_halfwidth(seeds))
    # the control ran on 200 non-members: its TPR@1% is left out as the ledger table leaves it out
    c = t[t["kind"] == "control_student"]
    assert c["tpr_at_1"].isna().all() and c["auc"].notna().all() and "Wilson" in c["source"].iloc[0]
    acc = ctrl.set_index("model").loc[c["model"].iloc[0], "test_accuracy"]
    assert c["accuracy"].iloc[0] == acc and c["accuracy_lo"].iloc[0] < acc < c["accuracy_hi"].iloc[0]


def test_privacy_utility_figure_csv_and_dp_rows_through_the_figure_command(tmp_path):
    mini, control = _copy("mini", tmp_path), _copy("mini-leaky-t2i", tmp_path)
    _copy("mini-seeds", tmp_path)
    dp = pd.DataFrame([{"study": "", "model": "teacher_dp_eps8", "kind": "dp_teacher", "accuracy": 70.0,
                        "accuracy_lo": 69.0, "accuracy_hi": 71.0, "tpr_at_1": 1.1, "tpr_at_1_lo": 0.7, "tpr_at_1_hi": 1.5,
                        "auc": 50.5, "auc_lo": 49.5, "auc_hi": 51.5, "eps_lb": 0.2, "source": "planted"}])
    dp.to_csv(mini / "results" / "dp_models.csv", index=False)
    images = tmp_path / "images"
    out = plots.result_figures([mini, control], images, which=("privacy_utility",), log=lambda *_: None)
    names = sorted(p.name for p in out[mini.as_posix()])
    assert {"privacy_utility.png", "privacy_utility.csv", "privacy_utility.md"} <= set(names)
    t = pd.read_csv(images / "mini" / "privacy_utility.csv", keep_default_na=False, na_values=[""])
    assert list(t.columns) == plane.COLUMNS
    assert not t.duplicated(["study", "model"]).any()
    assert set(t["kind"]) == {"teacher", "student", "control_student", "dp_teacher"}
    row = t[t["kind"] == "dp_teacher"].iloc[0]
    assert row["study"] == "mini" and row["eps_lb"] == 0.2 and row["source"] == "planted"
    assert len(t) == len(pd.read_csv(mini / "results" / "classifiers.csv")) + 3 + 1  # 3 control students, 1 DP row
    assert "| mini | teacher_dp_eps8 | dp_teacher | 70.0 [69.0, 71.0] | 1.1 [0.7, 1.5] |" in (
        images / "mini" / "privacy_utility.md").read_text()
    w, h = png_size(images / "mini" / "privacy_utility.png")
    assert w <= MAX_PX[0] and h <= MAX_PX[1]
    assert not (RESULTS / "mini" / "results" / "privacy_utility.csv").exists()
    # the points drawn are the table's
    fig = plane.figure(t, "x")
    xs = np.sort(np.concatenate([ln.get_xdata() for ln in fig.axes[1].lines if ln.get_marker() in tuple("os^Dv<>p")]))
    np.testing.assert_allclose(xs, np.sort(t["auc"].to_numpy(float)))
    canvas.pyplot().close(fig)
    pd.DataFrame({"model": ["x"]}).to_csv(mini / "results" / "dp_models.csv", index=False)
    with pytest.raises(ValueError, match=r"dp_models.csv: missing columns study, kind.*holds the columns"):
        plane.table(mini)


def test_privacy_utility_pairs_a_study_with_its_seeds_and_controls(tmp_path):
    folders = [tmp_path / n for n in ("mini", "mini-leaky", "mini-leaky-t2i", "mini-full", "mini-seeds")]
    assert plane.control_folders(folders[0], folders) == folders[1:3]
    assert plane.control_folders(folders[1], folders) == []
    versions = [RESULTS / n for n in ("mini-leaky", "mini-leaky-earlier-base", "mini-leaky-t2i")]  # one config, three versions
    assert plane.control_folders(RESULTS / "mini", [RESULTS / "mini", *versions]) == versions[:1]
    assert artifacts.seeds_folder(RESULTS / "mini") == RESULTS / "mini-seeds"
    assert artifacts.seeds_folder(RESULTS / "mini-leaky") is None
    lo, hi = plane.wilson(80.0, 10_000)
    assert lo == pytest.approx(79.2, abs=0.05) and hi == pytest.approx(80.8, abs=0.05)


def test_figure_names_and_inputs_cover_the_new_figures():
    assert {"ledger_headline", "privacy_utility", "roc"} <= set(plots.FIGURES) <= set(plots.PLOTTERS)
    assert plots.PLOTTERS["roc"] is plots.plot_roc


def test_audit_figure_reads_an_audit_summary_written_before_the_resplit_test():
    fig = plots.audit_distances_figure(RESULTS / "mini-earlier-base")  # its audit_summary.csv has dup_threshold, no _D/_H columns
    titles = [ax.get_title() for ax in fig.axes]
    summ = pd.read_csv(RESULTS / "mini-earlier-base" / "results" / "audit_summary.csv")
    s = summ[summ["source"] == "synthetic"].iloc[0]
    assert "written before the D/H re-split test" in titles[0]
    assert f"near copies of D {int(s['near_copies_dup'])}/{int(s['n'])} = {100 * s['frac_near_copies_dup']:.1f}%" in titles[0]
    thresholds = [ln.get_xdata()[0] for ln in fig.axes[0].lines if ln.get_label() == "duplicate threshold (D)"]
    assert thresholds == [pytest.approx(s["dup_threshold"])]
    canvas.pyplot().close(fig)


def _dp_study(tmp_path: Path, name: str, **changes) -> Path:
    """A DP study's result folder beside a copied mini: mini's config with ``dp`` (and ``changes``) set, one DP row."""
    import yaml

    folder = tmp_path / name
    (folder / "results").mkdir(parents=True)
    cfg = yaml.safe_load((RESULTS / "mini" / "config.yaml").read_text())
    cfg["study"]["name"], cfg["dp"]["enabled"] = name, True
    for section, kv in changes.items():
        cfg[section].update(kv)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    row = {c: 1.0 for c in plane.COLUMNS} | {"study": name, "model": "dp_teacher_eps1", "kind": "dp_teacher", "source": "x"}
    pd.DataFrame([row]).to_csv(folder / "results" / "dp_models.csv", index=False)
    return folder


def test_a_dp_study_puts_its_models_on_its_studys_plane_and_draws_that_plane(tmp_path):
    mini = _copy("mini", tmp_path)
    _copy("mini-seeds", tmp_path)
    dp_ = _dp_study(tmp_path, "mini-dp")
    folders = [mini, dp_]
    assert plane.dp_folders(mini, folders) == [dp_] and plane.base_study(dp_, folders) == mini
    assert plane.base_study(mini, folders) is None and plane.dp_folders(dp_, folders) == []
    t = plane.table(mini, dp=plane.dp_folders(mini, folders))
    assert t["kind"].tolist()[-1] == "dp_teacher" and t["study"].tolist()[-1] == "mini-dp"
    out = plots.result_figures(folders, tmp_path / "images", which=("privacy_utility",), log=lambda *_: None)
    for f in (mini, dp_):  # the same plane in both folders: the study's with the DP study's models
        drawn = pd.read_csv(tmp_path / "images" / f.name / "privacy_utility.csv")
        pd.testing.assert_frame_equal(drawn, t.reset_index(drop=True), check_dtype=False)
        assert tmp_path / "images" / f.name / "privacy_utility.png" in out[f.as_posix()]
    other = _dp_study(tmp_path, "mini-dp-other", train={"epochs": 3})  # another recipe under the study's name
    with pytest.raises(ValueError, match=r"mini-dp-other is named as a DP study of .*differs .* in more than the sections study, dp"):
        plane.dp_folders(mini, [mini, other])
