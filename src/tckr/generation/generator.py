"""The text-to-image generator: Stable Diffusion 2's architecture, full size or scaled down.

- :func:`build_random` builds a diffusers ``StableDiffusionPipeline`` with random weights from the
  component configs bundled under ``assets/generators/<arch>/``: ``"sd2"`` (Stable Diffusion 2's
  real UNet, VAE and text-encoder shapes) and ``"tiny"`` (the same classes scaled down for
  32×32 images on a CPU: 8×8×4 latents, attention only at the UNet's two lowest resolutions).
  Both use the project's small CLIP-style BPE tokenizer (``assets/generators/tokenizer``), trained
  with ``tokenizers`` by :func:`train_tokenizer`; SD2's real 49,408-token vocabulary is not
  available offline, so for ``"sd2"`` it is a stand-in.
- :func:`load` loads a pretrained base (a Hugging Face id or a local ``save_pretrained`` folder such
  as ``models/tiny-sd-fashion``) and an optional LoRA adapter.
- :func:`load_lora` loads an adapter into a pipeline's UNet: this project's files (written by
  :func:`save_lora`) and the original TCKR release's files in diffusers' older key formats
  (``unet.<module>.lora.down.weight`` and ``<module>.processor.to_k_lora.down.weight``).
  Keys that match no UNet module, or attention projections the file leaves out, are an error
  that names them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tckr.core import io, paths, progress, registry
from tckr.generation import captions

ARCHS = ("sd2", "tiny")
GENERATOR_ASSETS = paths.ASSETS / "generators"
TOKENIZER_DIR = GENERATOR_ASSETS / "tokenizer"
ADAPTER_FORMAT = "tckr-peft-lora-v1"
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass
class Generator:
    """A diffusers pipeline and what it was made from: ``base`` (hub id, folder, or ``random:<arch>``) and the
    LoRA ``adapter`` file loaded into it (None for the base itself). The synthetic set's manifest records both."""

    pipe: Any
    base: str
    adapter: str | None = None

    @property
    def device(self):
        return self.pipe.device


class LoraKeyError(KeyError):
    """An adapter file whose keys do not fit the pipeline's UNet."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def component_configs(arch: str) -> dict[str, dict[str, Any]]:
    """The bundled component configs (unet, vae, text_encoder, scheduler) of an architecture."""
    if arch not in ARCHS:
        raise ValueError(f"unknown generator architecture {arch!r}; accepted: {', '.join(ARCHS)}")
    folder = GENERATOR_ASSETS / arch
    return {name: json.loads((folder / f"{name}.json").read_text()) for name in ("unet", "vae", "text_encoder", "scheduler")}


def load_tokenizer(max_length: int = 77):
    """The project's CLIP-style tokenizer (``transformers.CLIPTokenizer``) padded to ``max_length``."""
    from transformers import CLIPTokenizer  # lazy: optional heavy dependency (transformers), imported only when used

    vocab = json.loads((TOKENIZER_DIR / "vocab.json").read_text())
    merges = [tuple(m.split(" ")) for m in (TOKENIZER_DIR / "merges.txt").read_text().splitlines() if m and not m.startswith("#version")]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)


def build_random(arch: str, *, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A ``StableDiffusionPipeline`` of architecture ``arch`` ("sd2" or "tiny") with random weights."""
    from diffusers import (  # lazy: optional heavy dependency (diffusers), imported only when a generator is used
        AutoencoderKL,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from diffusers.schedulers import (  # lazy: optional heavy dependency (diffusers), imported only when a generator is used
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
    )
    from transformers import (  # lazy: optional heavy dependency (transformers), imported only when used
        CLIPTextConfig,
        CLIPTextModel,
    )

    cfgs = component_configs(arch)
    te_cfg = {k: v for k, v in cfgs["text_encoder"].items() if k != "architectures"}
    tokenizer = load_tokenizer(te_cfg["max_position_embeddings"])
    if not te_cfg.get("vocab_size"):
        te_cfg["vocab_size"] = len(tokenizer)
    te_cfg["bos_token_id"], te_cfg["eos_token_id"] = tokenizer.bos_token_id, tokenizer.eos_token_id
    te_cfg["pad_token_id"] = tokenizer.pad_token_id
    schedulers = {c.__name__: c for c in (DDIMScheduler, DPMSolverMultistepScheduler, DDPMScheduler, EulerDiscreteScheduler)}
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_config(_strip(cfgs["unet"]))
    vae = AutoencoderKL.from_config(_strip(cfgs["vae"]))
    text_encoder = CLIPTextModel(CLIPTextConfig(**te_cfg))
    scheduler = schedulers[cfgs["scheduler"]["_class_name"]].from_config(_strip(cfgs["scheduler"]))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 ``N×H×W×3`` images -> float ``N×3×H×W`` in [-1, 1] (the VAE's input range)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def truncated_prompts(tokenizer, prompts) -> list[str]:
    """The prompts longer than the text encoder's window (``tokenizer.model_max_length`` tokens, start and end
    included): the encoder sees only their beginning. Distinct prompts, in order of first appearance."""
    limit = int(tokenizer.model_max_length)
    unique = list(dict.fromkeys(prompts))
    lengths = [len(ids) for ids in tokenizer(unique, truncation=False)["input_ids"]] if unique else []
    return [p for p, n in zip(unique, lengths) if n > limit]


def to_uint8(images) -> np.ndarray:
    """The pipeline's ``output_type="np"`` images (float ``N×H×W×3`` in [0, 1]) as uint8."""
    return np.clip(np.round(np.asarray(images) * 255), 0, 255).astype(np.uint8)


def _strip(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def resolve_base(base: str | Path) -> str:
    """A local folder (absolute, or relative to the cwd or the repo root) as a path string; otherwise ``base`` (a hub id)."""
    p = Path(base).expanduser()
    for cand in (p, paths.resolve(p)):
        if cand.is_dir():
            return str(cand.resolve())
    return str(base)


def load(base: str | Path, lora: str | Path | None = None, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None):
    """A pretrained ``StableDiffusionPipeline`` from a hub id or local folder, with an optional LoRA adapter.

    Weights are cast to ``dtype`` (default float32: the tiny base is stored in fp16 to stay small)."""
    from diffusers import (
        StableDiffusionPipeline,  # lazy: optional heavy dependency (diffusers), imported only when a generator is used
    )

    where = resolve_base(base)
    if not Path(where).is_dir() and (str(base).startswith((".", "/")) or str(base).startswith("models")):
        raise FileNotFoundError(f"no generator folder at {base}; a local base is a save_pretrained folder such as "
                                "models/tiny-sd-fashion (see its README.md for how it was made)")
    kwargs = {"safety_checker": None, "requires_safety_checker": False, "torch_dtype": dtype or torch.float32}
    progress.quiet_libraries()
    pipe = StableDiffusionPipeline.from_pretrained(where, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    if device is not None:
        pipe.to(device)
    if lora is not None:
        load_lora(pipe, lora)
    return pipe


# ---------------------------------------------------------------- LoRA adapters

_OLD_PROCESSOR = re.compile(r"^(?P<mod>.+)\.processor\.(?P<proj>to_q|to_k|to_v|to_out)_lora\.(?P<ud>up|down)\.weight$")
_OLD_LINEAR = re.compile(r"^(?P<mod>.+)\.lora\.(?P<ud>up|down)\.weight$")
_PEFT = re.compile(r"^(?P<mod>.+)\.lora_(?P<ab>A|B)(\.default)?\.weight$")
_ALPHA = re.compile(r"^(?P<mod>.+)\.alpha$")


def _normalise_key(key: str) -> tuple[str, str] | None:
    """(UNet module path, "A" or "B") of an adapter key in any of the accepted formats, else None."""
    k = key[len("unet."):] if key.startswith("unet.") else key
    k = k.replace("base_model.model.", "")
    m = _OLD_PROCESSOR.match(k)
    if m:
        proj = "to_out.0" if m["proj"] == "to_out" else m["proj"]
        return f"{m['mod']}.{proj}", "A" if m["ud"] == "down" else "B"
    m = _OLD_LINEAR.match(k)
    if m:
        return m["mod"], "A" if m["ud"] == "down" else "B"
    m = _PEFT.match(k)
    if m:
        return m["mod"], m["ab"]
    return None


def lora_state(pipe) -> dict[str, torch.Tensor]:
    """The UNet's LoRA weights as ``unet.<module>.lora_A.weight`` / ``lora_B`` tensors (diffusers' peft format)."""
    out = {}
    for name, mod in pipe.unet.named_modules():
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {}):
            out[f"unet.{name}.lora_A.weight"] = mod.lora_A["default"].weight.detach().cpu().clone()
            out[f"unet.{name}.lora_B.weight"] = mod.lora_B["default"].weight.detach().cpu().clone()
    return out


def add_lora(pipe, rank: int, alpha: float, target_modules=LORA_TARGETS, *, init: bool = True) -> list[str]:
    """Wrap the UNet's attention projections in a peft LoRA adapter; returns the wrapped module paths."""
    from peft import LoraConfig  # lazy: optional heavy dependency (peft), imported only when an adapter is used

    names = _attention_modules(pipe.unet, target_modules)
    if not names:
        raise ValueError(f"no UNet attention module matches {list(target_modules)}")
    cfg = LoraConfig(r=int(rank), lora_alpha=float(alpha), target_modules=names, init_lora_weights=True if init else "gaussian")
    pipe.unet.add_adapter(cfg)
    return names


def _attention_modules(unet, target_modules) -> list[str]:
    found = []
    for name, mod in unet.named_modules():
        if not isinstance(mod, torch.nn.Linear) or ".attn" not in name:
            continue
        if any(name.endswith("." + t) for t in target_modules):
            found.append(name)
    return found


def save_lora(pipe, path: str | Path, *, rank: int, alpha: float, target_modules=LORA_TARGETS, base: str = "",
              extra: dict[str, Any] | None = None) -> Path:
    """Save the UNet's LoRA adapter as safetensors with its metadata (rank, alpha, target modules, base model)."""
    tensors = lora_state(pipe)
    if not tensors:
        raise ValueError("the pipeline's UNet carries no LoRA adapter to save")
    meta = {"format": ADAPTER_FORMAT, "rank": int(rank), "alpha": float(alpha), "target_modules": list(target_modules),
            "base_model": str(base), **(extra or {})}
    return io.save_weights(path, tensors, meta)


def read_lora(path: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """An adapter file as ``{module path: {"A": down, "B": up}}`` plus its metadata; unknown keys raise :class:`LoraKeyError`."""
    tensors, meta = io.load_weights(path)
    modules: dict[str, dict[str, torch.Tensor]] = {}
    alphas: dict[str, float] = {}
    unknown = []
    for key, t in tensors.items():
        m = _ALPHA.match(key[len("unet."):] if key.startswith("unet.") else key)
        if m:
            alphas[m["mod"]] = float(t.item())
            continue
        norm = _normalise_key(key)
        if norm is None:
            unknown.append(key)
            continue
        modules.setdefault(norm[0], {})[norm[1]] = t
    if unknown:
        raise LoraKeyError(f"{path}: {len(unknown)} key(s) in no known LoRA format: {', '.join(sorted(unknown)[:10])}"
                           + (" ..." if len(unknown) > 10 else ""))
    half = sorted(m for m, d in modules.items() if len(d) != 2)
    if half:
        raise LoraKeyError(f"{path}: LoRA modules missing their up or down weight: {', '.join(half[:10])}")
    if alphas:
        meta.setdefault("alpha", sorted(set(alphas.values()))[0])
    return modules, meta


def load_lora(pipe, path: str | Path, *, strict: bool = True):
    """Load a LoRA adapter (this project's or the original release's key format) into ``pipe.unet``.

    The rank comes from the weights, alpha from the metadata (default: alpha = rank, i.e. scale 1,
    as diffusers' old attention processors used). With ``strict``, every attention projection of
    the UNet that the file's projection names cover must be present. Returns ``pipe``.
    """
    modules, meta = read_lora(path)
    if not modules:
        raise LoraKeyError(f"{path}: no LoRA weights in the file")
    unet = pipe.unet
    known = dict(unet.named_modules())
    unmatched = sorted(m for m in modules if not isinstance(known.get(m), torch.nn.Linear)
                       and not (hasattr(known.get(m), "base_layer")))
    if unmatched:
        raise LoraKeyError(f"{path}: {len(unmatched)} LoRA module(s) match no linear layer of the UNet: "
                           f"{', '.join(unmatched[:10])}" + (" ..." if len(unmatched) > 10 else ""))
    targets = sorted({t for t in LORA_TARGETS if any(m.endswith("." + t) for m in modules)})
    expected = set(_attention_modules(unet, targets)) if not _has_lora(unet) else set(modules)
    missing = sorted(expected - set(modules))
    if strict and missing:
        raise LoraKeyError(f"{path}: the file has no LoRA weights for {len(missing)} UNet module(s): "
                           f"{', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
    ranks = {d["A"].shape[0] for d in modules.values()}
    if len(ranks) != 1:
        raise LoraKeyError(f"{path}: mixed LoRA ranks {sorted(ranks)}")
    rank = ranks.pop()
    alpha = float(meta.get("alpha") or rank)
    for m, d in modules.items():
        lin = known[m].base_layer if hasattr(known[m], "base_layer") else known[m]
        if tuple(d["A"].shape) != (rank, lin.in_features) or tuple(d["B"].shape) != (lin.out_features, rank):
            raise LoraKeyError(f"{path}: {m}: LoRA shapes {tuple(d['A'].shape)}/{tuple(d['B'].shape)} do not fit "
                               f"the layer ({lin.in_features} -> {lin.out_features})")
    if _has_lora(unet):
        unet.delete_adapters("default") if hasattr(unet, "delete_adapters") else None
    from peft import LoraConfig  # lazy: optional heavy dependency (peft), imported only when an adapter is used

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=sorted(modules)))
    dtype = next(unet.parameters()).dtype
    mods = dict(unet.named_modules())
    with torch.no_grad():
        for m, d in modules.items():
            mods[m].lora_A["default"].weight.copy_(d["A"].to(dtype))
            mods[m].lora_B["default"].weight.copy_(d["B"].to(dtype))
    return pipe


def _has_lora(unet) -> bool:
    return any(hasattr(m, "lora_A") for m in unet.modules())


def to_original_format(tensors: dict[str, torch.Tensor], style: str = "linear") -> dict[str, torch.Tensor]:
    """Rename this project's adapter tensors to the original release's diffusers key formats.

    ``style="linear"``: ``unet.<module>.lora.down.weight``; ``style="processor"``:
    ``<attn>.processor.to_k_lora.down.weight`` (``unet.save_attn_procs``)."""
    out = {}
    for key, t in tensors.items():
        mod, ab = _normalise_key(key)
        ud = "down" if ab == "A" else "up"
        if style == "linear":
            out[f"unet.{mod}.lora.{ud}.weight"] = t
        elif style == "processor":
            attn, proj = mod.rsplit(".to_", 1)
            proj = "to_" + proj.replace("out.0", "out")
            out[f"{attn}.processor.{proj}_lora.{ud}.weight"] = t
        else:
            raise ValueError(f"unknown style {style!r}; accepted: 'linear', 'processor'")
    return out


# ---------------------------------------------------------------- tokenizer

def tokenizer_corpus() -> list[str]:
    """The tokenizer's training text: class names of every registered dataset, the offline attribute
    captioner's vocabulary and the extra words in ``assets/generators/tokenizer/corpus.txt``."""
    lines = [" ".join(registry.class_names(n)) for n in registry.available_datasets()]
    lines.append(" ".join(captions.attribute_vocabulary()))
    extra = TOKENIZER_DIR / "corpus.txt"
    lines += [ln for ln in extra.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    return lines



def train_tokenizer(texts: list[str] | None = None, out_dir: str | Path = TOKENIZER_DIR, vocab_size: int = 2048) -> Path:
    """Train the CLIP-style byte-level BPE tokenizer on ``texts``; writes ``vocab.json`` and ``merges.txt``."""
    from tokenizers import (  # lazy: imported only when a tokenizer is built
        Regex,
        Tokenizer,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    texts = tokenizer_corpus() if texts is None else texts

    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token="<|endoftext|>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                                  initial_alphabet=alphabet, end_of_word_suffix="</w>", show_progress=False)
    # every byte also as a word-final symbol, so any word can be spelt
    texts = list(texts) + [" ".join(alphabet)]
    tok.train_from_iterator(texts, trainer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = json.loads(tok.to_str())["model"]
    io.write_json(out / "vocab.json", model["vocab"])
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    io.write_text(out / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")
    return out
