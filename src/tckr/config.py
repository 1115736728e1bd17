"""Study settings: one YAML file per study under ``configs/``, validated against typed sections.

``load_config(path, overrides)`` returns a :class:`Config`; unknown or misspelled keys and
wrong types fail with a message that names the key and what is accepted. The defaults below
are the paper's settings; ``configs/mini.yaml`` and ``configs/tiny.yaml`` scale them down.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from . import paths


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


@dataclass
class StudyConfig:
    name: str = "study"
    dataset: str = "fashion_mnist"
    tier: Literal["mini", "paper", "tiny"] = "mini"
    seeds: list[int] = field(default_factory=lambda: [0])  # several seeds repeat the study; tables give mean ± 95% CI
    device: str = "auto"  # auto | cpu | cuda | cuda:N
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


@dataclass
class ClassifierConfig:
    teacher_arch: str = "mobilenetv3_large_100"
    student_arch: str = "mobilenetv3_large_100"
    pretrained: bool = True  # ImageNet weights when reachable
    input_size: int = 224
    stem_stride: int = 0  # issue 3: stride of the first conv; 0 = 1 for inputs <= 64 px (mini tier), else the arch's


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 96
    lr: float = 1e-3
    weight_decay: float = 5e-5
    label_smoothing: float = 0.1
    patience: int = 5  # early stopping on validation accuracy; 0 disables
    amp: bool = True  # mixed precision on GPU (ignored on CPU)
    flip: bool = True
    crop_padding: float = 0.1  # random crop with this fraction of padding; 0 disables
    augmix: bool = True
    mixup_alpha: float = 0.2  # 0 disables MixUp
    warmup_epochs: float = 0.0  # issue 3: linear learning-rate warm-up before the cosine decay
    seed: int = 0


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
    canaries: int = 0  # mislabeled canaries in P (label flipped in caption, prompt and teacher target), scored separately; 0 = none


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
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
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
        import difflib

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


def config_from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> Config:
    """Validate a nested mapping (plus dotted-key overrides such as ``{"train.epochs": 3}``)."""
    tree = copy.deepcopy(data or {})
    for k, v in (overrides or {}).items():
        _set_dotted(tree, k, v)
    cfg = _build(Config, tree, "")
    _check(cfg)
    return cfg


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a study config. Relative paths are looked up from the cwd, then the repo root."""
    p = Path(path)
    if not p.is_file():
        alt = paths.resolve(path)
        if not alt.is_file():
            known = sorted(str(c.relative_to(paths.ROOT)) for c in paths.CONFIGS.rglob("*.yaml"))
            raise FileNotFoundError(f"no config file at {path}; configs in the repo: {', '.join(known)}")
        p = alt
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    try:
        return config_from_dict(data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def _check(cfg: Config) -> None:
    from . import data as _data

    if cfg.study.dataset not in _data.available_datasets():
        raise ConfigError(f"study.dataset: unknown dataset {cfg.study.dataset!r}; accepted: {', '.join(_data.available_datasets())}")
    if not cfg.study.seeds:
        raise ConfigError("study.seeds: give at least one seed")
    if any(c <= 0 for c in cfg.synthesis.cardinalities):
        raise ConfigError(f"synthesis.cardinalities: multiples of |D| must be positive, got {cfg.synthesis.cardinalities}")
    for name in ("train_size", "val_size", "test_size"):
        if getattr(cfg.data, name) < 0:
            raise ConfigError(f"data.{name}: must be >= 0")
    if cfg.mia.n_shadows % 2:
        raise ConfigError(f"mia.n_shadows: must be even so every example is IN for exactly half the shadows, got {cfg.mia.n_shadows}")
    bad_q = [q for q in cfg.mia.queries if q not in ("identity", "flip", "shift")]
    if bad_q or "identity" not in cfg.mia.queries:
        raise ConfigError(f"mia.queries: {cfg.mia.queries} — accepted: 'identity' (required), 'flip', 'shift'")
