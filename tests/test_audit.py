"""tckr.audit: nearest neighbours, the closeness tests, and the audit of planted synthetic sets."""

import sys
import types

import numpy as np
import pandas as pd
import pytest

from tckr import audit


def test_nearest_matches_brute_force():
    rng = np.random.default_rng(0)
    q, r = rng.standard_normal((37, 5)), rng.standard_normal((50, 5))
    d, j = audit.nearest(q, r, chunk=8)
    full = np.linalg.norm(q[:, None] - r[None], axis=2)
    np.testing.assert_array_equal(j, full.argmin(1))
    np.testing.assert_allclose(d, full.min(1), atol=1e-9)
    img = rng.integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
    px = audit.pixels(img)
    assert np.linalg.norm(px[0] - px[1]) == pytest.approx(np.sqrt(((img[0] / 255.0 - img[1] / 255.0) ** 2).mean()), rel=1e-5)


def test_closeness_tests_detect_planted_memorisation_and_not_chance():
    rng = np.random.default_rng(1)
    null = audit.closeness_tests(rng.random(500), rng.random(500))
    assert 0.4 < null["frac_closer_to_member"] < 0.6 and null["p_wilcoxon"] > 0.01 and null["p_binomial"] > 0.01
    d_h = rng.random(500)
    mem = audit.closeness_tests(0.5 * d_h, d_h)
    assert mem["frac_closer_to_member"] == 1.0 and mem["p_wilcoxon"] < 1e-10 and mem["p_mannwhitney"] < 1e-10
    assert mem["p_binomial"] < 1e-10


@pytest.fixture()
def planted_run(tmp_path, monkeypatch):
    """A tiny run whose 'synthetic' sets are noisy copies of D (1×) and of H (2×); a random-init teacher."""
    import tckr
    from tckr import classifiers, runs, train

    run = runs.open_run("configs/tiny.yaml", tmp_path / "run", overrides={"data.train_size": 80, "audit.max_synthetic": 60})
    D, H = run.real("D"), run.real("H")
    rng = np.random.default_rng(0)

    def noisy(x):
        return np.clip(x.astype(int) + rng.integers(-6, 7, x.shape), 0, 255).astype(np.uint8)

    sets = {1.0: (noisy(D.images), D.labels), 2.0: (noisy(np.r_[H.images, H.images]), np.r_[H.labels, H.labels])}
    stub = types.SimpleNamespace(
        available_multiples=lambda r: sorted(sets),
        load_synthetic=lambda r, m: types.SimpleNamespace(images=sets[m][0], labels=sets[m][1], prompts=[""] * len(sets[m][1])),
    )
    monkeypatch.setitem(sys.modules, "tckr.synthesis", stub)
    monkeypatch.setattr(tckr, "synthesis", stub, raising=False)
    model = classifiers.build(run.cfg.classifier.teacher_arch, 10, pretrained=False, input_size=32)
    model.tckr_input_size = 32
    monkeypatch.setattr(train, "teacher", lambda r, **kw: model.eval())
    return run


def test_audit_flags_copies_of_members_and_writes_files(planted_run):
    run = planted_run
    summ = audit.audit(run, progress=False).set_index(["source", "multiple", "space"])
    for space in audit.SPACES:
        mem = summ.loc[("synthetic", 1.0, space)]
        assert mem["n"] == 60 and mem["frac_closer_to_member"] > 0.95 and mem["p_wilcoxon"] < 1e-6
        non = summ.loc[("synthetic", 2.0, space)]
        assert non["frac_closer_to_member"] < 0.05 and non["p_wilcoxon"] > 0.5
    ctrl = summ.xs("control_val", level="source")
    assert len(ctrl) == 2 and ctrl["frac_closer_to_member"].between(0.2, 0.8).all()
    table = pd.read_csv(run.dir / "results" / "audit.csv")
    assert len(table) == 60 + 60
    for col in ("multiple", "synthetic_index", "label", "feature_dist_D", "feature_dist_H", "pixel_dist_D", "pixel_dist_H",
                "feature_nn_D", "pixel_nn_H", "feature_closer_to_member"):
        assert col in table.columns, col
    one = table[table["multiple"] == 1.0]
    assert (one["pixel_nn_D"] == one["synthetic_index"]).mean() > 0.95
    assert (run.dir / "results" / "audit_summary.json").is_file()
    names = {p.name for p in audit.plot(run)}
    assert names >= {"mia_audit_distances.png", "mia_audit_pairs.png", "mia_audit_pairs.pdf"}


def test_audit_without_synthetic_sets_is_a_no_op(planted_run, monkeypatch):
    import tckr

    stub = types.SimpleNamespace(available_multiples=lambda r: [], load_synthetic=None)
    monkeypatch.setitem(sys.modules, "tckr.synthesis", stub)
    monkeypatch.setattr(tckr, "synthesis", stub, raising=False)
    assert audit.audit(planted_run, progress=False).empty
    assert not (planted_run.dir / "results" / "audit.csv").exists()
