import pandas as pd
import pytest

from tckr import plots


def test_save_figure_keeps_dotted_names(tmp_path):
    plt = plots._plt()
    for name in ("mia_roc_student_synth0.1x", "mia_roc_student_synth0.2x"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        plots.save_figure(fig, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mia_roc_student_synth0.1x.pdf", "mia_roc_student_synth0.1x.png",
        "mia_roc_student_synth0.2x.pdf", "mia_roc_student_synth0.2x.png"]


def test_table_markdown_and_missing_inputs(tmp_path):
    t = pd.DataFrame({"model": ["teacher", "student_synth1x"], "role": ["teacher", "student"], "cardinality": [float("nan"), 1.0],
                      "accuracy": [90.0, 88.5], "auc_mia": [60.0, float("nan")], "tpr_at_1pct": [3.0, 1.0], "aop": [62.5, 88.5]})
    md = plots.table_markdown(t)
    assert "| teacher | real | 90.00 | 60.00 | 3.00 | 62.50 |" in md and "| student_synth1x | 1× | 88.50 | – |" in md
    (tmp_path / "config.yaml").write_text("mia: {attacks: [lira_online]}\n")
    with pytest.raises(FileNotFoundError, match="some figures could not be drawn"):
        plots.make_figures(tmp_path, ("table",), log=lambda m: None)
    with pytest.raises(ValueError, match="run_dir"):
        plots.make_figures(None)
