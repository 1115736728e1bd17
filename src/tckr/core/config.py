"""Study settings: one YAML file per study under ``configs/``, validated against typed sections.

``load_config(path, overrides)`` returns a :class:`Config`; unknown or misspelled keys, wrong types,
values out of range (every numeric setting has one), unknown devices, captioners, architectures (timm's
registry) and attacks, and repeated seeds fail at load time with a message that names the key, the bad
value and what is accepted. A config file must name ``study.tier`` and ``study.dataset``: the defaults
below are the paper's settings, and an empty or partial file would otherwise run them silently;
``configs/mini.yaml`` and ``configs/tiny.yaml`` scale them down.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tckr.core import paths
from tckr.core import registry as dataset_registry


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


# The attack names tckr.mia scores (kept here so that loading a config imports no attack code).
ATTACKS = ("lira_online", "lira_offline", "lira_online_fixed", "lira_offline_fixed", "loss", "rmia", "rmia_offline")
QUERIES = ("identity", "flip", "shift")
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # a run folder name: no separators, no "..", no spaces
DEVICE = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+)$")


@dataclass
class StudyConfig:
    name: str = "study"  # run folders are runs/<name>-<time>: letters, digits, '.', '_', '-'
    dataset: str = "fashion_mnist"
    tier: Literal["mini", "paper", "tiny"] = "mini"
    seeds: list[int] = field(default_factory=lambda: [0])  # several seeds repeat the study; tables give mean ± 95% CI
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    num_threads: int = 0  # torch CPU threads; 0 leaves torch's default


@dataclass
class DataConfig:
    train_size: int = 0  # |D|, the private real training set; 0 = the whole train split less H and val
    val_size: int = 1000  # validation split (early stopping), drawn from the train split, disjoint from D and H
    test_size: int = 0  # 0 = the whole official test split, else a seeded stratified subset
    image_size: int = 224  # side the real images are resized to for every phase
    split_seed: int = 0
    public_size: int = 0  # public partition carved from the train split first (its own seed): what a pretrained base may see
    public_seed: int = 0
    holdout: Literal["split", "test"] = "split"  # where the non-members H come from: split = half of the train split (|H| = |D|); test = the test split, D = the whole train split less val (the original's design)
    carved_test_fraction: float = 0.15  # datasets whose source has no test split: this share of train becomes the test set (seeded, class-stratified, fixed per dataset)


@dataclass
class CaptionsConfig:
    captioner: Literal["blip2", "attributes"] = "blip2"
    model: str = "Salesforce/blip2-opt-2.7b"
    batch_size: int = 16
    max_new_tokens: int = 20
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@dataclass
class GeneratorConfig:
    arch: Literal["sd2", "tiny"] = "sd2"
    base: str = "stabilityai/stable-diffusion-2"  # Hugging Face id or local folder
    resolution: int = 224
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@dataclass
class LoraConfig:
    rank: int = 4
    alpha: float = 4.0
    target_modules: list[str] = field(default_factory=lambda: ["to_k", "to_q", "to_v", "to_out.0"])
    learning_rate: float = 1e-4
    epochs: int = 3
    max_steps: int = 0  # 0 = epochs decide
    batch_size: int = 1
    grad_accum: int = 4
    mixed_precision: Literal["no", "fp16", "bf16"] = "fp16"
    center_crop: bool = True
    random_flip: bool = True
    checkpoint_every: int = 500  # optimiser steps between resumable checkpoints
    checkpoints_total_limit: int = 2
    seed: int = 420


@dataclass
class SynthesisConfig:
    cardinalities: list[float] = field(default_factory=lambda: [20.0])  # multiples of |D|
    guidance_scale: float = 2.0
    steps: int = 20
    batch_size: int = 16
    shard_size: int = 1000  # images per shard file
    seed: int = 10_000  # generation seeds start here, disjoint from fine-tuning's
    prompt_mode: Literal["caption", "class"] = "caption"  # "n: c" prompts, or class name only (ablation)
    init_strength: float = 0.0  # > 0: image-to-image from the image of D whose caption is the prompt (leaky controls); 0 = text-to-image, the paper's


@dataclass
class ClassifierConfig:
    teacher_arch: str = "mobilenetv3_large_100"
    student_arch: str = "mobilenetv3_large_100"
    pretrained: bool = True  # ImageNet weights when reachable
    input_size: int = 224
    stem_stride: int = 0  # issue 3: stride of the first conv; 0 = 1 for inputs <= 64 px (mini tier), else the arch's


OBSERVABILITY_KEYS = (("train", "log"),)  # settings that change what is logged, not what is computed: left out of the hash


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 96
    lr: float = 1e-3
    weight_decay: float = 5e-5
    label_smoothing: float = 0.1
    patience: int = 5  # early stopping on validation accuracy; 0 disables
    keep: Literal["best", "last"] = "best"  # weights returned: the best validation epoch's, or the last epoch's (leaky controls)
    amp: bool = True  # mixed precision on GPU (ignored on CPU)
    flip: bool = True
    crop_padding: float = 0.1  # random crop with this fraction of padding; 0 disables
    augmix: bool = True
    mixup_alpha: float = 0.2  # 0 disables MixUp
    warmup_epochs: float = 0.0  # issue 3: linear learning-rate warm-up before the cosine decay
    seed: int = 0
    # training curves also to TensorBoard (<run>/tensorboard/<model>/; needs the tensorboard package). Not part of
    # Config.hash(): it changes what is logged, never what is trained
    log: Literal["none", "tensorboard"] = "none"


@dataclass
class GkdConfig:
    label_mode: Literal["soft", "hard"] = "soft"
    temperature: float = 1.0
    regenerate_every: int = 0  # redraw the student's training set from the synthetic pool every k epochs; 0 = never


@dataclass
class MiaConfig:
    n_shadows: int = 64
    queries: list[str] = field(default_factory=lambda: ["identity", "flip"])
    shadow_epochs: int = 0  # 0 = the teacher's epoch budget
    attacks: list[str] = field(default_factory=lambda: ["lira_online", "lira_offline", "lira_online_fixed", "lira_offline_fixed", "loss", "rmia"])
    n_bootstrap: int = 200
    seed: int = 0
    population_size: int = 1000  # RMIA's population samples z: real images from the public pool split (val when it is empty)
    rmia_a: float = 0.3  # offline RMIA: p(x) = ((1 + a) p_out(x) + 1 - a) / 2
    rmia_gamma: float = 1.0  # RMIA: likelihood-ratio threshold against each z
    headline: str = "auto"  # the one pre-registered attack behind AOP, the table and the cardinality figure; auto = lira_online_fixed below 64 shadows, else lira_online
    n_pipelines: int = 0  # shadow pipelines (teacher -> captions -> LoRA -> synthesis -> GKD students) for the student attack; 0 = none
    pipeline_cardinalities: list[float] = field(default_factory=list)  # student cardinalities the pipelines replicate; empty = synthesis.cardinalities
    generator_examples: int = 0  # class-balanced subset of P for the generator attack (denoising error); 0 = skip that attack
    generator_queries: int = 4  # K fixed (timestep, noise) pairs shared by every generator
    synthetic_examples: int = 0  # class-balanced subset of P for the synthetic-set attack (nearest synthetic images); 0 = all of P
    canaries: int = 0  # mislabeled canaries in P (seeded, class-balanced, half in D; label flipped in captions, prompts, teacher, shadows, pipelines), scored apart; 0 = none


@dataclass
class AuditConfig:
    max_synthetic: int = 5000  # synthetic images sampled for the nearest-neighbour audit; 0 = all
    n_pairs: int = 16  # closest pairs shown in the figure
    feature_train_size: int = 10000  # public images (class-stratified, seeded) the audit's feature extractor trains on; 0 = the whole public partition
    ratio_tau: float = 0.5  # near-copy when d_D / d_H (nearest member over nearest non-member distance) is below this


@dataclass
class Config:
    study: StudyConfig = field(default_factory=StudyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    captions: CaptionsConfig = field(default_factory=CaptionsConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gkd: GkdConfig = field(default_factory=GkdConfig)
    mia: MiaConfig = field(default_factory=MiaConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short stable hash of the resolved settings."""
        d = self.to_dict()
        for section, key in OBSERVABILITY_KEYS:
            d.get(section, {}).pop(key, None)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list of {_describe(typing.get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not accepted; use one of {_describe(tp)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a {_describe(tp)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a {_describe(tp)}, got {value!r}")
        (arg,) = typing.get_args(tp)
        return [_coerce(v, arg, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 5e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        hints_txt = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), names, n=1)
            hints_txt.append(f"{where + '.' if where else ''}{k}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"unknown key(s) {', '.join(hints_txt)}; accepted keys in {where or 'the top level'}: {', '.join(names)}")
    kwargs = {}
    for name in names:
        if name not in data:
            continue
        tp = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name] or {}, key)
        else:
            kwargs[name] = _coerce(data[name], tp, key)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
    node[parts[-1]] = value


def config_from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None, *, registry: bool = True) -> Config:
    """Validate a nested mapping (plus dotted-key overrides such as ``{"train.epochs": 3}``).

    ``registry=False`` skips the check of classifier architectures against timm's registry (it imports timm
    and torch); run folders use it to re-read their saved config, which was checked when it was written."""
    tree = copy.deepcopy(data or {})
    for k, v in (overrides or {}).items():
        _set_dotted(tree, k, v)
    cfg = _build(Config, tree, "")
    _check(cfg, registry=registry)
    return cfg


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a study config. Relative paths are looked up from the cwd, then the repo root.

    The file must name ``study.tier`` and ``study.dataset``; every other key defaults to the paper's settings."""
    p = Path(path)
    if not p.is_file():
        alt = paths.resolve(path)
        if not alt.is_file():
            known = sorted(str(c.relative_to(paths.ROOT)) for c in paths.CONFIGS.rglob("*.yaml"))
            raise FileNotFoundError(f"no config file at {path}; configs in the repo: {', '.join(known)}")
        p = alt
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    try:
        if data is None:
            raise ConfigError("the file is empty; a study config names at least study.tier and study.dataset "
                              "(see configs/mini.yaml); the defaults alone are the paper's settings")
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping of sections (study:, data:, ...), got {type(data).__name__} {data!r:.80}")
        tree = copy.deepcopy(data)
        for k, v in (overrides or {}).items():
            _set_dotted(tree, k, v)
        cfg = config_from_dict(tree)
        study = tree.get("study")
        missing = [f"study.{k}" for k in ("tier", "dataset") if not isinstance(study, dict) or k not in study]
        if missing:
            raise ConfigError(f"{' and '.join(missing)} not set; a config file must name its tier ({_describe(typing.get_type_hints(StudyConfig)['tier'])}) "
                              "and its dataset, or it would run the paper's defaults whatever it says")
        return cfg
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def _fail(key: str, value: Any, accepted: str) -> typing.NoReturn:
    raise ConfigError(f"{key}: {value!r} is not accepted; {accepted}")


# Bounds of every numeric setting: key -> (min, max, note); None = unbounded. Bounds are inclusive except
# those in _OPEN (a learning rate of 0 trains nothing; label smoothing 1 is a uniform target).
RANGES: dict[str, tuple[float | None, float | None, str]] = {
    "study.num_threads": (0, None, "0 leaves torch's default"),
    "data.train_size": (0, None, "0 = the whole train split less H and val"),
    "data.val_size": (1, None, "validation picks the best epoch"),
    "data.test_size": (0, None, "0 = the whole test split"),
    "data.image_size": (8, None, ""),
    "data.split_seed": (0, None, ""),
    "data.public_size": (0, None, "0 = no public partition"),
    "data.public_seed": (0, None, ""),
    "data.carved_test_fraction": (0, 1, "a share of the train split"),
    "captions.batch_size": (1, None, ""),
    "captions.max_new_tokens": (1, None, ""),
    "generator.resolution": (8, None, "a multiple of 8 (the VAE downsamples by 8)"),
    "lora.rank": (1, None, ""),
    "lora.alpha": (0, None, ""),
    "lora.learning_rate": (0, None, ""),
    "lora.epochs": (1, None, ""),
    "lora.max_steps": (0, None, "0 = lora.epochs decides"),
    "lora.batch_size": (1, None, ""),
    "lora.grad_accum": (1, None, ""),
    "lora.checkpoint_every": (1, None, ""),
    "lora.checkpoints_total_limit": (1, None, ""),
    "lora.seed": (0, None, ""),
    "synthesis.cardinalities": (0, None, "multiples of |D| must be positive"),
    "synthesis.guidance_scale": (0, None, ""),
    "synthesis.steps": (1, None, ""),
    "synthesis.batch_size": (1, None, ""),
    "synthesis.shard_size": (1, None, ""),
    "synthesis.seed": (0, None, ""),
    "synthesis.init_strength": (0, 1, "0 = text-to-image; below 1, the share of the schedule run from a noised image of D"),
    "classifier.input_size": (8, None, ""),
    "classifier.stem_stride": (0, 4, "0 = 1 for inputs <= 64 px, else the architecture's"),
    "train.epochs": (1, None, ""),
    "train.batch_size": (1, None, ""),
    "train.lr": (0, None, ""),
    "train.weight_decay": (0, None, ""),
    "train.label_smoothing": (0, 1, ""),
    "train.patience": (0, None, "0 disables early stopping"),
    "train.crop_padding": (0, 1, "a fraction of the side; 0 disables"),
    "train.mixup_alpha": (0, None, "0 disables MixUp"),
    "train.warmup_epochs": (0, None, ""),
    "train.seed": (0, None, ""),
    "gkd.temperature": (0, None, ""),
    "gkd.regenerate_every": (0, None, "0 = never"),
    "mia.n_shadows": (2, None, "an even number"),
    "mia.shadow_epochs": (0, None, "0 = the teacher's epoch budget"),
    "mia.n_bootstrap": (1, None, ""),
    "mia.seed": (0, None, ""),
    "mia.population_size": (0, None, "0 = the whole pool split"),
    "mia.rmia_a": (0, 1, ""),
    "mia.rmia_gamma": (0, None, ""),
    "mia.n_pipelines": (0, 100, "0 or an even number"),
    "mia.pipeline_cardinalities": (0, None, "multiples of |D| must be positive"),
    "mia.generator_examples": (0, None, "0 = skip the generator attack"),
    "mia.generator_queries": (1, None, ""),
    "mia.synthetic_examples": (0, None, "0 = all of P"),
    "mia.canaries": (0, None, "0 = none"),
    "audit.max_synthetic": (0, None, "0 = all"),
    "audit.n_pairs": (1, None, ""),
    "audit.feature_train_size": (0, None, "0 = the whole public partition"),
    "audit.ratio_tau": (0, 1, "a ratio of distances"),
}
_OPEN = {("data.carved_test_fraction", "min"), ("data.carved_test_fraction", "max"), ("lora.alpha", "min"), ("lora.learning_rate", "min"), ("synthesis.cardinalities", "min"), ("train.lr", "min"),
         ("train.label_smoothing", "max"), ("train.crop_padding", "max"), ("gkd.temperature", "min"),
         ("mia.rmia_gamma", "min"), ("mia.pipeline_cardinalities", "min"), ("audit.ratio_tau", "min"),
         ("synthesis.init_strength", "max")}


def _in_range(key: str, v: float) -> bool:
    lo, hi, _ = RANGES[key]
    above = lo is None or (v > lo if (key, "min") in _OPEN else v >= lo)
    below = hi is None or (v < hi if (key, "max") in _OPEN else v <= hi)
    return above and below


def _accepted(key: str) -> str:
    lo, hi, note = RANGES[key]
    parts = []
    if lo is not None:
        parts.append(f"{'>' if (key, 'min') in _OPEN else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if (key, 'max') in _OPEN else '<='} {hi:g}")
    return "accepted: " + " and ".join(parts) + (f" ({note})" if note else "")


def _check_ranges(cfg: Config) -> None:
    for key in RANGES:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            if not _in_range(key, v):
                _fail(key if not isinstance(value, list) else f"{key}[{i}]", v, _accepted(key))


def _check(cfg: Config, registry: bool = True) -> None:
    s = cfg.study
    if not RUN_NAME.match(s.name):
        _fail("study.name", s.name, "run folders are named after it: 1-100 letters, digits, '.', '_' or '-', "
              "starting with a letter or digit (no '/' or '..')")
    if s.dataset not in dataset_registry.available_datasets():
        raise ConfigError(f"study.dataset: unknown dataset {s.dataset!r}; accepted: {', '.join(dataset_registry.available_datasets())}")
    if not s.seeds:
        raise ConfigError("study.seeds: give at least one seed")
    repeated = sorted({x for x in s.seeds if s.seeds.count(x) > 1})
    if repeated:
        _fail("study.seeds", s.seeds, f"seed(s) {repeated} repeated; each seed is one repetition of the study, give distinct seeds")
    negative = [x for x in s.seeds if x < 0]
    if negative:
        _fail("study.seeds", s.seeds, "seeds are >= 0")
    if not DEVICE.match(s.device):
        _fail("study.device", s.device, "accepted: 'auto', 'cpu', 'cuda', 'cuda:N' (N a GPU index), 'mps'")
    _check_ranges(cfg)
    if cfg.generator.resolution % 8:
        _fail("generator.resolution", cfg.generator.resolution, "accepted: a multiple of 8 (the VAE downsamples by 8)")
    if not cfg.captions.model.strip():
        _fail("captions.model", cfg.captions.model, "accepted: a Hugging Face id or local folder")
    if not cfg.generator.base.strip():
        _fail("generator.base", cfg.generator.base, "accepted: a Hugging Face id or local folder such as models/tiny-sd-fashion")
    bad_t = [t for t in cfg.lora.target_modules if t not in LORA_TARGETS]
    if bad_t or not cfg.lora.target_modules or len(set(cfg.lora.target_modules)) != len(cfg.lora.target_modules):
        _fail("lora.target_modules", cfg.lora.target_modules, f"accepted: distinct names among {', '.join(LORA_TARGETS)}")
    cards = cfg.synthesis.cardinalities
    if not cards or len(set(cards)) != len(cards):
        _fail("synthesis.cardinalities", cards, "accepted: one or more distinct positive multiples of |D|")
    for key in ("teacher_arch", "student_arch"):
        arch = getattr(cfg.classifier, key)
        if not arch.strip():
            _fail(f"classifier.{key}", arch, "accepted: a timm architecture name such as mobilenetv3_small_050")
        if registry:
            import timm  # lazy: tckr.config sits under the torch-free layers (artifacts, ledger, report): timm only when called

            if not timm.is_model(arch):
                close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
                _fail(f"classifier.{key}", arch, "accepted: a timm architecture (timm.list_models()); similar names: "
                      + (", ".join(close) or "none"))
    m = cfg.mia
    if m.n_shadows % 2:
        raise ConfigError(f"mia.n_shadows: must be even so every example is IN for exactly half the shadows, got {m.n_shadows}")
    bad_q = [q for q in m.queries if q not in QUERIES]
    if bad_q or "identity" not in m.queries or len(set(m.queries)) != len(m.queries):
        raise ConfigError(f"mia.queries: {m.queries} — accepted: distinct names among 'identity' (required), 'flip', 'shift'")
    bad_a = [a for a in m.attacks if a not in ATTACKS]
    if bad_a or not m.attacks or len(set(m.attacks)) != len(m.attacks):
        _fail("mia.attacks", m.attacks, f"accepted: one or more distinct names among {', '.join(ATTACKS)}"
              + (f" ({', '.join(map(repr, bad_a))} unknown)" if bad_a else ""))
    if m.headline != "auto" and m.headline not in ATTACKS:
        _fail("mia.headline", m.headline, f"accepted: 'auto' or one of {', '.join(ATTACKS)}")
    if m.headline != "auto" and m.headline not in m.attacks:
        _fail("mia.headline", m.headline, f"the headline attack must be among mia.attacks {m.attacks}")
    if m.n_pipelines % 2 or m.n_pipelines == 1:
        _fail("mia.n_pipelines", m.n_pipelines, "accepted: 0 (none) or an even number >= 2 (pipelines come in complementary pairs)")
    if cfg.data.holdout == "test" and (m.n_pipelines or m.generator_examples or m.canaries):
        key = "mia.n_pipelines" if m.n_pipelines else "mia.generator_examples" if m.generator_examples else "mia.canaries"
        _fail(key, getattr(m, key.split(".")[1]), "with data.holdout 'test' use 0: shadow pipelines, the generator attack and canaries "
              "caption and train on P = D ∪ H as one train-split index, and there H lies in the test split (use data.holdout 'split')")
    extra = [c for c in m.pipeline_cardinalities if not any(math.isclose(c, x) for x in cards)]
    if extra:
        _fail("mia.pipeline_cardinalities", m.pipeline_cardinalities,
              f"accepted: a subset of synthesis.cardinalities {cards} ({extra} not among them)")
