"""The DP mechanism (tckr.generation.dp_sgd), the DP classifier and LoRA's per-example clipping, the audit check with a
planted bug, and the dp config section."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tckr.classification import dp
from tckr.core import config
from tckr.core.config import ConfigError, config_from_dict, load_config
from tckr.generation import dp_sgd
from tckr.privacy import auditing, dp_study


def _cfg(**train):
    return config_from_dict({"study": {"device": "cpu", "num_threads": 2},
                             "train": {"lr": 1e-2, "weight_decay": 0.0, **train}}, registry=False)


# ---------------------------------------------------------------- the accountant is Opacus's own
@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_calibrated_noise_round_trips_through_opacus(accountant):
    from opacus.accountants import PRVAccountant, RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    q, steps, delta = 0.05, 100, 1e-5
    b = dp_sgd.calibrate(4.0, delta, q, steps, 1.0, accountant)
    assert b.noise_multiplier == get_noise_multiplier(target_epsilon=4.0, target_delta=delta, sample_rate=q, steps=steps,
                                                      accountant=accountant)
    acc = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=b.noise_multiplier, sample_rate=q)
    assert b.spent() == pytest.approx(acc.get_epsilon(delta), rel=1e-6)
    assert 4.0 - 0.05 <= b.spent() <= 4.0 + 1e-6  # Opacus's tolerance: at most the target, within 0.01 of it
    rec = b.record()
    assert {"epsilon_accountant", "delta", "noise_multiplier", "sample_rate", "steps", "accountant"} <= set(rec)
    assert dp_sgd.epsilon_spent(b.noise_multiplier / 2, q, steps, delta, accountant) > b.spent()  # less noise, more epsilon


def test_calibrate_refuses_bad_arguments():
    with pytest.raises(ValueError, match="accepted"):
        dp_sgd.calibrate(4.0, 1.5, 0.1, 10, 1.0)
    with pytest.raises(ValueError, match="accountant 'gdp' is not accepted"):
        dp_sgd.calibrate(4.0, 1e-5, 0.1, 10, 1.0, "gdp")


# ---------------------------------------------------------------- per-example clipping
def test_dp_classifier_clips_a_planted_large_gradient():
    torch.manual_seed(0)
    model = dp.build(config_from_dict({"classifier": {"input_size": 32, "pretrained": False}}, registry=False), "mobilenetv3_small_050", 10).train()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    params = {k: p for k, p in model.named_parameters()}
    loss_one = dp.cross_entropy_one(model, dict(model.named_buffers()))
    x = torch.randn(3, 3, 32, 32)
    y = torch.tensor([1, 2, 3])
    grads = dp_sgd.per_sample_grads(loss_one, params, (x, y))
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))
    C = float(norms[0]) / 10  # the planted example: a gradient 10 C, so the bound below is not met for free
    # per-example gradients are the gradients of each example alone
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x[1:2]), y[1:2]).backward()
    k = next(iter(params))
    torch.testing.assert_close(grads[k][1], params[k].grad, rtol=1e-4, atol=1e-6)
    with_planted = dp_sgd.clipped_sum(loss_one, params, (x, y), C)
    without = dp_sgd.clipped_sum(loss_one, params, (x[1:], y[1:]), C)
    contribution = torch.sqrt(sum((with_planted[k] - without[k]).pow(2).sum() for k in params))
    assert contribution <= C * (1 + 1e-4)
    assert contribution > 0.5 * C  # clipped to C, not dropped


# ---------------------------------------------------------------- the audit: a planted bug fails it
def _memorisation_audit(monkeypatch, planted: str | None) -> tuple[float, float]:
    """Train a tiny MLP with DP-SGD at eps = 1 on the IN half of 400 random canaries with random labels (in 256
    dimensions: separable, so memorised); return the one-run lower bound from its margins and the accountant's epsilon."""
    rng = np.random.default_rng(0)
    m, d = 400, 256
    x = rng.normal(size=(m, d)).astype(np.float32)
    y = rng.integers(0, 2, m)
    member = rng.random(m) < 0.5
    if planted == "no noise":
        monkeypatch.setattr(dp_sgd, "gaussian_noise", lambda like, std, gen: torch.zeros_like(like))
    cfg = _cfg()
    budget = dp_sgd.calibrate(1.0, 1e-5, 1.0, 60, 1.0)  # full batches: the accountant is quick at q = 1
    mlp = nn.Sequential(nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, 2))
    model, _ = dp.fit_private(cfg, "mlp", x[member], y[member], x[:8], y[:8], budget, seed=0, num_classes=2, model=mlp,
                              progress=False, chunk=512)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    margin = logits[np.arange(m), y] - logits[np.arange(m), 1 - y]
    return auditing.epsilon_one_run(margin[member], margin[~member], delta=1e-5), budget.spent()


def test_audit_fails_on_planted_bug_and_passes_correct_dp(monkeypatch):
    eps_lb, eps = _memorisation_audit(monkeypatch, "no noise")
    assert eps_lb > eps
    with pytest.raises(dp_study.DPAuditError, match="exceeds the accountant's epsilon"):
        dp_study.check_dp_audit(eps_lb, eps, "planted")
    monkeypatch.undo()
    eps_lb, eps = _memorisation_audit(monkeypatch, None)
    dp_study.check_dp_audit(eps_lb, eps, "correct")
    assert eps_lb <= eps


def test_check_dp_audit_rejects_non_numbers():
    with pytest.raises(ValueError, match="must be numbers"):
        dp_study.check_dp_audit(float("nan"), 1.0)
    dp_study.check_dp_audit(0.5, 1.0)


# ---------------------------------------------------------------- DP LoRA
def test_dp_lora_clips_per_example_gradients_of_the_tiny_generator():
    from tckr.generation import dp_lora, generator, lora

    torch.manual_seed(0)
    cfg = load_config("configs/tiny.yaml")
    pipe = generator.build_random("tiny", seed=1)
    lora.trainable_lora(pipe, cfg.lora)
    params = {n: p for n, p in pipe.unet.named_parameters() if p.requires_grad}
    assert params and all("lora_" in n for n in params)  # only the adapter is trained
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    ids = torch.tensor(pipe.tokenizer(["a", "b", "c"], padding="max_length", max_length=pipe.tokenizer.model_max_length).input_ids)
    batch = dp_lora.example_inputs(pipe, images, ids, cfg, torch.Generator().manual_seed(0))
    loss_one = dp_lora.denoising_loss_one(pipe.unet, pipe.scheduler)
    grads = dp_sgd.per_sample_grads(loss_one, params, batch)
    norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))
    C = float(norms.min()) / 4  # every example above C, so every one is clipped
    f = dp_sgd.clip_factors(grads, C)
    assert torch.allclose(norms * f, torch.full_like(norms, C), rtol=1e-3)
    total = dp_sgd.clipped_sum(loss_one, params, batch, C)
    assert torch.sqrt(sum(t.pow(2).sum() for t in total.values())) <= 3 * C * (1 + 1e-3)
    b = dp_lora.lora_budget(cfg, 100, 4.0, 1e-4)
    assert b.sample_rate == cfg.lora.batch_size / 100 and b.steps == cfg.lora.max_steps


# ---------------------------------------------------------------- the dp config section
def test_dp_section_defaults_and_hash_neutral():
    cfg = load_config("configs/tiny.yaml")
    assert cfg.dp.enabled is False and cfg.dp.epsilons == [1.0, 4.0, 8.0] and cfg.dp.delta == "auto"
    assert ("dp", None) in config.LATER_KEYS  # out of Config.hash() at its defaults: the pins of test_config.py hold
    on = load_config("configs/tiny.yaml", {"dp.enabled": True})
    assert on.to_dict()["dp"]["enabled"] is True and on.hash() != cfg.hash()
    assert dp.resolved_delta(cfg, 4000) == pytest.approx(1 / 40000)


@pytest.mark.parametrize("key, value, message", [
    ("dp.epsilons", [4.0, -1.0], r"dp.epsilons\[1\]: -1.0 is not accepted; accepted: > 0"),
    ("dp.epsilons", [], "dp.epsilons: .* accepted: one or more distinct positive numbers"),
    ("dp.delta", "sometimes", "dp.delta: 'sometimes' is not accepted; accepted: 'auto'"),
    ("dp.delta", 0.5, r"dp.delta: 0.5 is not accepted; accepted: 'auto' or a number in \(0, 0.01\)"),
    ("dp.max_grad_norm", 0, "dp.max_grad_norm: 0.0 is not accepted; accepted: > 0"),
    ("dp.accountant", "gdp", "dp.accountant: 'gdp' is not accepted; use one of 'rdp' | 'prv'"),
    ("dp.n_shadows", 3, "dp.n_shadows: 3 is not accepted; accepted: 0"),
    ("dp.epochs", -1, "dp.epochs: -1 is not accepted; accepted: >= 0"),
    ("dp.enabeld", True, "did you mean 'enabled'"),
])
def test_dp_section_bad_values_are_one_line_errors(key, value, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config("configs/tiny.yaml", {key: value})
    assert "\n" not in str(e.value)


def test_mini_dp_extends_mini_with_dp_enabled():
    cfg, mini = load_config("configs/mini-dp.yaml"), load_config("configs/mini.yaml")
    assert cfg.dp.enabled and cfg.data == mini.data and cfg.train == mini.train


def test_accuracy_interval_is_wilson():
    acc, lo, hi = dp_study.accuracy_interval(np.r_[np.ones(80, bool), np.zeros(20, bool)])
    assert acc == 80.0 and lo == pytest.approx(71.12, abs=0.1) and hi == pytest.approx(86.66, abs=0.1)


def test_matched_epoch_is_the_first_to_reach_the_accuracy():
    import pandas as pd

    h = pd.DataFrame({"epoch": [1, 2, 3, 4], "val_accuracy": [50.0, 70.0, 65.0, 80.0]})
    assert dp.matched_epoch(h, 65.0) == 2 and dp.matched_epoch(h, 75.0) == 4 and dp.matched_epoch(h, 90.0) is None


def test_dp_model_round_trips_with_its_budget_record(tmp_path):
    import pandas as pd

    from tckr.core import io

    cfg = config_from_dict({"classifier": {"input_size": 32, "pretrained": False}}, registry=False)
    model = dp.build(cfg, "mobilenetv3_small_050", 10).eval()
    b = dp_sgd.calibrate(8.0, 1e-5, 0.1, 20, 1.0)
    path = dp.save(model, tmp_path / "m.safetensors", arch="mobilenetv3_small_050", budget=b,
                   history=pd.DataFrame({"epoch": [1], "val_accuracy": [42.0]}))
    assert dp.is_done(path)
    loaded, rec = dp.load(path, cfg, 10)
    assert rec["noise_multiplier"] == b.noise_multiplier and rec["epsilon_accountant"] == pytest.approx(b.spent())
    assert rec["accountant"] == "rdp" and rec["steps"] == 20 and rec["sample_rate"] == 0.1 and rec["val_accuracy"] == 42.0
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
    path.write_bytes(path.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(io.CorruptFileError, match="sha256 differs"):
        dp.load(path, cfg, 10)


def test_tckr_dp_runs_the_study_on_the_named_run(monkeypatch, capsys):
    import pandas as pd

    from tckr.cli import parser as cli
    from tckr.runfolder import runs

    calls = []
    monkeypatch.setattr(runs, "open_run", lambda *a, **k: calls.append(("open_run", a)) or "RUN")
    monkeypatch.setattr(dp_study, "run_dp_study", lambda run, **k: calls.append(("dp", run, k)) or pd.DataFrame({"model": ["m"]}))
    assert cli.main(["dp", "--run-dir", "runs/r", "--no-progress"]) == 0
    assert calls == [("open_run", (None, "runs/r")), ("dp", "RUN", {"progress": False})]
    assert cli.main(["dp"]) == 2 and "needs --run-dir" in capsys.readouterr().err


def test_dp_study_refuses_a_run_without_dp_enabled():
    from types import SimpleNamespace

    run = SimpleNamespace(cfg=load_config("configs/tiny.yaml"), dir="runs/x")
    with pytest.raises(ValueError, match="dp.enabled is false"):
        dp_study.run_dp_study(run)


def test_dp_attack_scores_the_runs_preregistered_headline_with_its_population_sample(monkeypatch):
    """Every point of the plane is measured by one attack: the DP models by the run's pre-registered headline (RMIA
    at the mini tier, which needs the population sample Z), not by a LiRA of their own."""
    from types import SimpleNamespace

    from tckr.privacy import attacks, metrics, mia

    cfg = load_config("configs/mini-dp.yaml")
    run = SimpleNamespace(cfg=cfg, seed_for=lambda base: int(base))
    assert dp_study.headline_attack(run) == cfg.mia.headline_attack == "rmia"
    unset = SimpleNamespace(cfg=load_config("configs/mini-dp.yaml", {"mia.headline_attack": "", "mia.headline_test": "",
                                                                      "mia.headline_reason": ""}))
    assert dp_study.headline_attack(unset) == "lira_online_fixed"  # the mia.headline rule below 64 shadows
    monkeypatch.setattr(mia, "queries", lambda r: list(r.cfg.mia.queries))
    rng = np.random.default_rng(0)
    n, nz, m, q, c = 200, 60, 4, len(cfg.mia.queries), 10
    labels, z_labels = rng.integers(0, c, n), rng.integers(0, c, nz)
    member = np.arange(n) < n // 2
    keep = rng.random((m, n)) < 0.5

    def logits(boost):  # a model more confident on the examples it trained on
        x = rng.normal(size=(n, q, c)).astype(np.float32)
        x[np.arange(n), :, labels] += 2.0 * boost[:, None]
        return x, rng.normal(size=(nz, q, c)).astype(np.float32)

    target = logits(member.astype(float))
    shadows = [logits(k.astype(float)) for k in keep]
    pool = SimpleNamespace(labels=labels, member=member, population_labels=z_labels)
    out = dp_study._attack(run, target, shadows, keep, pool, 1e-5, "test shadows")
    assert out["attack"] == "rmia" and out["references"] == "4 test shadows"
    expected = attacks.score("rmia", attacks.stable_logit(target[0], labels),
                             np.stack([attacks.stable_logit(s[0], labels) for s in shadows]), keep,
                             target_z_phi=attacks.stable_logit(target[1], z_labels),
                             shadow_z_phi=np.stack([attacks.stable_logit(s[1], z_labels) for s in shadows]),
                             queries=list(cfg.mia.queries), rmia_a=cfg.mia.rmia_a, rmia_gamma=cfg.mia.rmia_gamma)
    assert out["auc"] == pytest.approx(100 * metrics.summarise(expected, member, cfg.mia.n_bootstrap, cfg.mia.seed)["auc"])
    assert out["auc"] > 70


def test_dp_costs_lists_every_model_made_with_its_seconds(tmp_path):
    """``results/dp_costs.csv`` reads each model's seconds from the record written beside it."""
    from types import SimpleNamespace

    from tckr.core import io

    run = SimpleNamespace(path=lambda *p: tmp_path.joinpath(*p))
    io.write_json(tmp_path / "dp" / "teachers" / "dp_teacher_eps1.json", {"wall_s": 170.0})
    io.write_json(tmp_path / "dp" / "shadows" / "eps1" / "shadow_000.json", {"wall_s": 160.0})
    io.write_json(tmp_path / "dp" / "lora" / "lora_eps1.json", {"seconds": 300.0})
    io.write_json(tmp_path / "dp" / "students" / "dp_lora_eps1_hard.json", {"extra": {"wall_s": 20.0}})
    io.write_json(tmp_path / "dp" / "teachers" / "matched_teacher.json", {"extra": {"wall_s": 30.0}})
    with open(tmp_path / "dp" / "lora" / "synthetic_eps1.npz", "wb") as fh:
        np.savez(fh, images=np.zeros(1), labels=np.zeros(1), seconds=40.0)
    t = dp_study.costs(run).set_index("model")
    assert t.loc["teachers/dp_teacher_eps1", ["kind", "seconds"]].tolist() == ["dp_teacher", 170.0]
    assert t.loc["shadows/eps1/shadow_000", "kind"] == "dp_shadow" and t.loc["lora/lora_eps1", "seconds"] == 300.0
    assert t.loc["students/dp_lora_eps1_hard", "seconds"] == 20.0 and t.loc["teachers/matched_teacher", "kind"] == "matched_teacher"
    assert t.loc["lora/synthetic_eps1", ["kind", "seconds"]].tolist() == ["dp_synthetic_set", 40.0]
    assert len(t) == 6


def test_dp_jobs_deal_the_loras_first_and_the_shards_split_them_without_overlap():
    from types import SimpleNamespace

    cfg = load_config("configs/mini-dp.yaml")
    run = SimpleNamespace(cfg=cfg)
    todo = dp_study.jobs(run)
    n = cfg.mia.n_shadows
    assert todo[:3] == [("lora", 1.0, 0), ("lora", 4.0, 0), ("lora", 8.0, 0)]
    assert len(todo) == 3 + 3 * (1 + n) and todo[3] == ("teacher", 1.0, 0) and todo[4] == ("shadow", 1.0, 0)
    shares = [[j for i, j in enumerate(todo) if i % 2 == k] for k in range(2)]
    assert sorted(shares[0] + shares[1]) == sorted(todo) and not set(shares[0]) & set(shares[1])
    assert {j[0] for j in shares[0]} == {j[0] for j in shares[1]} == {"lora", "teacher", "shadow"}
    no_lora = SimpleNamespace(cfg=load_config("configs/mini-dp.yaml", {"dp.lora": False}))
    assert all(j[0] != "lora" for j in dp_study.jobs(no_lora))


def test_the_matched_teacher_is_saved_at_the_configs_input_size(tmp_path):
    """A bare module saved without its input size is loaded at 224 px: the matched teacher keeps the config's."""
    from types import SimpleNamespace

    from tckr.classification import classifiers

    cfg = load_config("configs/mini-dp.yaml")
    run = SimpleNamespace(cfg=cfg, class_names=[str(i) for i in range(10)])
    model = classifiers.build(cfg.classifier.teacher_arch, 10, pretrained=False, input_size=cfg.classifier.input_size,
                              stem_stride=cfg.classifier.stem_stride)
    path = dp_study.save_bare(run, model.eval(), tmp_path / "matched_teacher.safetensors", {"role": "matched_teacher"})
    back = classifiers.load_trained(path)
    assert back.input_size == cfg.classifier.input_size == 32 and back.stem_stride == model.conv_stem.stride[0]
    assert back.info["role"] == "matched_teacher"
