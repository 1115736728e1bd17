"""tckr.release: a run's classifiers, adapter and prompts written to the release folders, read back, checked, and
evaluated in a fresh run without training."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from tckr import cli
from tckr.classification import batches, classifiers, evaluate, inference, train
from tckr.core import io
from tckr.generation import captions, generator, prompt_files
from tckr.reporting import release
from tckr.runfolder import artifacts, runs

MODELS = [("teacher", None, "real"), ("student", 0.5, "soft"), ("student", 0.5, "hard"), ("student", 1.0, "soft")]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny run with what a finished 04 leaves (random classifiers saved and evaluated by the run's own
    functions), captions of D and a rank-4 adapter."""
    run = runs.open_run("configs/tiny.yaml", tmp_path_factory.mktemp("release") / "run")
    torch.manual_seed(0)
    for role, multiple, mode in MODELS:
        arch = run.cfg.classifier.teacher_arch
        net = classifiers.build(arch, 10, pretrained=False, input_size=32)
        with torch.no_grad():  # a random head, so predictions vary between images
            net.get_classifier().weight.normal_(0, 1)
            net.get_classifier().bias.normal_(0, 1)
        model = classifiers.TrainedClassifier(net, arch, 10, input_size=32, stem_stride=classifiers.resolved_stem_stride(32))
        name = artifacts.model_name(role, multiple, mode)
        info = {"role": role, "name": name, "label_mode": mode, "multiple": multiple, "best_epoch": 2, "epochs_run": 2,
                "val_accuracy": 12.0, "train_seconds": 0.5, "train_size": 100, "seed": 0}
        path = artifacts.weights_file(run, role, multiple, mode)
        train._save_run_model(run, model, path, arch, info)
        io.save_csv(artifacts.history_file(run, name), pd.DataFrame({"epoch": [1, 2], "train_loss": [2.3, 2.1],
                                                                  "val_accuracy": [10.0, 12.0]}))
        evaluate.evaluate(run, classifiers.load_trained(path))
    captions.caption_run(run, progress=False)
    mod = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    io.save_weights(artifacts.adapter_path(run), {f"unet.{mod}.lora_A.weight": torch.randn(4, 32),
                                             f"unet.{mod}.lora_B.weight": torch.randn(32, 4)},
                    {"format": generator.ADAPTER_FORMAT, "rank": 4, "alpha": 4.0, "target_modules": ["to_q"],
                     "base_model": "models/tiny-sd-fashion", "steps": 4, "seed": 420})
    # what lora.finetune records beside the adapter: an adapter without its sha256 is refused (lora.adapter_problem)
    io.write_json(artifacts.adapter_path(run).parent / "training.json", {"steps": 4, "adapter_sha256": io.sha256_file(artifacts.adapter_path(run))})
    return run


@pytest.fixture(scope="module")
def released(finished_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    release.release(finished_run.dir, out, log=lambda m: None)
    return out


def test_release_writes_the_three_folders_with_sidecars(finished_run, released):
    t = released / "trained_mbnv3"
    assert sorted(p.relative_to(t).as_posix() for p in t.rglob("*.safetensors")) == [
        "students/fashion_mnist_student_synth0.5x_hard.safetensors", "students/fashion_mnist_student_synth0.5x_soft.safetensors",
        "students/fashion_mnist_student_synth1x_soft.safetensors", "teachers/fashion_mnist_teacher.safetensors"]
    table = pd.read_csv(finished_run.dir / "results" / "classifiers.csv").set_index("model")
    side = io.read_json(t / "students" / "fashion_mnist_student_synth0.5x_hard.json")
    assert side["test_accuracy"] == table.loc["student_synth0.5x_hard", "test_accuracy"]
    assert (side["arch"], side["input_size"], side["label_mode"], side["cardinality"]) == ("mobilenetv3_small_050", 32, "hard", 0.5)
    assert side["class_names"] == finished_run.class_names and side["normalisation"] == batches.normalisation(finished_run.cfg)
    assert side["git_commit"] == io.read_json(finished_run.dir / "environment.json")["git"]["commit"]
    assert side["config_hash"] == finished_run.cfg.hash() and [h["epoch"] for h in side["history"]] == [1, 2]
    # weights: the run's tensors, loaded through the classifier builder
    model = release.load_released("fashion_mnist_student_synth0.5x_hard", released)
    run_model = classifiers.load(artifacts.weights_file(finished_run, "student", 0.5, "hard"))
    for k, v in run_model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    # adapter and prompts
    lside = io.read_json(released / "lora_sd2" / "lora_tiny_fashion_mnist.json")
    assert (lside["rank"], lside["alpha"], lside["target_modules"], lside["base_model"]) == (4, 4.0, ["to_q"], "models/tiny-sd-fashion")
    assert generator.read_lora(released / "lora_sd2" / "lora_tiny_fashion_mnist.safetensors")[0]
    assert "load_lora" in (released / "lora_sd2" / "README.md").read_text()
    caps = captions.load_captions(finished_run)
    back = prompt_files.read_original_order(released / "prompts" / "original_order" / "fashion_mnist_original_order.txt",
                                        finished_run.class_names)
    assert back["prompt"].tolist() == caps["prompt"].tolist()
    grouped = prompt_files.read_grouped_by_class(released / "prompts" / "grouped_by_class" / "fashion_mnist_grouped_by_class.json")
    assert list(grouped) == finished_run.class_names and sum(map(len, grouped.values())) == len(caps)
    assert release.check(released) == []
    total = sum(f.stat().st_size for f in released.rglob("*") if f.is_file())
    assert total < 25e6


def test_evaluate_released_in_a_fresh_run_reproduces_the_recorded_accuracies(released, tmp_path):
    fresh = runs.open_run("configs/tiny.yaml", tmp_path / "fresh")
    table = release.evaluate_released(fresh, released, log=lambda m: None)
    assert len(table) == len(MODELS) and table["equal"].all()
    recorded = {io.read_json(f)["model"]: io.read_json(f)["test_accuracy"] for f in (released / "trained_mbnv3").glob("*/*.json")}
    rows = evaluate.results_table(fresh).set_index("model")["test_accuracy"]
    assert rows.to_dict() == recorded
    for name in recorded:
        conf = pd.read_csv(fresh.dir / "results" / f"confusion_{name}.csv")
        assert 100 * conf[conf.true_id == conf.predicted_id]["count"].sum() / conf["count"].sum() == pytest.approx(recorded[name])
    assert (fresh.dir / "figures" / "classifier_curves.png").is_file()
    assert pd.read_csv(fresh.dir / "results" / "per_class.csv")["model"].nunique() == len(MODELS)
    # the run's own steps now load the released teacher instead of training one
    assert train.teacher(fresh, progress=False).info["role"] == "teacher"
    assert classifiers.read_meta(artifacts.weights_file(fresh, "teacher"))["extra"]["source"] == "released"


def test_install_refuses_a_run_with_another_test_split_or_own_classifiers(finished_run, released, tmp_path):
    other = runs.open_run("configs/tiny.yaml", tmp_path / "other", overrides={"data.test_size": 100})
    with pytest.raises(release.ReleaseError, match="another test split"):
        release.install_released(other, released)
    own = runs.open_run("configs/tiny.yaml", tmp_path / "own")
    shutil.copyfile(artifacts.weights_file(finished_run, "student", 1.0, "soft"), artifacts.weights_file(own, "teacher"))
    with pytest.raises(release.ReleaseError, match="differs from the released"):
        release.install_released(own, released)


def test_check_catches_a_modified_file_and_rerelease_removes_stale_files(finished_run, released, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(released, out)
    teacher = out / "trained_mbnv3" / "teachers" / "fashion_mnist_teacher.safetensors"
    data = bytearray(teacher.read_bytes())
    data[-1] ^= 1
    teacher.write_bytes(bytes(data))
    assert release.check(out) == ["trained_mbnv3/teachers/fashion_mnist_teacher.safetensors: sha256 differs from "
                                  "trained_mbnv3/release.json (modified or damaged)"]
    assert cli.main(["release", "--check", "--out", str(out)]) == 1
    # a run without its 1x student: released again, that student's files go, unlisted files stay
    run_copy = tmp_path / "run"
    shutil.copytree(finished_run.dir, run_copy)
    for f in (run_copy / "classifiers").glob("fashion_mnist_mbnv3_synth1x.*"):
        f.unlink()
    keep = out / "trained_mbnv3" / "students" / "notes.txt"
    keep.write_text("not part of the release")
    assert cli.main(["release", str(run_copy), "--out", str(out), "--check"]) == 0
    students = out / "trained_mbnv3" / "students"
    assert not (students / "fashion_mnist_student_synth1x_soft.safetensors").exists()
    assert not (students / "fashion_mnist_student_synth1x_soft.json").exists()
    assert keep.is_file() and (students / "fashion_mnist_student_synth0.5x_soft.safetensors").is_file()
    manifest = json.loads((out / "trained_mbnv3" / "release.json").read_text())
    assert len(manifest["datasets"]["fashion_mnist"]["files"]) == 2 * 3
    assert "MB" in capsys.readouterr().out


def test_load_released_names_what_is_available(released, tmp_path):
    with pytest.raises(FileNotFoundError, match="fashion_mnist_teacher"):
        release.load_released("cifar10_teacher", released)
    logits = inference.predict_logits(release.load_released("fashion_mnist_teacher", released),
                                  np.zeros((2, 32, 32, 3), np.uint8), runs.open_run("configs/tiny.yaml", tmp_path / "r").cfg)
    assert logits.shape == (2, 10)


def test_the_committed_release_is_intact_and_reproduces_its_recorded_accuracies(tmp_path):
    """The repository's own release folders (written by tckr release from the run the README reports):
    every file matches its manifest, and the released classifiers, evaluated in a fresh run of their config without
    training, give exactly the test accuracies in their sidecars."""
    from tckr.core import paths

    models = release.released_models()
    if not models:
        pytest.skip("nothing released in this checkout (tckr release --run-dir runs/<id>)")
    assert release.check() == []
    datasets = {m["dataset"] for m in models.values()}
    assert datasets == {"fashion_mnist"}, datasets
    manifest = release.read_manifest(paths.ROOT / "trained_mbnv3")["datasets"]["fashion_mnist"]
    config = paths.ROOT / "configs" / f"{manifest['config']}.yaml"
    fresh = runs.open_run(config, tmp_path / "fresh")
    table = release.evaluate_released(fresh, log=lambda m: None)
    assert len(table) == len(models) and table["equal"].all(), table
    committed = pd.read_csv(paths.ROOT / "results" / "mini" / "results" / "classifiers.csv").set_index("model")
    assert {r.model: r.recorded for r in table.itertuples()} == committed.loc[table["model"], "test_accuracy"].to_dict()


def _front_matter(readme):
    import yaml

    text = readme.read_text()
    assert text.startswith("---\n"), text[:80]
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_release_folders_have_model_cards_with_the_measured_values(finished_run, tmp_path):
    """Each model folder's README.md opens with Hugging Face front matter whose metrics are the run's measured values:
    every classifier's test accuracy (results/classifiers.csv) and pre-registered attack AUC (results/mia.csv), the
    generator attack's AUC (results/ledger.csv)."""
    res = finished_run.dir / "results"
    mia = pd.DataFrame([{"target": m, "role": r, "cardinality": c, "label_mode": lm, "attack": "lira_online_fixed",
                         "auc": 0.5 + 0.01 * i, "auc_lo": 0.45 + 0.01 * i, "auc_hi": 0.55 + 0.01 * i, "tpr_at_1pct": 0.01}
                        for i, (r, c, lm) in enumerate(MODELS) for m in [artifacts.model_name(r, c, lm)]])
    gen = pd.DataFrame([{"release": "generator", "attack": "gen_lira_online_fixed", "headline": True, "auc": 0.613,
                         "auc_lo": 0.581, "auc_hi": 0.644}])
    mia.to_csv(res / "mia.csv", index=False)
    gen.to_csv(res / "ledger.csv", index=False)
    (res / "headline.json").write_text(json.dumps({"attack": "lira_online_fixed"}))
    try:
        release.release(finished_run.dir, tmp_path, log=lambda m: None)
    finally:
        for name in ("mia.csv", "ledger.csv", "headline.json"):
            (res / name).unlink()
    card = _front_matter(tmp_path / "trained_mbnv3" / "README.md")
    assert (card["library_name"], card["license"], card["datasets"]) == ("pytorch", "mit", ["zalando-datasets/fashion_mnist"])
    assert "image-classification" in card["tags"] and card["metrics"] == ["accuracy", "roc_auc"]
    table = pd.read_csv(res / "classifiers.csv").set_index("model")
    got = {e["name"]: {v["type"]: v["value"] for r in e["results"] for v in r["metrics"]} for e in card["model-index"]}
    assert sorted(got) == sorted(release.released_models(tmp_path))
    for i, (role, mult, mode) in enumerate(MODELS):
        name = artifacts.model_name(role, mult, mode)
        stem = release.released_name("fashion_mnist", role, mult, mode)
        assert got[stem] == {"accuracy": table.loc[name, "test_accuracy"], "roc_auc": round(100 * (0.5 + 0.01 * i), 2)}
    lora = _front_matter(tmp_path / "lora_sd2" / "README.md")
    assert (lora["library_name"], lora["base_model"], lora["license"]) == ("diffusers", "models/tiny-sd-fashion", "mit")
    assert lora["model-index"][0]["name"] == "lora_tiny_fashion_mnist"
    assert lora["model-index"][0]["results"][0]["metrics"][0]["value"] == 61.3
    text = (tmp_path / "lora_sd2" / "README.md").read_text()
    assert "load_lora" in text and 'generator.load("models/tiny-sd-fashion", lora=' in text  # the adapter's own base
    assert "{mini_base}" not in text
    assert release.check(tmp_path) == []  # the cards are recorded in the manifests
