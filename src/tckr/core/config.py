"""Study settings: one YAML file per study under ``configs/``, validated against typed sections.

``load_config(path, overrides)`` returns a :class:`Config`; unknown or misspelled keys, wrong types,
values out of range (every numeric setting has one), unknown devices, captioners, architectures (timm's
registry) and attacks, and repeated seeds fail at load time with a message that names the key, the bad
value and what is accepted. A config file must name ``study.tier`` and ``study.dataset``: the defaults
below are the paper's settings, and an empty or partial file would otherwise run them silently;
``configs/mini.yaml`` and ``configs/tiny.yaml`` scale them down. A file may extend another (``extends:``) and
set only what differs: ``configs/mini-full.yaml`` over ``configs/mini.yaml``, each ``configs/paper/<dataset>.yaml``
over ``configs/paper/_base.yaml``. Each numeric setting's bounds sit on its field (:func:`tckr.core.schema.rng`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tckr.core import dp_settings, paths, power_settings, schema
from tckr.core import registry as dataset_registry
from tckr.core.dp_settings import DpConfig
from tckr.core.power_settings import PowerConfig
from tckr.core.schema import rng


class ConfigError(ValueError):
    """A config file or override that does not match the schema."""


# The attack names tckr.mia scores (kept here so that loading a config imports no attack code).
ATTACKS = ("lira_online", "lira_offline", "lira_online_fixed", "lira_offline_fixed", "loss", "rmia", "rmia_offline")
QUERIES = ("identity", "flip", "shift")
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
STUDENT_VARIANTS = ("lora_soft", "lora_hard", "base_soft", "public_only")  # gkd.baselines; tckr.classification.baselines
PUBLIC_STYLES = ("none", "invert", "edges", "blur8")  # data.public_style; the transforms: tckr.datasets.styles
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")  # a run folder name: no separators, no "..", no spaces
DEVICE = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+)$")


@dataclass
class StudyConfig:
    name: str = "study"  # run folders are runs/<name>-<time>: letters, digits, '.', '_', '-'
    dataset: str = "fashion_mnist"
    tier: Literal["mini", "paper", "tiny"] = "mini"
    seeds: list[int] = field(default_factory=lambda: [0])  # several seeds repeat the study; tables give mean ± 95% CI
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    num_threads: int = rng(0, ge=0, note="0 leaves torch's default")  # torch CPU threads
    # processes that train independent models (classifier shadows, shadow pipelines) at once, each with
    # num_threads / workers threads: small models use two cores better as two one-thread processes
    workers: int = rng(1, ge=1, le=64, note="1 = one process")


@dataclass
class DataConfig:
    train_size: int = rng(0, ge=0, note="0 = the whole train split less H and val")  # |D|, the private real training set
    val_size: int = rng(1000, ge=1, note="validation picks the best epoch")  # validation split (early stopping), drawn from the train split, disjoint from D and H
    test_size: int = rng(0, ge=0, note="0 = the whole test split")  # else a seeded stratified subset of the official test split
    image_size: int = rng(224, ge=8)  # side the real images are resized to for every phase
    split_seed: int = rng(0, ge=0)
    public_size: int = rng(0, ge=0, note="0 = no public partition")  # public partition carved from the train split first (its own seed): what a pretrained base may see
    public_seed: int = rng(0, ge=0)
    # look of the public images a base generator pretrains on (tckr.datasets.styles): none keeps D's look; invert |
    # edges | blur8 give the base the concepts without D's look, which the LoRA must then add (the paper's regime)
    public_style: str = "none"
    holdout: Literal["split", "test"] = "split"  # where the non-members H come from: split = half of the train split (|H| = |D|); test = the test split, D = the whole train split less val (the original's design)
    # datasets whose source has no test split: this share of train becomes the test set (seeded, class-stratified, fixed per dataset)
    carved_test_fraction: float = rng(0.15, gt=0, lt=1, note="a share of the train split")


@dataclass
class CaptionsConfig:
    captioner: Literal["blip2", "attributes"] = "blip2"
    model: str = "Salesforce/blip2-opt-2.7b"
    batch_size: int = rng(16, ge=1)
    max_new_tokens: int = rng(20, ge=1)
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@dataclass
class GeneratorConfig:
    arch: Literal["sd2", "tiny"] = "sd2"
    base: str = "stabilityai/stable-diffusion-2"  # Hugging Face id or local folder
    resolution: int = rng(224, ge=8, note="a multiple of 8 (the VAE downsamples by 8)")
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@dataclass
class LoraConfig:
    rank: int = rng(4, ge=1)
    alpha: float = rng(4.0, gt=0)
    target_modules: list[str] = field(default_factory=lambda: ["to_k", "to_q", "to_v", "to_out.0"])
    learning_rate: float = rng(1e-4, gt=0)
    epochs: int = rng(3, ge=1)
    max_steps: int = rng(0, ge=0, note="0 = lora.epochs decides")
    batch_size: int = rng(1, ge=1)
    grad_accum: int = rng(4, ge=1)
    mixed_precision: Literal["no", "fp16", "bf16"] = "fp16"
    center_crop: bool = True
    random_flip: bool = True
    checkpoint_every: int = rng(500, ge=1)  # optimiser steps between resumable checkpoints
    checkpoints_total_limit: int = rng(2, ge=1)
    seed: int = rng(420, ge=0)


@dataclass
class SynthesisConfig:
    cardinalities: list[float] = rng([20.0], gt=0, note="multiples of |D| must be positive")
    guidance_scale: float = rng(2.0, ge=0)
    steps: int = rng(20, ge=1)
    batch_size: int = rng(16, ge=1)
    shard_size: int = rng(1000, ge=1)  # images per shard file
    seed: int = rng(10_000, ge=0)  # generation seeds start here, disjoint from fine-tuning's
    prompt_mode: Literal["caption", "class"] = "caption"  # "n: c" prompts, or class name only (ablation)
    # > 0: image-to-image from the image of D whose caption is the prompt (leaky controls); 0 = text-to-image, the paper's
    init_strength: float = rng(0.0, ge=0, lt=1, note="0 = text-to-image; below 1, the share of the schedule run from a noised image of D")


@dataclass
class ClassifierConfig:
    teacher_arch: str = "mobilenetv3_large_100"
    student_arch: str = "mobilenetv3_large_100"
    pretrained: bool = True  # ImageNet weights when reachable
    input_size: int = rng(224, ge=8)
    stem_stride: int = rng(0, ge=0, le=4, note="0 = 1 for inputs <= 64 px, else the architecture's")  # stride of the first conv


OBSERVABILITY_KEYS = (("train", "log"),)  # settings that change what is logged, not what is computed: left out of the hash
# settings added after runs were made (key None: a whole section), in Config.hash() only when set to another value;
# a run folder's saved config made before a section existed may lack it (runs.read_saved_config)
LATER_KEYS = (("study", "workers"), ("data", "public_style"), ("gkd", "baselines"), ("power", None), ("dp", None),
              ("mia", "headline_attack"), ("mia", "headline_test"), ("mia", "headline_reason"))


@dataclass
class TrainConfig:
    epochs: int = rng(30, ge=1)
    batch_size: int = rng(96, ge=1)
    lr: float = rng(1e-3, gt=0)  # 0 would train nothing
    weight_decay: float = rng(5e-5, ge=0)
    label_smoothing: float = rng(0.1, ge=0, lt=1)  # 1 would be a uniform target
    patience: int = rng(5, ge=0, note="0 disables early stopping")  # early stopping on validation accuracy
    keep: Literal["best", "last"] = "best"  # weights returned: the best validation epoch's, or the last epoch's (leaky controls)
    amp: bool = True  # mixed precision on GPU (ignored on CPU)
    flip: bool = True
    crop_padding: float = rng(0.1, ge=0, lt=1, note="a fraction of the side; 0 disables")  # random crop with this fraction of padding
    augmix: bool = True
    mixup_alpha: float = rng(0.2, ge=0, note="0 disables MixUp")
    warmup_epochs: float = rng(0.0, ge=0)  # linear learning-rate warm-up before the cosine decay
    seed: int = rng(0, ge=0)
    # training curves also to TensorBoard (<run>/tensorboard/<model>/; needs the tensorboard package). Not part of
    # Config.hash(): it changes what is logged, never what is trained
    log: Literal["none", "tensorboard"] = "none"


@dataclass
class GkdConfig:
    label_mode: Literal["soft", "hard"] = "soft"
    temperature: float = rng(1.0, gt=0)
    regenerate_every: int = rng(0, ge=0, note="0 = never")  # redraw the student's training set from the synthetic pool every k epochs
    # extra student rows that separate where a student's accuracy comes from (tckr.classification.baselines): lora_soft |
    # lora_hard (the adapted generator's set) | base_soft | public_only (the base generator's, no LoRA); empty = none
    baselines: list[str] = field(default_factory=list)


@dataclass
class MiaConfig:
    n_shadows: int = rng(64, ge=2, note="an even number")
    queries: list[str] = field(default_factory=lambda: ["identity", "flip"])
    shadow_epochs: int = rng(0, ge=0, note="0 = the teacher's epoch budget")
    attacks: list[str] = field(default_factory=lambda: ["lira_online", "lira_offline", "lira_online_fixed", "lira_offline_fixed", "loss", "rmia"])
    n_bootstrap: int = rng(200, ge=1)
    seed: int = rng(0, ge=0)
    population_size: int = rng(1000, ge=0, note="0 = the whole pool split")  # RMIA's population samples z: real images from the public pool split (val when it is empty)
    rmia_a: float = rng(0.3, ge=0, le=1)  # offline RMIA: p(x) = ((1 + a) p_out(x) + 1 - a) / 2
    rmia_gamma: float = rng(1.0, gt=0)  # RMIA: likelihood-ratio threshold against each z
    headline: str = "auto"  # the one pre-registered attack behind AOP, the table and the cardinality figure; auto = lira_online_fixed below 64 shadows, else lira_online
    # pre-registration by power (`tckr power --propose` prints them): when set, the headline attack instead of mia.headline
    headline_attack: str = ""  # "" = unset (mia.headline decides)
    headline_test: str = ""  # the test that decides "leaks" for it: auc_ci | mann_whitney
    headline_reason: str = ""  # why: the power study's minimum detectable effects, in words
    # shadow pipelines (teacher -> captions -> LoRA -> synthesis -> GKD students) for the student attack; 0 = none
    n_pipelines: int = rng(0, ge=0, le=100, note="0 or an even number")
    # student cardinalities the pipelines replicate; empty = synthesis.cardinalities
    pipeline_cardinalities: list[float] = rng([], gt=0, note="multiples of |D| must be positive")
    generator_examples: int = rng(0, ge=0, note="0 = skip the generator attack")  # class-balanced subset of P for the generator attack (denoising error)
    generator_queries: int = rng(4, ge=1)  # K fixed (timestep, noise) pairs shared by every generator
    synthetic_examples: int = rng(0, ge=0, note="0 = all of P")  # class-balanced subset of P for the synthetic-set attack (nearest synthetic images)
    # mislabeled canaries in P (seeded, class-balanced, half in D; label flipped in captions, prompts, teacher, shadows, pipelines), scored apart
    canaries: int = rng(0, ge=0, note="0 = none")


@dataclass
class AuditConfig:
    max_synthetic: int = rng(5000, ge=0, note="0 = all")  # synthetic images sampled for the nearest-neighbour audit
    n_pairs: int = rng(16, ge=1)  # closest pairs shown in the figure
    feature_train_size: int = rng(10000, ge=0, note="0 = the whole public partition")  # public images (class-stratified, seeded) the audit's feature extractor trains on
    ratio_tau: float = rng(0.5, gt=0, le=1, note="a ratio of distances")  # near-copy when d_D / d_H (nearest member over nearest non-member distance) is below this
    n_permutations: int = rng(200, ge=1, note="the p-value is at least 1 / (1 + n)")  # class-stratified D/H re-splits of P in the audit's permutation test



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
    power: PowerConfig = field(default_factory=PowerConfig)
    dp: DpConfig = field(default_factory=DpConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short stable hash of the resolved settings."""
        d = self.to_dict()
        for section, key in OBSERVABILITY_KEYS:
            d.get(section, {}).pop(key, None)
        default = Config().to_dict()
        for section, key in LATER_KEYS:  # at their defaults, left out: the runs made before them keep their hash
            if key is None and d.get(section) == default[section]:
                d.pop(section)
            elif key is not None and d[section].get(key) == default[section][key]:
                d[section].pop(key)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# Every numeric setting declares its bounds on its field (schema.rng): "section.name" -> Range, in field order.
RANGES: dict[str, schema.Range] = {f"{section}.{name}": bounds for section, cls in typing.get_type_hints(Config).items()
                                   for name, bounds in schema.ranges(cls).items()}
EXTENDS = "extends"  # a config file's parent file, relative to the file's folder (load_config)


def config_from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None, *, registry: bool = True) -> Config:
    """Validate a nested mapping (plus dotted-key overrides such as ``{"train.epochs": 3}``).

    ``registry=False`` skips the check of classifier architectures against timm's registry (it imports timm
    and torch); run folders use it to re-read their saved config, which was checked when it was written."""
    tree = copy.deepcopy(data or {})
    try:
        for k, v in (overrides or {}).items():
            schema.set_dotted(tree, k, v)
        cfg = schema.build(Config, tree, "")
    except schema.SchemaError as e:
        raise ConfigError(str(e)) from None
    _check(cfg, registry=registry)
    return cfg


def read_sections(p: Path, chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], list[Path]]:
    """The sections config file ``p`` sets, laid over those of its ``extends:`` parent (read the same way:
    recursively), not yet validated; and the files read, ``p`` first. Errors name the file they come from: a
    parent's keys and types are checked in the parent, the rules (some tie keys together) in :func:`load_config`."""
    if p.resolve() in [c.resolve() for c in chain]:
        raise ConfigError(f"{chain[0]}: {EXTENDS}: a cycle, {' -> '.join(map(str, [*chain, p]))}; a parent cannot extend its child")
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if data is None:
        raise ConfigError(f"{p}: the file is empty; a study config names at least study.tier and study.dataset "
                          "(see configs/mini.yaml); the defaults alone are the paper's settings")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections (study:, data:, ...), got {type(data).__name__} {data!r:.80}")
    parent = data.pop(EXTENDS, None)
    if chain:
        try:
            schema.build(Config, data, "")
        except schema.SchemaError as e:
            raise ConfigError(f"{p}: {e}") from None
    if parent is None:
        return data, [p]
    q = p.parent / parent if isinstance(parent, str) and parent.strip() else None
    if q is None or not q.is_file():
        raise ConfigError(f"{p}: {EXTENDS}: {parent!r} is not accepted; accepted: the path of a parent config file, "
                          f"relative to this file's folder" + (f" (no file at {q})" if q is not None else ""))
    base, files = read_sections(q, (*chain, p))
    return schema.merge(base, data), [p, *files]


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a study config. Relative paths are looked up from the cwd, then the repo root.

    The file may name a parent (``extends: mini.yaml``, relative to its folder): it is read first and this file's
    sections laid over it key by key (a mapping merges; a list or value replaces; :func:`tckr.core.schema.merge`),
    then ``overrides`` applied. Between them the files must name ``study.tier`` and ``study.dataset``; every other
    key defaults to the paper's settings. Files named ``_*.yaml`` hold shared settings, not a study."""
    p = Path(path)
    if not p.is_file():
        alt = paths.resolve(path)
        if not alt.is_file():
            known = sorted(str(c.relative_to(paths.ROOT)) for c in paths.CONFIGS.rglob("*.yaml") if not c.name.startswith("_"))
            raise FileNotFoundError(f"no config file at {path}; configs in the repo: {', '.join(known)}")
        p = alt
    tree, files = read_sections(p)
    where = str(p) if len(files) == 1 else f"{p} (extends {' -> '.join(map(str, files[1:]))})"
    try:
        for k, v in (overrides or {}).items():
            schema.set_dotted(tree, k, v)
        cfg = config_from_dict(tree)
        study = tree.get("study")
        missing = [f"study.{k}" for k in ("tier", "dataset") if not isinstance(study, dict) or k not in study]
        if missing:
            raise ConfigError(f"{' and '.join(missing)} not set; a config file must name its tier ({schema.describe(typing.get_type_hints(StudyConfig)['tier'])}) "
                              "and its dataset, or it would run the paper's defaults whatever it says")
        return cfg
    except (ConfigError, schema.SchemaError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _fail(key: str, value: Any, accepted: str) -> typing.NoReturn:
    raise ConfigError(f"{key}: {value!r} is not accepted; {accepted}")


def check_range(cfg: Config, key: str) -> None:
    """A :class:`ConfigError` ``"<key>: <value> is not accepted; accepted: ..."`` when setting ``key`` of ``cfg``
    (each element of a list) is outside its bounds (:data:`RANGES`); nothing for a key without bounds."""
    bounds = RANGES.get(key)
    if bounds is None:
        return
    section, name = key.split(".")
    value = getattr(getattr(cfg, section), name)
    for i, v in enumerate(value if isinstance(value, list) else [value]):
        if not bounds.contains(v):
            _fail(key if not isinstance(value, list) else f"{key}[{i}]", v, bounds.accepted())


def _check_ranges(cfg: Config) -> None:
    for key in RANGES:
        check_range(cfg, key)


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
    if s.num_threads and s.workers > s.num_threads:
        _fail("study.workers", s.workers, f"at most study.num_threads ({s.num_threads}): each worker process needs a thread")
    _check_ranges(cfg)
    if cfg.generator.resolution % 8:
        _fail("generator.resolution", cfg.generator.resolution, "accepted: a multiple of 8 (the VAE downsamples by 8)")
    if not cfg.captions.model.strip():
        _fail("captions.model", cfg.captions.model, "accepted: a Hugging Face id or local folder")
    if not cfg.generator.base.strip():
        _fail("generator.base", cfg.generator.base, "accepted: a Hugging Face id or local folder such as models/tiny-sd-fashion")
    main = f"lora_{cfg.gkd.label_mode}"
    bad_v = [v for v in cfg.gkd.baselines if v not in STUDENT_VARIANTS or v == main]
    if bad_v or len(set(cfg.gkd.baselines)) != len(cfg.gkd.baselines):
        _fail("gkd.baselines", cfg.gkd.baselines, f"accepted: distinct names among {', '.join(STUDENT_VARIANTS)}, "
              f"other than the run's own student ({main}, from gkd.label_mode)")
    if cfg.data.public_style not in PUBLIC_STYLES:
        _fail("data.public_style", cfg.data.public_style, f"accepted: one of {', '.join(PUBLIC_STYLES)}")
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
    power_settings.check(cfg, ATTACKS, _fail)
    dp_settings.check(cfg, _fail)
    extra = [c for c in m.pipeline_cardinalities if not any(math.isclose(c, x) for x in cards)]
    if extra:
        _fail("mia.pipeline_cardinalities", m.pipeline_cardinalities,
              f"accepted: a subset of synthesis.cardinalities {cards} ({extra} not among them)")
