"""Synthesis mechanics on the tiny generator architecture with random weights (the images are noise; what is
tested is the plan, the seeds, the shards, resuming and the subsets)."""

import numpy as np
import pandas as pd
import pytest

from tckr import cli
from tckr.core import io, shards
from tckr.generation import captions, generator, synthesis
from tckr.reporting import phase_figures
from tckr.runfolder import artifacts, runs, synthetic

# 20 images (0.2 × |D| = 100) in shards of 7, 7 and 6; 2 pipeline calls per shard (batch 6)
OVERRIDES = {"synthesis.cardinalities": [0.1, 0.2], "mia.pipeline_cardinalities": [0.2], "synthesis.shard_size": 7, "synthesis.steps": 2,
             "synthesis.batch_size": 6}
N, SHARD = 20, 7


class Interrupted(RuntimeError):
    pass


class CountingPipe:
    """Wraps a pipeline: counts calls and raises after ``fail_after`` of them."""

    def __init__(self, pipe, fail_after=None):
        self.pipe, self.fail_after, self.calls = pipe, fail_after, 0

    def generator(self, base="random:tiny"):
        """This wrapper as a :class:`tckr.generator.Generator` with the recorded base ``base``."""
        return generator.Generator(self, base=base)

    @property
    def device(self):
        return self.pipe.device

    def __call__(self, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Interrupted("simulated crash")
        self.calls += 1
        return self.pipe(**kwargs)


@pytest.fixture(scope="module")
def pipe():
    import torch

    from tckr.generation import generator

    torch.set_num_threads(2)
    return generator.Generator(generator.build_random("tiny", seed=0), base="random:tiny")


def _run(path, **extra):
    run = runs.open_run("configs/tiny.yaml", path, overrides={**OVERRIDES, **extra})
    if run.cfg.synthesis.prompt_mode == "caption":
        captions.caption_run(run, progress=False)
    return run


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pipe):
    run = _run(tmp_path_factory.mktemp("synthesis") / "uninterrupted")
    summary = synthesis.generate(run, pipe, progress=False)
    assert summary["shards_made"] == 3 and summary["images_made"] == N
    return run


def _shards(run):
    return [np.load(synthetic.shard_paths(run, j)[0]) for j in range(3)]


def test_plan_is_class_balanced_and_cycles_captions(reference):
    table = synthesis.plan(reference)
    assert list(table.columns) == list(synthesis.PLAN_COLUMNS) and len(table) == N
    assert np.bincount(table["label"], minlength=10).tolist() == [2] * 10
    assert table["shard"].tolist() == [i // SHARD for i in range(N)]
    caps = captions.load_captions(reference)
    for c in range(10):
        class_prompts = caps.loc[caps["label"] == c, "prompt"].tolist()
        got = table.loc[table["label"] == c, "prompt"].tolist()
        order = synthesis.caption_order(reference, c, len(class_prompts))
        assert sorted(order.tolist()) == list(range(len(class_prompts)))
        assert got == [class_prompts[order[r % len(class_prompts)]] for r in range(2)]
        assert all(p.startswith(reference.class_names[c] + ": ") for p in got)
    assert synthetic.class_counts(23, 10).tolist() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]


def test_a_small_set_uses_a_random_share_of_the_captions(reference):
    # the first k captions of a class in the plan are a seeded random subset, not D's first k
    firsts = [synthesis.caption_order(reference, c, 50)[:10] for c in range(10)]
    assert any(sorted(f.tolist()) != list(range(10)) for f in firsts)
    assert not np.array_equal(firsts[0], firsts[1])


def test_seeds_are_disjoint_from_fine_tuning(reference, tmp_path):
    table = synthesis.plan(reference)
    base = reference.seed_for(reference.cfg.synthesis.seed) * 2**32
    assert table["seed"].tolist() == list(range(base, base + N))
    assert table["seed"].max() < 2**63
    assert reference.seed_for(reference.cfg.lora.seed) not in set(table["seed"])
    clash = runs.open_run("configs/tiny.yaml", tmp_path / "clash", overrides={**OVERRIDES, "synthesis.seed": 0,
                                                                              "data.train_size": 2500,
                                                                              "synthesis.prompt_mode": "class"})
    with pytest.raises(ValueError, match="fine-tuning seed 420"):
        synthesis.plan(clash)


def test_class_prompt_mode_uses_class_names_only(tmp_path):
    run = _run(tmp_path / "class_mode", **{"synthesis.prompt_mode": "class"})
    table = synthesis.plan(run)
    assert table["prompt"].tolist() == table["class_name"].tolist()
    assert not (run.dir / "captions").exists()


def test_shards_and_sets(reference):
    assert synthetic.available_multiples(reference) == [0.1, 0.2]
    big = synthetic.load_synthetic(reference, 0.2)
    assert big.images.dtype == np.uint8 and big.images.shape == (N, 32, 32, 3)
    assert big.labels.dtype == np.int64 and big.prompts == synthesis.plan(reference)["prompt"].tolist()
    assert np.array_equal(big.index, np.arange(N))
    assert big.images.std() > 0
    for j, shard in enumerate(_shards(reference)):
        assert np.array_equal(shard, big.images[SHARD * j:SHARD * (j + 1)])
        rows = pd.read_csv(synthetic.shard_paths(reference, j)[1], keep_default_na=False)
        assert rows["i"].tolist() == list(range(SHARD * j, min(SHARD * (j + 1), N)))
    assert len({im.tobytes() for im in big.images}) == N


def test_smaller_cardinality_is_a_class_balanced_subset_of_the_largest(reference):
    big = synthetic.load_synthetic(reference, 0.2)
    small = synthetic.load_synthetic(reference, 0.1)
    assert len(small) == 10 and np.bincount(small.labels, minlength=10).tolist() == [1] * 10
    assert np.array_equal(small.images, big.images[small.index])
    assert np.array_equal(small.labels, big.labels[small.index])
    assert small.prompts == [big.prompts[i] for i in small.index]
    assert np.array_equal(small.index, synthetic.subset_index(reference, 0.1))
    saved = np.load(reference.dir / "synthetic" / "subsets" / "x0.1.npy")
    assert np.array_equal(saved, small.index)
    middle = synthetic.subset_index(reference, 0.15)
    assert set(middle) >= set(small.index)
    assert np.bincount(big.labels[middle], minlength=10).tolist() == [2] * 5 + [1] * 5


def test_making_only_a_smaller_sets_rows_gives_the_same_set(reference, pipe, tmp_path):
    """``multiples=[0.1]`` makes the 10 rows of the 20-row plan that the 0.1x set uses, and that set is the one a
    full generation gives: same rows, prompts, seeds and images up to rounding (the subset draw reads labels only)."""
    run = _run(tmp_path / "only_small")
    summary = synthesis.generate(run, pipe, progress=False, multiples=[0.1])
    assert summary["images_made"] == 10 and synthetic.available_multiples(run) == [0.1]
    made = pd.read_csv(run.dir / "synthetic" / "plan.csv")
    full = synthesis.plan(reference).set_index("i")
    assert np.array_equal(made["i"], synthetic.subset_index(reference, 0.1))
    assert made["seed"].tolist() == full.loc[made["i"], "seed"].tolist() and made["shard"].tolist() == [0] * 7 + [1] * 3
    small, want = synthetic.load_synthetic(run, 0.1), synthetic.load_synthetic(reference, 0.1)
    assert np.array_equal(small.index, want.index) and small.prompts == want.prompts
    assert np.array_equal(small.labels, want.labels)
    # same prompts and noise seeds; batches of other images round a few pixels apart (measured: max 1 level, 3e-5 of them)
    diff = np.abs(small.images.astype(int) - want.images)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert synthesis.sampling_plan(run, 0.1).equals(synthesis.sampling_plan(reference, 0.1))
    with pytest.raises(FileNotFoundError, match="only multiples"):
        synthetic.load_synthetic(run, 0.2)
    with pytest.raises(ValueError, match="accepted: one or more of synthesis.cardinalities"):
        synthesis.plan(run, [0.3])


def test_interrupted_run_resumes_and_matches_uninterrupted(reference, pipe, tmp_path):
    run = _run(tmp_path / "interrupted")
    crashing = CountingPipe(pipe.pipe, fail_after=3)
    with pytest.raises(Interrupted):
        synthesis.generate(run, crashing.generator(), progress=False)
    assert synthesis.status(run)["done"].tolist() == [True, False, False]
    assert not synthetic.shard_paths(run, 1)[0].exists()
    assert not [p for p in (run.dir / "synthetic" / "shards").iterdir() if p.name.startswith(".")]
    assert synthetic.available_multiples(run) == []
    with pytest.raises(FileNotFoundError, match="03_generate"):
        synthetic.load_synthetic(run, 0.2)
    first = synthetic.shard_paths(run, 0)[0].stat().st_mtime_ns
    resumed = CountingPipe(pipe.pipe)
    summary = synthesis.generate(run, resumed.generator(), progress=False)
    assert summary["shards_made"] == 2 and resumed.calls == 3
    assert synthetic.shard_paths(run, 0)[0].stat().st_mtime_ns == first
    for a, b in zip(_shards(run), _shards(reference)):
        assert np.array_equal(a, b)
    again = CountingPipe(pipe.pipe)
    assert synthesis.generate(run, again.generator(), progress=False)["shards_made"] == 0 and again.calls == 0


def test_k_of_n_shards_cover_everything_exactly_once(reference, pipe, tmp_path):
    """Shard 1/2 in this process, shard 2/2 through the command line (its own random-weights pipeline, same seed)."""
    run = _run(tmp_path / "split")
    first = synthesis.generate(run, pipe, shard="1/2", progress=False)
    assert first["shards_mine"] == first["shards_made"] == 2
    assert synthesis.status(run)["done"].tolist() == [True, False, True]
    second = cli.invoke(["synthesis", "--run-dir", str(run.dir), "--shard", "2/2", "--random-weights", "--no-progress"])[1]
    assert second["shards_mine"] == second["shards_made"] == 1
    assert synthesis.status(run)["done"].all()
    for a, b in zip(_shards(run), _shards(reference)):
        assert np.array_equal(a, b)
    assert synthesis.generate(run, pipe, shard="3/3", progress=False)["shards_made"] == 0
    for bad in ("0/2", "3/2", "1-2", "a/b"):
        with pytest.raises(ValueError, match="k/n"):
            shards.parse_shard(bad)


def test_other_generator_settings_are_refused(reference, pipe):
    with pytest.raises(RuntimeError, match="other settings"):
        synthesis.generate(reference, CountingPipe(pipe.pipe).generator("some/other-model"), progress=False)
    with pytest.raises(RuntimeError, match="custom CountingPipe"):  # a bare pipeline is recorded as what it is
        synthesis.generate(reference, CountingPipe(pipe.pipe), progress=False)


def test_samples_figure(reference):
    paths = phase_figures.plot_synthetic_samples(reference, per_class=3)
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    assert all(p.stat().st_size > 1000 for p in paths)


@pytest.mark.e2e
def test_notebook_03_in_the_chain(tiny_chain):
    run = runs.open_run(None, tiny_chain)
    d = len(run.splits().D)
    multiples = sorted(run.cfg.synthesis.cardinalities)
    assert synthetic.available_multiples(run) == multiples
    big = synthetic.load_synthetic(run, multiples[-1])
    assert big.images.shape == (round(multiples[-1] * d), run.cfg.data.image_size, run.cfg.data.image_size, 3)
    assert big.images.dtype == np.uint8 and big.images.std() > 0
    for m in multiples:
        s = synthetic.load_synthetic(run, m)
        counts = np.bincount(s.labels, minlength=len(run.class_names))
        assert len(s) == round(m * d) and counts.max() - counts.min() <= 1
        assert np.array_equal(s.images, big.images[s.index])
    prompts = set(captions.load_captions(run)["prompt"])
    assert set(big.prompts) <= prompts
    assert (tiny_chain / "figures" / "synthetic_samples.png").is_file()
    assert (tiny_chain / "figures" / "synthetic_samples.pdf").is_file()
    assert (tiny_chain / "notebooks" / "03_generate.ipynb").is_file()


@pytest.mark.slow
def test_killed_process_resumes(reference, tmp_path):
    """SIGKILL the command line after its first shard, rerun it, and get the uninterrupted result."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = _run(tmp_path / "killed")
    cmd = [sys.executable, "-m", "tckr.cli", "synthesis", "--run-dir", str(run.dir), "--random-weights", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_csv = synthetic.shard_paths(run, 0)[1]
    deadline = time.time() + 300
    while not first_csv.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    status = synthesis.status(run)
    assert status["done"].iloc[0] and not status["done"].all(), "the process was not killed mid-way; rerun the test"
    made_before = status["done"].sum()
    first = synthetic.shard_paths(run, 0)[0].stat().st_mtime_ns
    summary = cli.invoke(["synthesis", "--run-dir", str(run.dir), "--random-weights", "--no-progress"])[1]
    assert summary["shards_made"] == 3 - made_before
    assert synthetic.shard_paths(run, 0)[0].stat().st_mtime_ns == first
    assert not [p for p in (run.dir / "synthetic" / "shards").iterdir() if p.name.startswith(".")]
    for a, b in zip(_shards(run), _shards(reference)):
        assert np.array_equal(a, b)


def test_pipeline_from_a_local_base_with_the_runs_adapter(pipe, tmp_path):
    """load_pipeline reads generator.base from a folder and needs notebook 02's adapter (the base only when asked
    for with use_lora=False); the manifest names both, the adapter relative to the run folder with its sha256."""
    from tckr.core import io
    from tckr.generation import generator

    base = tmp_path / "base"
    pipe.pipe.save_pretrained(base)
    run = _run(tmp_path / "adapted", **{"generator.base": str(base), "synthesis.prompt_mode": "class"})
    with pytest.raises(FileNotFoundError, match="02_lora_finetune.*use_lora=False"):
        synthesis.load_pipeline(run)
    plain = synthesis.load_generator(run, use_lora=False)
    assert plain.adapter is None and plain.base == str(base)
    assert not any("lora" in k for k in plain.pipe.unet.state_dict())
    generator.add_lora(plain.pipe, rank=2, alpha=2.0, init=False)
    generator.save_lora(plain.pipe, artifacts.adapter_path(run), rank=2, alpha=2.0)
    adapted = synthesis.load_generator(run)
    assert adapted.adapter == str(artifacts.adapter_path(run))
    assert any("lora" in k for k in adapted.pipe.unet.state_dict())
    assert synthesis.load_generator(run, use_lora=False).adapter is None
    assert not any("lora" in k for k in synthesis.load_pipeline(run, use_lora=False).unet.state_dict())
    synthesis.generate(run, adapted, shard="1/3", progress=False)
    manifest = (run.dir / "synthetic" / "manifest.json").read_text()
    assert str(base) in manifest and artifacts.adapter_name(run.cfg) in manifest
    recorded = io.read_json(run.dir / "synthetic" / "manifest.json")
    assert recorded["adapter"] == f"lora/{artifacts.adapter_name(run.cfg)}"
    assert recorded["adapter_sha256"] == io.sha256_file(artifacts.adapter_path(run))


def test_bfloat16_generator_on_cpu(tmp_path):
    import torch

    run = _run(tmp_path / "bf16", **{"generator.dtype": "bfloat16", "synthesis.prompt_mode": "class"})
    p = synthesis.load_generator(run, random_weights=True)
    assert p.pipe.unet.dtype == torch.bfloat16 and p.base == "random:tiny"
    synthesis.generate(run, p, shard="1/3", progress=False)
    shard = np.load(synthetic.shard_paths(run, 0)[0])
    assert shard.dtype == np.uint8 and shard.shape == (SHARD, 32, 32, 3)


def test_streamed_set_is_the_loaded_set_without_reading_it(reference):
    for m in (0.1, 0.2):
        streamed, loaded = synthetic.stream_synthetic(reference, m), synthetic.load_synthetic(reference, m)
        assert isinstance(streamed.images, synthetic.ShardedImages)
        assert all(isinstance(a, np.memmap) for a in streamed.images.arrays)  # nothing read into RAM up front
        assert streamed.images.shape == loaded.images.shape
        assert np.array_equal(np.asarray(streamed.images), loaded.images)
        assert np.array_equal(streamed.labels, loaded.labels) and streamed.prompts == loaded.prompts
    big = synthetic.stream_synthetic(reference, 0.2)
    rows = np.array([0, 6, 7, 13, 14, 19])  # both sides of every shard boundary (shards of 7)
    assert np.array_equal(big.images[rows], np.concatenate(_shards(reference))[rows])
    small = big.images.take(synthetic.subset_index(reference, 0.1))  # an index into the shards, not a copy
    assert small.arrays is big.images.arrays
    assert np.array_equal(np.asarray(small), synthetic.load_synthetic(reference, 0.1).images)


def test_streamed_images_resize_like_the_loaded_set(reference):
    from tckr.datasets.real import resize_images

    files = [synthetic.shard_paths(reference, j)[0] for j in range(3)]
    view = synthetic.ShardedImages.open(files, np.array([1, 8, 15, 19]), size=24)
    assert view.shape == (4, 24, 24, 3)
    full = np.concatenate(_shards(reference))[[1, 8, 15, 19]]
    assert np.array_equal(view[np.arange(4)], resize_images(full, 24))
    with pytest.raises(ValueError, match="rows in 0..19"):
        synthetic.ShardedImages.open(files, np.array([20]))


def test_student_trained_on_the_stream_matches_the_in_memory_path(reference, monkeypatch):
    """train.student reads the set through stream_synthetic; same batches in the same order as the loaded set,
    so the weights are bit-identical to fit on the in-memory images."""
    import torch

    from tckr.classification import inference, train

    run = reference  # tiny.yaml: 2 epochs of batches of 5, so batches straddle the shards of 7
    seen = []
    real_fit = train.fit
    monkeypatch.setattr(train, "fit", lambda *a, **kw: seen.append(type(a[2])) or real_fit(*a, **kw))
    streamed = train.student(run, 0.2, label_mode="hard", progress=False)
    assert seen == [synthetic.ShardedImages]
    loaded = synthetic.load_synthetic(run, 0.2)
    val = run.real("val")
    in_memory, _ = real_fit(run.cfg, run.cfg.classifier.student_arch, loaded.images, loaded.labels, val.images, val.labels,
                            seed=run.seed_for(run.cfg.train.seed), progress=False, num_classes=len(run.class_names))
    a, b = streamed.state_dict(), in_memory.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = loaded.images[:8]
    assert np.array_equal(inference.predict_logits(streamed, x, run.cfg), inference.predict_logits(in_memory, x, run.cfg))


def test_image_to_image_starts_each_image_from_its_prompts_own_member(tmp_path):
    """synthesis.init_strength (leaky controls): image i starts from the image of D whose caption is its prompt, so
    with the trained tiny base and a short stretch of the schedule it is a near-copy of that member."""
    run = _run(tmp_path / "img2img", **{"synthesis.init_strength": 0.2, "synthesis.steps": 10, "synthesis.cardinalities": [0.1],
                                        "mia.pipeline_cardinalities": [0.1]})
    D, table = run.real("D"), captions.load_captions(run)
    plan, src = synthesis.plan(run), synthesis.plan_sources(run)
    assert len(src) == len(plan) == 10
    assert table["prompt"].to_numpy()[src].tolist() == plan["prompt"].tolist()   # the start image is the prompt's own
    assert np.array_equal(D.labels[src], plan["label"].to_numpy())
    gen = synthesis.load_generator(run, use_lora=False)
    synthesis.generate(run, gen, progress=False)
    assert io.read_json(synthetic.synthetic_dir(run) / "manifest.json")["init_strength"] == 0.2
    images = synthetic.load_synthetic(run, 0.1).images
    x, d = images.reshape(len(images), -1) / 255.0, D.images.reshape(len(D.images), -1) / 255.0
    dist = np.sqrt(((x[:, None] - d[None]) ** 2).mean(-1))
    assert np.array_equal(dist.argmin(1), src)                                   # nearest member: its own start image
    assert np.mean(dist[np.arange(len(src)), src] / np.sort(dist, 1)[:, 1]) < 0.7  # and nearer than any other
    # bench/own_member_distance.py measures the same thing
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("own_member_distance", Path(__file__).resolve().parents[1] / "bench" / "own_member_distance.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    m = bench.measure(str(run.dir))
    assert m["frac_nearest_member_is_own"] == 1.0 and m["init_strength"] == 0.2 and m["n_synthetic"] == 10
    assert m["median_own"] == pytest.approx(float(np.median(dist[np.arange(len(src)), src])), rel=1e-4)
    assert m["median_own"] < m["median_nearest_H"]


def test_image_to_image_with_class_prompts_cycles_the_classes_images(tmp_path):
    run = _run(tmp_path / "img2img_class", **{"synthesis.init_strength": 0.5, "synthesis.prompt_mode": "class"})
    src, plan, D = synthesis.plan_sources(run), synthesis.plan(run), run.real("D")
    assert np.array_equal(D.labels[src], plan["label"].to_numpy())
    assert len(np.unique(src)) == len(src)          # 2 per class: no start image twice


def test_prompts_past_the_text_encoders_window_are_listed(pipe, tmp_path, monkeypatch, capsys):
    run = _run(tmp_path / "long_prompts", **{"synthesis.cardinalities": [0.1], "mia.pipeline_cardinalities": [0.1]})
    path = synthetic.synthetic_dir(run) / "truncated_prompts.json"
    monkeypatch.setattr(pipe.pipe.tokenizer, "model_max_length", 8)      # every attribute prompt is longer
    synthesis.generate(run, pipe, progress=False)
    listed = io.read_json(path)
    prompts = list(dict.fromkeys(synthesis.plan(run)["prompt"]))
    assert listed == {"max_tokens": 8, "prompts": prompts}
    assert f"{len(prompts)} of {len(prompts)} distinct prompts are longer" in capsys.readouterr().err
    monkeypatch.undo()
    other = _run(tmp_path / "short_prompts", **{"synthesis.cardinalities": [0.1], "mia.pipeline_cardinalities": [0.1],
                                                "synthesis.prompt_mode": "class"})
    synthesis.generate(other, pipe, progress=False)
    assert not (synthetic.synthetic_dir(other) / "truncated_prompts.json").exists()
