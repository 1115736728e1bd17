"""Captioning: the attribute captioner, the original release's two file formats, caption_run, and the BLIP-2
path on a tiny randomly initialised BLIP-2 (whose captions are random words)."""

import json

import numpy as np
import pytest

from tckr.generation import captions, prompt_files
from tckr.runfolder import runs


def _canvas(n=1, size=32):
    return np.zeros((n, size, size, 3), dtype=np.uint8)


def _object(value=200, rows=(6, 26), cols=(10, 22), size=32, colour=None):
    im = _canvas(1, size)
    im[0, rows[0]:rows[1], cols[0]:cols[1]] = colour if colour is not None else value
    return im


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return runs.open_run("configs/tiny.yaml", tmp_path_factory.mktemp("captions") / "run")


def test_attribute_captions_are_deterministic_and_batch_independent():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    images[:, :4] = 0
    a = captions.attribute_captions(images)
    assert a == captions.attribute_captions(images.copy())
    assert captions.attribute_captions(images[5:6]) == [a[5]]
    assert captions.AttributeCaptioner(batch_size=3).caption(images) == a


def test_bright_and_dark_objects_get_different_words():
    bright, dark = captions.attribute_captions(np.concatenate([_object(250), _object(60)]))
    assert bright != dark
    assert "very bright" in bright and "dark" in dark and "bright" not in dark


def test_fill_aspect_texture_symmetry_and_colour_are_described():
    small = _object(200, rows=(13, 19), cols=(13, 19))
    large = _object(200, rows=(2, 30), cols=(2, 30))
    tall = _object(200, rows=(2, 30), cols=(13, 19))
    wide = _object(200, rows=(13, 19), cols=(2, 30))
    checker = _object(200, rows=(4, 28), cols=(4, 28))
    checker[0, 4:28:2, 4:28:2] = 90
    checker[0, 5:28:2, 5:28:2] = 90
    ell = _object(200, rows=(4, 28), cols=(6, 12))
    ell[0, 22:28, 6:26] = 200
    red = _object(colour=(220, 30, 30))
    caps = captions.attribute_captions(np.concatenate([small, large, tall, wide, checker, ell, red]))
    small_c, large_c, tall_c, wide_c, checker_c, ell_c, red_c = caps
    assert small_c.startswith("a small ") and large_c.startswith("a frame-filling ")
    assert "tall and narrow" in tall_c and "wide and flat" in wide_c
    assert " smooth " in large_c and "heavily patterned" in checker_c
    assert ", symmetric," in large_c and ", asymmetric," in ell_c
    assert " red " in red_c and " red " not in large_c
    assert all(c.endswith("on a dark background") for c in caps)
    assert "on a light background" in captions.attribute_captions(255 - large)[0]


def test_measurements_separate_fashion_mnist_classes(tiny_run):
    D = tiny_run.real("D")
    attrs = captions.measure_attributes(D.images)
    trouser, sneaker = D.class_names.index("Trouser"), D.class_names.index("Sneaker")
    assert attrs["aspect"][D.labels == trouser].median() > 1.6 > 0.87 > attrs["aspect"][D.labels == sneaker].median()
    caps = np.array(captions.attribute_captions(D.images))
    assert np.mean(["tall and narrow" in c for c in caps[D.labels == trouser]]) >= 0.7
    assert not any("tall and narrow" in c for c in caps[D.labels == sneaker])


def test_vocabulary_covers_every_caption(tiny_run):
    words = set(captions.attribute_vocabulary())
    for c in captions.attribute_captions(tiny_run.real("D").images):
        assert set(c.replace(",", " ").split()) <= words


def test_original_order_round_trip(tmp_path):
    names = ["T-shirt/top", "cat: big", "cat", "T-shirt/top"]
    caps = ["a shirt  on a table", "a lion: resting", "a small\ncat", "x"]
    path = prompt_files.write_original_order(tmp_path / "p.txt", names, caps)
    assert path.read_text().splitlines()[0] == "T-shirt/top: a shirt on a table"
    back = prompt_files.read_original_order(path, ["cat", "cat: big", "T-shirt/top"])
    assert back["class_name"].tolist() == names
    assert back["caption"].tolist() == ["a shirt on a table", "a lion: resting", "a small cat", "x"]
    assert back["prompt"].tolist() == [f"{n}: {c}" for n, c in zip(names, back["caption"])]
    with pytest.raises(ValueError, match="dog"):
        prompt_files.read_original_order(path, ["dog"])


def test_original_release_files_are_read(tmp_path):
    txt = tmp_path / "cifar10_prompts.txt"
    txt.write_text("airplane: an airplane flying in the blue sky\nautomobile:a red car parked on a street\n\n")
    table = prompt_files.read_original_order(txt)
    assert table["class_name"].tolist() == ["airplane", "automobile"]
    assert table["prompt"].tolist() == ["airplane: an airplane flying in the blue sky", "automobile: a red car parked on a street"]
    js = tmp_path / "cifar10.json"
    js.write_text(json.dumps({"airplane": ["a jet on a runway", "airplane: a plane"], "cat": ["a cat on a sofa"]}))
    grouped = prompt_files.read_grouped_by_class(js)
    assert grouped["airplane"] == ["a jet on a runway", "airplane: a plane"]
    t = prompt_files.captions_from_grouped(grouped, ["airplane", "automobile", "cat"])
    assert t["label"].tolist() == [0, 0, 2]
    assert t["prompt"].tolist() == ["airplane: a jet on a runway", "airplane: a plane", "cat: a cat on a sofa"]
    with pytest.raises(ValueError, match="cat"):
        prompt_files.captions_from_grouped(grouped, ["airplane"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError):
        prompt_files.read_grouped_by_class(tmp_path / "bad.json")


def test_grouped_by_class_round_trip(tmp_path):
    names, caps = ["b", "a", "b", "a", "b"], ["1", "2", "3", "4", "5"]
    path = prompt_files.write_grouped_by_class(tmp_path / "g.json", names, caps, order=["a", "b", "c"])
    assert prompt_files.read_grouped_by_class(path) == {"a": ["2", "4"], "b": ["1", "3", "5"], "c": []}
    assert list(json.loads(path.read_text())) == ["a", "b", "c"]


def test_caption_run_writes_the_three_files(tiny_run, tmp_path):
    table = captions.caption_run(tiny_run, progress=False)
    D = tiny_run.real("D")
    assert list(table.columns) == list(captions.COLUMNS)
    assert len(table) == len(D) == tiny_run.cfg.data.train_size
    assert np.array_equal(table["index"], tiny_run.splits().D) and np.array_equal(table["label"], D.labels)
    assert table["class_name"].tolist() == [D.class_names[y] for y in D.labels]
    assert table["caption"].tolist() == captions.attribute_captions(D.images)
    assert (table["prompt"] == table["class_name"] + ": " + table["caption"]).all()
    folder = tiny_run.dir / "captions"
    order = prompt_files.read_original_order(folder / "fashion_mnist_original_order.txt", tiny_run.class_names)
    assert order["prompt"].tolist() == table["prompt"].tolist()
    grouped = prompt_files.read_grouped_by_class(folder / "fashion_mnist_grouped_by_class.json")
    assert list(grouped) == tiny_run.class_names
    for name, caps in grouped.items():
        assert caps == table.loc[table["class_name"] == name, "caption"].tolist()
    assert captions.load_captions(tiny_run).equals(table)
    assert captions.caption_run(tiny_run, progress=False).equals(table)
    out = captions.export_prompts(tiny_run, tmp_path / "prompts")
    assert sorted(p.name for p in out) == ["fashion_mnist_captions.csv", "fashion_mnist_grouped_by_class.json",
                                           "fashion_mnist_original_order.txt"]
    assert (tmp_path / "prompts" / "fashion_mnist_original_order.txt").read_text() == \
        (folder / "fashion_mnist_original_order.txt").read_text()


def test_load_captions_without_notebook_01_says_what_to_run(tmp_path):
    run = runs.open_run("configs/tiny.yaml", tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="01_captions"):
        captions.load_captions(run)


def test_tiny_random_blip2_runs_end_to_end(tmp_path):
    """Mechanics only: a randomly initialised BLIP-2 of the real classes writes random words, not descriptions."""
    run = runs.open_run("configs/tiny.yaml", tmp_path / "blip2",
                        overrides={"captions.captioner": "blip2", "captions.max_new_tokens": 6, "captions.batch_size": 16})
    model, processor = captions.build_random_blip2(seed=0)
    captioner = captions.Blip2Captioner(model, processor, batch_size=run.cfg.captions.batch_size,
                                        max_new_tokens=run.cfg.captions.max_new_tokens, device="cpu", dtype="float32")
    table = captions.caption_run(run, captioner, progress=False)
    assert len(table) == run.cfg.data.train_size
    vocab = set(processor.tokenizer.get_vocab())
    for c in table["caption"]:
        words = c.split()
        assert 0 < len(words) <= run.cfg.captions.max_new_tokens
        assert set(words) <= vocab and "<image>" not in words and "</s>" not in words
    assert (table["prompt"] == table["class_name"] + ": " + table["caption"]).all()
    first = captions.Blip2Captioner(*captions.build_random_blip2(seed=0), batch_size=5, max_new_tokens=6,
                                    device="cpu", dtype="float32").caption(run.real("D").images[:10])
    assert first == table["caption"].tolist()[:10]
    assert prompt_files.read_original_order(run.dir / "captions" / "fashion_mnist_original_order.txt")["prompt"].tolist() \
        == table["prompt"].tolist()
    assert (run.dir / "captions" / "captions.json").is_file()


def test_unknown_captioner_is_an_error():
    from tckr.core.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="blip2"):
        load_config("configs/tiny.yaml", {"captions.captioner": "clip"})


@pytest.mark.e2e
def test_notebook_01_in_the_chain(tiny_chain):
    run = runs.open_run(None, tiny_chain)
    table = captions.load_captions(run)
    assert len(table) == run.cfg.data.train_size
    assert np.array_equal(table["index"], run.splits().D)
    assert (table["prompt"] == table["class_name"] + ": " + table["caption"]).all()
    order = prompt_files.read_original_order(tiny_chain / "captions" / prompt_files.original_order_name(run.dataset), run.class_names)
    assert order["prompt"].tolist() == table["prompt"].tolist()
    grouped = prompt_files.read_grouped_by_class(tiny_chain / "captions" / prompt_files.grouped_by_class_name(run.dataset))
    assert sum(len(v) for v in grouped.values()) == len(table)
    assert (tiny_chain / "notebooks" / "01_captions.ipynb").is_file()
