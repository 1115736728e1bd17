"""Captioning (dynamic prompts): one caption per real training image of D, and its prompt ``"<class name>: <caption>"``.

Two captioners, chosen by ``captions.captioner``:

- ``"blip2"``: BLIP-2 (``captions.model``, ``Salesforce/blip2-opt-2.7b`` in the paper) in fp16 on GPU, batched,
  ``captions.max_new_tokens`` new tokens per caption (:class:`Blip2Captioner`).
- ``"attributes"``: the mini tier's offline captioner (:class:`AttributeCaptioner`). It measures each image
  (object brightness, fill, texture, aspect and tilt, left-right symmetry, colour, background) with numpy and
  puts the measurements into words, e.g. ``"a large bright smooth object, taller than wide, symmetric, on a
  dark background"``. It sees no labels and is deterministic: the same image always gets the same caption.

Files written by :func:`caption_run` under ``<run>/captions/``:

- ``captions.csv``: one row per image of D, in D's order. Columns: ``index`` (into the real train split),
  ``label`` (label id), ``class_name``, ``caption``, ``prompt`` (``"<class name>: <caption>"``).
- ``<dataset>_original_order.txt``: the original release's fine-tuning view, one ``<class>: <caption>`` line
  per image in dataset order (:mod:`tckr.generation.prompt_files` writes and reads both views).
- ``<dataset>_grouped_by_class.json``: the original release's generation view, ``{class name: [captions]}``.

:func:`export_prompts` copies the three files to the repository's ``prompts/`` folder (only when asked).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tckr.core import io, paths
from tckr.core.progress import tqdm
from tckr.generation.prompt_files import clean as _clean
from tckr.generation.prompt_files import (
    grouped_by_class_name,
    original_order_name,
    prompt_for,
    write_grouped_by_class,
    write_original_order,
)
from tckr.runfolder import artifacts
from tckr.runfolder.environment import device as _device
from tckr.runfolder.environment import set_threads

COLUMNS = ("index", "label", "class_name", "caption", "prompt")


# --------------------------------------------------------------------------- attribute captioner

# Thresholds on the measurements (images in [0, 1]); fixed so a caption never depends on the batch it came in.
FOREGROUND_DELTA = 0.12  # |pixel - background| above this is the object
BRIGHTNESS_WORDS = ((0.2, "very dark"), (0.4, "dark"), (0.6, "mid-grey"), (0.8, "bright"), (np.inf, "very bright"))
FILL_WORDS = ((0.2, "small"), (0.4, "medium-sized"), (0.6, "large"), (np.inf, "frame-filling"))
TEXTURE_WORDS = ((0.06, "smooth"), (0.1, "lightly textured"), (0.15, "textured"), (np.inf, "heavily patterned"))
ASPECT_WORDS = ((0.6, "wide and flat"), (0.87, "wider than tall"), (1.15, "about as tall as wide"),
                (1.6, "taller than wide"), (np.inf, "tall and narrow"))
SYMMETRY_WORDS = ((0.65, "asymmetric"), (0.82, "slightly asymmetric"), (np.inf, "symmetric"))
BACKGROUND_WORDS = ((0.3, "dark"), (0.7, "grey"), (np.inf, "light"))
HUE_WORDS = ((15, "red"), (40, "orange"), (70, "yellow"), (160, "green"), (200, "teal"), (255, "blue"),
             (290, "purple"), (340, "pink"), (361, "red"))
COLOUR_SATURATION = 0.25  # mean object saturation above this names a hue
TILT_ELONGATION = 2.0  # principal-axis variance ratio above which a tilt is named
TILT_DEGREES = (20.0, 70.0)  # axis angle from vertical counted as a tilt


def _bin(values: np.ndarray, table) -> np.ndarray:
    edges = np.array([t for t, _ in table[:-1]])
    words = np.array([w for _, w in table], dtype=object)
    return words[np.searchsorted(edges, values, side="right")]


def measure_attributes(images: np.ndarray, chunk: int = 4096) -> pd.DataFrame:
    """Measurements of ``N×H×W×3`` uint8 images, one row per image.

    Columns: ``brightness`` (mean object intensity), ``background`` (median border intensity), ``fill`` (object
    fraction of the frame), ``texture`` (mean gradient magnitude on the object), ``aspect`` (object bounding-box
    height / width), ``tilt`` (principal-axis angle from vertical in degrees, positive leaning right),
    ``elongation`` (principal-axis variance ratio), ``symmetry`` (IoU of the object with its left-right mirror),
    ``saturation`` and ``hue`` (degrees) of the object. Intensities in [0, 1].
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images N×H×W×3, got {images.dtype} {images.shape}")
    parts = [_measure_chunk(images[s:s + chunk]) for s in range(0, len(images), chunk)]
    if not parts:
        return pd.DataFrame(columns=["brightness", "background", "fill", "texture", "aspect", "tilt", "elongation",
                                     "symmetry", "saturation", "hue"])
    return pd.concat(parts, ignore_index=True)


def _measure_chunk(images: np.ndarray) -> pd.DataFrame:
    x = images.astype(np.float32) / 255.0
    n, h, w, _ = x.shape
    g = x.mean(-1)
    border = np.concatenate([g[:, 0, :], g[:, -1, :], g[:, :, 0], g[:, :, -1]], axis=1)
    bg = np.median(border, axis=1)
    mask = np.abs(g - bg[:, None, None]) > FOREGROUND_DELTA
    empty = ~mask.any(axis=(1, 2))
    mask[empty] = True
    area = mask.sum(axis=(1, 2)).astype(np.float32)
    fill = np.where(empty, 0.0, area / (h * w))
    brightness = (g * mask).sum(axis=(1, 2)) / area

    gy = np.abs(np.diff(g, axis=1, append=g[:, -1:, :]))
    gx = np.abs(np.diff(g, axis=2, append=g[:, :, -1:]))
    interior = mask & np.roll(mask, 1, 1) & np.roll(mask, -1, 1) & np.roll(mask, 1, 2) & np.roll(mask, -1, 2)
    interior[~interior.any(axis=(1, 2))] = True
    texture = (np.maximum(gx, gy) * interior).sum(axis=(1, 2)) / interior.sum(axis=(1, 2))

    rows, cols = mask.any(axis=2), mask.any(axis=1)
    r0, r1 = rows.argmax(1), h - 1 - rows[:, ::-1].argmax(1)
    c0, c1 = cols.argmax(1), w - 1 - cols[:, ::-1].argmax(1)
    aspect = (r1 - r0 + 1) / (c1 - c0 + 1)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy = (mask * yy).sum(axis=(1, 2)) / area
    cx = (mask * xx).sum(axis=(1, 2)) / area
    dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]
    syy = (mask * dy * dy).sum(axis=(1, 2)) / area
    sxx = (mask * dx * dx).sum(axis=(1, 2)) / area
    sxy = (mask * dx * dy).sum(axis=(1, 2)) / area
    tr, det = sxx + syy, sxx * syy - sxy**2
    disc = np.sqrt(np.maximum(tr**2 / 4 - det, 0))
    lam1, lam2 = tr / 2 + disc, np.maximum(tr / 2 - disc, 1e-6)
    elongation = lam1 / lam2
    # angle of the major axis from vertical; image rows grow downwards, so a top-right lean has sxy < 0
    tilt = np.degrees(0.5 * np.arctan2(-2 * sxy, syy - sxx))

    mirror_cols = np.clip((c0 + c1)[:, None] - np.arange(w)[None, :], 0, w - 1)
    mirrored = np.take_along_axis(mask, np.broadcast_to(mirror_cols[:, None, :], mask.shape), axis=2)
    symmetry = (mask & mirrored).sum(axis=(1, 2)) / np.maximum((mask | mirrored).sum(axis=(1, 2)), 1)

    mx, mn = x.max(-1), x.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    saturation = (sat * mask).sum(axis=(1, 2)) / area
    r, gg, b = x[..., 0], x[..., 1], x[..., 2]
    hue_pix = np.arctan2(np.sqrt(3) * (gg - b), 2 * r - gg - b)
    weight = sat * mask
    hue = np.degrees(np.arctan2((np.sin(hue_pix) * weight).sum(axis=(1, 2)),
                                (np.cos(hue_pix) * weight).sum(axis=(1, 2)))) % 360
    return pd.DataFrame({"brightness": brightness, "background": bg, "fill": fill, "texture": texture,
                         "aspect": aspect, "tilt": tilt, "elongation": elongation, "symmetry": symmetry,
                         "saturation": saturation, "hue": hue}).astype(np.float64)


def describe_attributes(attrs: pd.DataFrame) -> list[str]:
    """Put :func:`measure_attributes` rows into words (one caption per row)."""
    n = len(attrs)
    if n == 0:
        return []
    size = _bin(attrs["fill"].to_numpy(), FILL_WORDS)
    tone = _bin(attrs["brightness"].to_numpy(), BRIGHTNESS_WORDS)
    texture = _bin(attrs["texture"].to_numpy(), TEXTURE_WORDS)
    shape = _bin(attrs["aspect"].to_numpy(), ASPECT_WORDS)
    sym = _bin(attrs["symmetry"].to_numpy(), SYMMETRY_WORDS)
    bg = _bin(attrs["background"].to_numpy(), BACKGROUND_WORDS)
    hue = _bin(attrs["hue"].to_numpy(), HUE_WORDS)
    coloured = attrs["saturation"].to_numpy() > COLOUR_SATURATION
    tilt = attrs["tilt"].to_numpy()
    tilted = (attrs["elongation"].to_numpy() > TILT_ELONGATION) & (np.abs(tilt) > TILT_DEGREES[0]) & (np.abs(tilt) < TILT_DEGREES[1])
    empty = attrs["fill"].to_numpy() == 0
    out = []
    for i in range(n):
        if empty[i]:
            out.append(f"a plain {tone[i]} frame with no distinct object")
            continue
        colour = f" {hue[i]}" if coloured[i] else ""
        lean = (", leaning right" if tilt[i] > 0 else ", leaning left") if tilted[i] else ""
        out.append(f"a {size[i]} {tone[i]}{colour} {texture[i]} object, {shape[i]}{lean}, {sym[i]}, "
                   f"on a {bg[i]} background")
    return out


def attribute_captions(images: np.ndarray) -> list[str]:
    """Captions from measured attributes, one per ``N×H×W×3`` uint8 image (offline, deterministic)."""
    return describe_attributes(measure_attributes(images))


@dataclass
class AttributeCaptioner:
    """The offline captioner: :func:`attribute_captions` behind the captioner interface."""

    batch_size: int = 4096
    name: str = "attributes"

    def caption(self, images: np.ndarray, progress: bool = False) -> list[str]:
        starts = range(0, len(images), self.batch_size)
        out: list[str] = []
        for s in tqdm(starts, desc="captions (attributes)", disable=not progress):
            out += attribute_captions(images[s:s + self.batch_size])
        return out


def attribute_vocabulary() -> list[str]:
    """Every word the attribute captioner can write (for building a small tokenizer)."""
    words = {"a", "plain", "frame", "with", "no", "distinct", "object", "on", "background", "leaning", "left", "right"}
    for table in (BRIGHTNESS_WORDS, FILL_WORDS, TEXTURE_WORDS, ASPECT_WORDS, SYMMETRY_WORDS, BACKGROUND_WORDS, HUE_WORDS):
        for _, phrase in table:
            words.update(phrase.split())
    return sorted(words)


# --------------------------------------------------------------------------- a run's captions


def build_captioner(cfg, device=None):
    """The captioner ``cfg.captions.captioner`` names (BLIP-2 loads ``cfg.captions.model``)."""
    kind = cfg.captions.captioner
    if kind == "attributes":
        return AttributeCaptioner(batch_size=max(cfg.captions.batch_size, 1024))
    if kind == "blip2":
        return Blip2Captioner.from_pretrained(cfg.captions.model, device=device, dtype=cfg.captions.dtype,
                                              batch_size=cfg.captions.batch_size,
                                              max_new_tokens=cfg.captions.max_new_tokens)
    raise ValueError(f"captions.captioner: unknown captioner {kind!r}; accepted: 'blip2', 'attributes'")


def caption_run(run, captioner=None, *, progress: bool = True, overwrite: bool = False) -> pd.DataFrame:
    """Caption every image of the run's D and write ``captions/`` (see the module docstring).

    An existing ``captions.csv`` is read back instead, unless ``overwrite``. ``captioner`` defaults to the one the
    config names; anything with ``caption(images, progress) -> list[str]`` works.
    """
    out = artifacts.captions_path(run)
    if out.is_file() and not overwrite:
        table = load_captions(run)
        _write_views(run, table)
        return table
    D = run.real("D")
    if captioner is None:
        set_threads(run.cfg)
        captioner = build_captioner(run.cfg, _device(run.cfg))
    caps = [_clean(c) for c in captioner.caption(D.images, progress=progress)]
    if len(caps) != len(D):
        raise RuntimeError(f"captioner returned {len(caps)} captions for {len(D)} images")
    names = [D.class_names[int(y)] for y in D.labels]
    table = pd.DataFrame({"index": run.splits().D.astype(np.int64), "label": D.labels.astype(np.int64),
                          "class_name": names, "caption": caps,
                          "prompt": [prompt_for(n, c) for n, c in zip(names, caps)]})
    _write_views(run, table)
    io.save_csv(out, table)
    io.write_json(run.path(artifacts.CAPTIONS_DIR, "captions.json"),
                  {"captioner": getattr(captioner, "name", type(captioner).__name__), "n": len(table),
                   "dataset": run.dataset, "max_new_tokens": run.cfg.captions.max_new_tokens,
                   "model": run.cfg.captions.model if run.cfg.captions.captioner == "blip2" else None})
    return table


def _write_views(run, table: pd.DataFrame) -> None:
    folder = run.dir / artifacts.CAPTIONS_DIR
    names, caps = table["class_name"].tolist(), table["caption"].tolist()
    write_original_order(folder / original_order_name(run.dataset), names, caps)
    write_grouped_by_class(folder / grouped_by_class_name(run.dataset), names, caps, order=run.class_names)


def load_captions(run) -> pd.DataFrame:
    """The run's ``captions/captions.csv``; a clear error when notebook 01 has not run."""
    path = artifacts.captions_path(run)
    if not path.is_file():
        raise FileNotFoundError(f"no captions at {path}; run notebooks/01_captions.ipynb (tckr.captions.caption_run) first")
    try:
        table = pd.read_csv(path, keep_default_na=False, dtype={"class_name": str, "caption": str, "prompt": str})
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise io.CorruptFileError(f"{path}: not a readable captions table ({type(e).__name__}: {str(e).splitlines()[0]}); "
                                  "delete it and rerun notebooks/01_captions.ipynb") from None
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise io.CorruptFileError(f"{path}: missing columns {missing}; expected {list(COLUMNS)}")
    problem = _table_problem(table, run)
    if problem:
        raise io.CorruptFileError(f"{path}: {problem}; delete it and rerun notebooks/01_captions.ipynb (phase 01_captions)")
    return table


def _table_problem(table: pd.DataFrame, run) -> str | None:
    """The first way a captions table disagrees with the run (one row per image of D, in D's order, labels and
    class names of the dataset, prompts built from them), or None."""
    D = run.splits().D
    for col in ("index", "label"):
        if not pd.api.types.is_integer_dtype(table[col]):
            return f"column {col!r} holds non-integers"
    index = table["index"].to_numpy()
    if len(table) != len(D) or not np.array_equal(np.sort(index), np.sort(D)):
        return f"{len(table)} rows whose index column is not the {len(D)} images of D (truncated, or from another run)"
    names = run.class_names
    labels = table["label"].to_numpy()
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(names):
        return f"labels outside 0..{len(names) - 1}"
    wrong = np.flatnonzero(table["class_name"].to_numpy() != np.asarray(names, dtype=object)[labels])
    if wrong.size:
        return f"row {wrong[0]}: class_name {table['class_name'].iloc[wrong[0]]!r} is not label {labels[wrong[0]]}'s name"
    prompts = [prompt_for(n, c) for n, c in zip(table["class_name"], table["caption"])]
    wrong = np.flatnonzero(table["prompt"].to_numpy() != np.asarray(prompts, dtype=object))
    if wrong.size:
        return f"row {wrong[0]}: prompt {table['prompt'].iloc[wrong[0]]!r} is not '<class>: <caption>'"
    return None


def export_prompts(run, dest: str | Path | None = None) -> list[Path]:
    """Copy the run's three caption files to ``prompts/`` (or ``dest``), named after the dataset."""
    dest = Path(dest) if dest else paths.PROMPTS
    folder = run.dir / artifacts.CAPTIONS_DIR
    pairs = [(artifacts.captions_path(run), f"{run.dataset}_captions.csv"),
             (folder / original_order_name(run.dataset), original_order_name(run.dataset)),
             (folder / grouped_by_class_name(run.dataset), grouped_by_class_name(run.dataset))]
    out = []
    for src, name in pairs:
        if not src.is_file():
            raise FileNotFoundError(f"no {src}; run caption_run(run) first")
        with io.atomic_path(dest / name) as tmp:
            shutil.copyfile(src, tmp)
        out.append(dest / name)
    return out


# --------------------------------------------------------------------------- BLIP-2


class Blip2Captioner:
    """Batched BLIP-2 captioning: ``caption(images)`` runs ``model.generate`` with ``max_new_tokens`` on each batch
    and decodes the new tokens. ``model`` is a ``Blip2ForConditionalGeneration``, ``processor`` a ``Blip2Processor``."""

    name = "blip2"

    def __init__(self, model, processor, *, batch_size: int = 16, max_new_tokens: int = 20, device=None,
                 dtype: str = "float16"):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = _torch_dtype(dtype, self.device)
        self.model = model.to(self.device, self.dtype).eval()
        self.processor = processor
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens)

    @classmethod
    def from_pretrained(cls, name: str, *, device=None, dtype: str = "float16", batch_size: int = 16,
                        max_new_tokens: int = 20) -> "Blip2Captioner":
        """Load BLIP-2 (a Hugging Face id such as ``Salesforce/blip2-opt-2.7b``, or a local folder)."""
        from transformers import (  # lazy: optional heavy dependency (transformers), imported only when used
            Blip2ForConditionalGeneration,
            Blip2Processor,
        )


        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        processor = Blip2Processor.from_pretrained(name)
        model = Blip2ForConditionalGeneration.from_pretrained(name, dtype=_torch_dtype(dtype, dev))
        return cls(model, processor, batch_size=batch_size, max_new_tokens=max_new_tokens, device=dev, dtype=dtype)

    def caption(self, images: np.ndarray, progress: bool = False) -> list[str]:
        out: list[str] = []
        for s in tqdm(range(0, len(images), self.batch_size), desc="captions (BLIP-2)", disable=not progress):
            batch = [np.asarray(im) for im in images[s:s + self.batch_size]]
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            with torch.inference_mode():
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            if "input_ids" in inputs and ids.shape[1] > inputs["input_ids"].shape[1] and \
                    torch.equal(ids[:, :inputs["input_ids"].shape[1]], inputs["input_ids"]):
                ids = ids[:, inputs["input_ids"].shape[1]:]
            out += [_clean(t) for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out


def _torch_dtype(name: str, device):
    if device.type == "cpu" and name == "float16":
        return torch.float32
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[name]


def build_random_blip2(seed: int = 0, image_size: int = 32, num_query_tokens: int = 4):
    """A tiny ``Blip2ForConditionalGeneration`` with random weights and a processor, built offline.

    Same classes as ``Salesforce/blip2-opt-2.7b`` (ViT vision tower, Q-Former, OPT language model,
    ``Blip2Processor``), with a word-level tokenizer over the attribute captioner's vocabulary. For testing the
    BLIP-2 path end to end without the hub: its captions are random words, not descriptions.
    Returns ``(model, processor)``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers  # lazy: imported only when a tokenizer is built
    from transformers import (  # lazy: optional heavy dependency (transformers), imported only when used
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        OPTConfig,
        PreTrainedTokenizerFast,
    )

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<image>"]
    vocab = {t: i for i, t in enumerate(specials + attribute_vocabulary() + [",", "-"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                        unk_token="<unk>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    image_processor = BlipImageProcessor(size={"height": image_size, "width": image_size})
    processor = Blip2Processor(image_processor, tokenizer, num_query_tokens=num_query_tokens)
    hidden = 32
    config = Blip2Config(
        vision_config=Blip2VisionConfig(hidden_size=hidden, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, image_size=image_size, patch_size=8).to_dict(),
        qformer_config=Blip2QFormerConfig(hidden_size=hidden, intermediate_size=64, num_hidden_layers=1,
                                          num_attention_heads=2, encoder_hidden_size=hidden,
                                          vocab_size=len(vocab)).to_dict(),
        text_config=OPTConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=1, ffn_dim=64,
                              num_attention_heads=2, word_embed_proj_dim=hidden, max_position_embeddings=64,
                              bos_token_id=vocab["</s>"], eos_token_id=vocab["</s>"],
                              pad_token_id=vocab["<pad>"], tie_word_embeddings=False, init_std=0.5).to_dict(),
        num_query_tokens=num_query_tokens, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Blip2ForConditionalGeneration(config).eval()
    return model, processor
