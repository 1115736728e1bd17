import pandas as pd
import pytest

from tckr.privacy import ledger
from tckr.reporting import canvas, phase_figures, plots
from tckr.runfolder import artifacts


def test_save_figure_keeps_dotted_names(tmp_path):
    plt = canvas.pyplot()
    for name in ("mia_roc_student_synth0.1x", "mia_roc_student_synth0.2x"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        canvas.save_figure(fig, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mia_roc_student_synth0.1x.pdf", "mia_roc_student_synth0.1x.png",
        "mia_roc_student_synth0.2x.pdf", "mia_roc_student_synth0.2x.png"]


def test_table_markdown_and_missing_inputs(tmp_path):
    t = pd.DataFrame({"model": ["teacher", "student_synth1x"], "role": ["teacher", "student"], "cardinality": [float("nan"), 1.0],
                      "accuracy": [90.0, 88.5], "auc_mia": [60.0, float("nan")], "tpr_at_1pct": [3.0, 1.0], "aop": [62.5, 88.5]})
    md = artifacts.table_markdown(t)
    assert "| teacher | real | 90.00 | 60.00 | 3.00 | 62.50 |" in md and "| student_synth1x | 1× | 88.50 | – |" in md
    (tmp_path / "config.yaml").write_text("mia: {attacks: [lira_online]}\n")
    with pytest.raises(FileNotFoundError, match="some figures could not be drawn"):
        plots.make_figures(tmp_path, ("table",), log=lambda m: None)
    with pytest.raises(ValueError, match="run_dir"):
        plots.make_figures(None)


def fake_mia_run(tmp_path, n_shadows=16, headline_json=None, config="mia: {attacks: [lira_online, rmia]}\n"):
    """A run folder with only the result files the MIA figures read: two targets × three attacks."""
    import numpy as np

    from tckr.core import io

    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.yaml").write_text(config)
    rows = []
    for t, role in (("teacher", "teacher"), ("student_synth1x", "student")):
        for k, a in enumerate(("lira_online", "lira_online_fixed", "rmia")):
            fpr = np.linspace(0, 1, 11)
            tpr = np.clip(fpr ** (1.0 / (1.2 + k + (role == "teacher"))), 0, 1)
            io.save_csv(tmp_path / "mia" / "roc" / f"{t}_{a}.csv", pd.DataFrame({"fpr": fpr, "tpr": tpr}))
            rows.append({"target": t, "role": role, "attack": a, "auc": float(np.trapezoid(tpr, fpr)), "auc_lo": 0.5, "auc_hi": 0.9,
                         "tpr_at_1pct": 0.01 * (k + 1), "n_shadows": n_shadows, "n_members": 50, "n_nonmembers": 50})
    io.save_csv(tmp_path / "results" / "mia.csv", pd.DataFrame(rows))
    if headline_json:
        io.write_json(tmp_path / "results" / "headline.json", headline_json)
    return tmp_path


def test_headline_attack_reads_headline_json_else_the_config_rule(tmp_path):
    run_dir = fake_mia_run(tmp_path / "a", headline_json={"attack": "rmia", "setting": "rmia", "n_shadows": 16, "rule": "x"})
    assert ledger.headline(run_dir) == "rmia"  # not the first of mia.attacks
    assert ledger.headline(fake_mia_run(tmp_path / "b")) == "lira_online_fixed"  # auto, 16 shadows in mia.csv
    assert ledger.headline(fake_mia_run(tmp_path / "c", n_shadows=64)) == "lira_online"
    assert ledger.headline(fake_mia_run(tmp_path / "d", config="mia: {headline: rmia}\n")) == "rmia"


def test_mia_roc_draws_the_saved_arrays_of_the_headline(tmp_path):
    import numpy as np

    run_dir = fake_mia_run(tmp_path, headline_json={"attack": "lira_online_fixed", "setting": "auto", "n_shadows": 16, "rule": "x"})
    fig = plots.mia_roc_figure(run_dir)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith(("teacher", "student"))]
    assert [ln.get_label().split(" (")[0] for ln in lines] == ["teacher", "student_synth1x"]
    for ln, t in zip(lines, ("teacher", "student_synth1x")):
        np.testing.assert_array_equal(ln.get_ydata(), 100 * pd.read_csv(run_dir / "mia" / "roc" / f"{t}_lira_online_fixed.csv")["tpr"])
    per_target = plots.mia_roc_figure(run_dir, "teacher")
    labels = [ln.get_label() for ln in per_target.axes[0].get_lines() if not ln.get_label().startswith("_")]
    assert len(labels) == 3 and sum("[headline]" in x for x in labels) == 1 and "lira_online_fixed [headline]" in labels[1]
    canvas.pyplot().close("all")
    names = sorted(p.name for p in plots.plot_mia_roc(run_dir))
    assert names == sorted(f"{s}.{e}" for s in ("mia_roc", "mia_roc_teacher", "mia_roc_student_synth1x") for e in ("pdf", "png"))


def test_study_table_reads_only_and_its_writer_writes_it(tmp_path):
    from tckr.core import io
    from tckr.runfolder import artifacts

    run_dir = fake_mia_run(tmp_path, headline_json={"attack": "rmia", "setting": "rmia", "n_shadows": 16, "rule": "x"})
    io.save_csv(run_dir / "results" / "classifiers.csv", pd.DataFrame({
        "model": ["teacher", "student_synth1x"], "role": ["teacher", "student"], "cardinality": [float("nan"), 1.0],
        "label_mode": ["real", "soft"], "test_accuracy": [80.0, 60.0]}))
    mia = pd.read_csv(run_dir / "results" / "mia.csv")
    io.save_csv(run_dir / "results" / "mia.csv", mia.assign(cardinality=[float("nan")] * 3 + [1.0] * 3, label_mode=["real"] * 3 + ["soft"] * 3))
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    table = ledger.study_table(run_dir)
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # reading writes nothing
    assert list(table["model"]) == ["teacher", "student_synth1x"] and set(table["attack"]) == {"rmia"}
    mia = pd.read_csv(run_dir / "results" / "mia.csv").set_index(["target", "attack"])
    assert table.loc[0, "auc_mia"] == pytest.approx(100 * mia.loc[("teacher", "rmia"), "auc"])
    artifacts.write_study_table(run_dir, table)
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "results" / "table.csv"), table, check_dtype=False)
    assert (run_dir / "results" / "table.md").read_text() == artifacts.table_markdown(table)


def test_lora_figures_draw_the_saved_samples_and_history(tmp_path, monkeypatch):
    import numpy as np

    from tckr.core import io
    from tckr.runfolder import artifacts

    (tmp_path / "config.yaml").write_text("study: {dataset: fashion_mnist}\n")
    with pytest.raises(FileNotFoundError, match="samples"):
        phase_figures.plot_lora_samples(tmp_path)
    rng = np.random.default_rng(0)
    samples = {k: rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8) for k in ("real", "base", "lora")}
    artifacts.write_lora_samples(tmp_path, samples)
    io.save_csv(tmp_path / "lora" / "loss.csv", pd.DataFrame({"step": [1, 2, 3], "loss": [0.5, 0.4, 0.3]}))
    drawn = {}
    monkeypatch.setattr(canvas, "save_figure", lambda fig, stem: drawn.setdefault(stem.name, fig) and [stem])
    phase_figures.plot_lora_samples(tmp_path)
    phase_figures.plot_lora_loss(tmp_path)
    axes = drawn["lora_samples"].axes
    assert len(axes) == 10 * 3 * 2  # 10 classes × (real, base, LoRA) × 2 per class
    np.testing.assert_array_equal(axes[2].get_images()[0].get_array(), samples["base"][0])
    np.testing.assert_array_equal(drawn["lora_loss"].axes[0].get_lines()[0].get_ydata(), [0.5, 0.4, 0.3])
    canvas.pyplot().close("all")


def test_a_notebook_kernel_keeps_its_inline_backend_after_a_tckr_figure(tmp_path, monkeypatch):
    """In Jupyter (the inline backend ipykernel sets), a tckr figure must not switch pyplot to Agg: the user's own
    ``plt.plot(...); plt.show()`` in the next cell still shows an image."""
    import nbformat
    from nbclient import NotebookClient

    from tckr.core import paths, progress

    monkeypatch.delenv("MPLBACKEND", raising=False)  # conftest's Agg would stand in for the user's choice
    monkeypatch.delenv(progress.HEADLESS_ENV, raising=False)
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"import sys\nsys.path.insert(0, {str(paths.ROOT / 'src')!r})\nimport numpy as np\n"
                                  "from tckr.reporting import canvas\n"
                                  "fig = canvas.image_grid([np.zeros((4, 4, 3), np.uint8)], ['x'])\n"
                                  f"saved = canvas.save_figure(fig, __import__('pathlib').Path({str(tmp_path)!r}) / 'grid')"),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"),
        nbformat.v4.new_code_cell("import matplotlib\nprint(matplotlib.get_backend())"),
    ])
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert (tmp_path / "grid.png").is_file() and (tmp_path / "grid.pdf").is_file()
    shown = [o for o in nb.cells[1].outputs if o.get("output_type") == "display_data"]
    assert any("image/png" in o["data"] for o in shown), nb.cells[1].outputs
    assert "inline" in nb.cells[2].outputs[0]["text"], nb.cells[2].outputs


def test_headless_kernels_and_scripts_draw_with_agg(monkeypatch):
    from tckr.core import progress

    monkeypatch.setenv(progress.HEADLESS_ENV, "1")  # the study runner's kernels
    assert canvas._files_only()
    monkeypatch.delenv(progress.HEADLESS_ENV)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "matplotlib.pyplot", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "IPython", raising=False)
    assert canvas._files_only()  # a script or the tckr command that chose no backend
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    assert not canvas._files_only()
