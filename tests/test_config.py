import pytest

from tckr.core import paths
from tckr.core.config import Config, ConfigError, config_from_dict, load_config


@pytest.mark.parametrize("path", sorted(str(p) for p in paths.CONFIGS.rglob("*.yaml")))
def test_every_config_in_repo_loads(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)
    assert cfg.study.dataset


def test_misspelled_key_is_named_with_accepted_keys():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"train": {"epocs": 3}})
    msg = str(e.value)
    assert "train.epocs" in msg and "did you mean 'epochs'" in msg and "weight_decay" in msg


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match="trian"):
        config_from_dict({"trian": {}})


def test_misspelled_key_in_a_file_names_file_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("study:\n  dataset: fashion_mnist\nlora:\n  rnak: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*lora.rnak.*rank"):
        load_config(f)


@pytest.mark.parametrize("tree, pattern", [
    ({"train": {"epochs": "ten"}}, "train.epochs: expected an integer"),
    ({"train": {"flip": 1}}, "train.flip: expected true or false"),
    ({"gkd": {"label_mode": "fuzzy"}}, "gkd.label_mode.*'soft' | 'hard'"),
    ({"synthesis": {"cardinalities": [1, -2]}}, "must be positive"),
    ({"study": {"dataset": "nope"}}, "unknown dataset 'nope'.*fashion_mnist"),
    ({"mia": {"n_shadows": 3}}, "must be even"),
])
def test_bad_values_are_explained(tree, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(tree)


def test_overrides_and_hash():
    a = load_config("configs/tiny.yaml")
    b = load_config("configs/tiny.yaml", {"train.epochs": 7})
    assert b.train.epochs == 7 and a.train.epochs != 7
    assert a.hash() != b.hash()
    assert a.hash() == load_config("configs/tiny.yaml").hash()
    assert isinstance(b.train.lr, float)


def test_missing_config_lists_known_ones():
    with pytest.raises(FileNotFoundError, match="configs/mini.yaml"):
        load_config("configs/nope.yaml")


def test_paper_configs_cover_the_ten_datasets():
    names = {load_config(p).study.dataset for p in (paths.CONFIGS / "paper").glob("*.yaml")}
    assert names == {"cifar10", "cifar100", "oxford_pets", "tiny_imagenet", "stanford_cars", "food101", "stl10",
                     "imagenette", "imagewoof", "caltech101"}
    assert load_config("configs/paper/cifar10.yaml").lora.rank == 4
    assert max(load_config("configs/paper/caltech101.yaml").synthesis.cardinalities) == 10


# Regression pin of every config's resolved settings, recorded before the configs became overlays (extends:) and
# the numeric bounds moved onto the fields: file -> (Config.hash(), the run folders' hash; sha256 of the whole
# to_dict(), train.log included). Printed at commit 1dec8bf by
#   PYTHONPATH=src python -c "import hashlib, json; from tckr.core import paths; from tckr.core.config import load_config
#   [print(p.relative_to(paths.CONFIGS).as_posix(), (c := load_config(p)).hash(), hashlib.sha256(json.dumps(c.to_dict(),
#   sort_keys=True).encode()).hexdigest()[:12]) for p in sorted(paths.CONFIGS.rglob('*.yaml'))]"
# A deliberate change of a config's settings updates its line here.
RESOLVED = {
    "mini-full.yaml": ("02e19e46e549", "d3dc8ef1810d"),
    "mini-leaky.yaml": ("30dc50bba528", "cd722c526f2f"),
    "mini.yaml": ("0ddf7b71ad83", "2ba90afbca0f"),
    "paper/caltech101.yaml": ("bcbaeb546178", "5e77d2291266"),
    "paper/cifar10.yaml": ("6410ba48adaf", "63b47429f77f"),
    "paper/cifar100.yaml": ("9e93794695d3", "3fba00f72b8d"),
    "paper/food101.yaml": ("ad5971ec061b", "705079390103"),
    "paper/imagenette.yaml": ("14485ca27414", "d2fd928d70b2"),
    "paper/imagewoof.yaml": ("82607d302a3a", "b032d1776991"),
    "paper/oxford_pets.yaml": ("650af829e45f", "8c49f7759f81"),
    "paper/stanford_cars.yaml": ("42e8c2c5bfdf", "0e5ce66a0db8"),
    "paper/stl10.yaml": ("47fbce3a7f00", "7de8021ea4c3"),
    "paper/tiny_imagenet.yaml": ("28c49c9f5060", "6f8e339d2053"),
    "tiny.yaml": ("5bbf764a9c31", "bbd872532038"),
}


def test_every_config_resolves_to_its_pinned_settings():
    import hashlib
    import json

    got = {}
    for p in sorted(paths.CONFIGS.rglob("*.yaml")):
        if p.name.startswith("_"):
            continue
        c = load_config(p)
        got[p.relative_to(paths.CONFIGS).as_posix()] = (c.hash(), hashlib.sha256(json.dumps(c.to_dict(), sort_keys=True).encode()).hexdigest()[:12])
    assert got == RESOLVED
