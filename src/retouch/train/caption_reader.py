"""Training the caption reader (``models/caption_reader.py``) on text alone.

Captions come from ``world/rich_captions.training_caption`` (rich wordings, the world's own templates now and then,
and text that is not about the world); their frozen MiniLM token states are computed once and cached in chunks
under ``cache`` (an interrupted encode resumes at the next missing chunk), then a small head trains on them for
``steps`` steps, resumable from ``checkpoint.pt``. The targets are what each caption says (``Said``): occupied per
place, each attribute's one-hot block, and for an attribute the caption leaves out the uniform distribution
(``omitted_target: "uniform"``) or the world's neutral value where it has one (``"neutral"``: medium, solid,
upright, plain); a missing style word always reads as ``flat``, as the world's short caption writes flat scenes.

    retouch train recipes/caption-reader.json
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.caption_reader import CaptionReader, CaptionReaderConfig, decode
from ..models.layout import OBJECT_DIM, OBJECT_FIELDS, OBJECT_SLICES, SCENE_DIM, SCENE_FIELDS, SCENE_SLICES, scene_features
from ..world.captions import detailed_caption
from ..world.rich_captions import NEUTRAL, Said, training_caption
from ..world.scene import N_SLOTS, OBJECT_ATTRS, Scene, random_scene
from . import register_task
from .loop import resume, save_checkpoint, start_run, warmup_cosine

logger = logging.getLogger(__name__)

# the two development fixtures; tests/fixtures/paraphrases_blind.jsonl is measured apart (benchmarks/caption_reader.py)
FIXTURES = tuple(Path(__file__).resolve().parents[3] / "tests" / "fixtures" / f for f in ("paraphrases.jsonl", "paraphrases_more.jsonl"))


@dataclass
class CaptionReaderTrainConfig:
    out: str = "models/caption-reader"
    cache: str = "runs/caption-reader-cache"  # the captions' token states, in chunks
    n_captions: int = 6000
    chunk: int = 2000
    seed: int = 11
    omitted_target: str = "uniform"  # or "neutral"
    p_template: float = 0.2  # share of the world's own detailed / varied / short captions
    p_negative: float = 0.04  # share of text not about the world
    steps: int = 4500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    ckpt_every: int = 250
    threads: int = 2
    dim: int = 128
    heads: int = 4
    encoder_layers: int = 0
    decoder_layers: int = 3
    dropout: float = 0.1
    eval_n: int = 200  # held-out detailed captions of the scenes `retouch world captions --seed eval_seed` writes (0: no eval)
    eval_seed: int = 99

    def __post_init__(self) -> None:
        if self.omitted_target not in ("uniform", "neutral"):
            raise ValueError(f"omitted_target must be 'uniform' or 'neutral', got {self.omitted_target!r}")
        if self.n_captions < 1 or self.chunk < 1 or self.steps < 1 or self.batch_size < 1 or self.eval_n < 0:
            raise ValueError("n_captions, chunk, steps and batch_size must be positive")


def said_targets(said: Said | None, omitted_target: str = "uniform") -> tuple[np.ndarray, np.ndarray]:
    """Soft targets of what a caption says: objects (N_SLOTS, OBJECT_DIM), scene (SCENE_DIM) float32.

    ``None`` (text not about the world): no object, uniform scene. Empty places' attribute blocks are zero."""
    if said is None:
        glob = np.zeros(SCENE_DIM, np.float32)
        for name, vocab in SCENE_FIELDS:
            glob[SCENE_SLICES[name]] = 1.0 / len(vocab)
        return np.zeros((N_SLOTS, OBJECT_DIM), np.float32), glob
    objects, glob = scene_features(said.scene)
    for slot, omitted in said.omitted.items():
        for name in omitted:
            sl, vocab = OBJECT_SLICES[name], OBJECT_ATTRS[name]
            objects[slot, sl] = 0.0
            if omitted_target == "neutral" and name in NEUTRAL:
                objects[slot, sl.start + vocab.index(NEUTRAL[name])] = 1.0
            else:
                objects[slot, sl] = 1.0 / len(vocab)
    for name in said.scene_omitted:
        vocab = dict(SCENE_FIELDS)[name]
        sl = SCENE_SLICES[name]
        glob[sl] = 0.0
        if name == "style" or (omitted_target == "neutral" and name in NEUTRAL):
            glob[sl.start + vocab.index(NEUTRAL[name])] = 1.0
        else:
            glob[sl] = 1.0 / len(vocab)
    return objects, glob


def reader_loss(obj_logits: torch.Tensor, scene_logits: torch.Tensor, obj_t: torch.Tensor, scene_t: torch.Tensor) -> torch.Tensor:
    """BCE on occupied, soft cross-entropy per attribute block (occupied places only) and per scene block."""
    occ_t = obj_t[..., 0]
    loss = F.binary_cross_entropy_with_logits(obj_logits[..., 0], occ_t)
    keep = occ_t > 0.5
    if keep.any():
        lo, to = obj_logits[keep], obj_t[keep]  # (n, OBJECT_DIM)
        for name, _ in OBJECT_FIELDS[1:]:
            sl = OBJECT_SLICES[name]
            loss = loss + (-(to[:, sl] * F.log_softmax(lo[:, sl], -1)).sum(-1)).mean() / (len(OBJECT_FIELDS) - 1)
    for name, _ in SCENE_FIELDS:
        sl = SCENE_SLICES[name]
        loss = loss + (-(scene_t[:, sl] * F.log_softmax(scene_logits[:, sl], -1)).sum(-1)).mean() / len(SCENE_FIELDS)
    return loss


# -- data ---------------------------------------------------------------------------------------
def chunk_captions(cfg: CaptionReaderTrainConfig, k: int, tok) -> tuple[list[str], list[Said | None]]:
    """Chunk ``k``'s captions and what they say (deterministic in ``seed``; captions over the 128 tokens the
    text encoder keeps are drawn again)."""
    caps, saids = [], []
    for i in range(k * cfg.chunk, min(cfg.n_captions, (k + 1) * cfg.chunk)):
        rng = random.Random(f"caption-reader/{cfg.seed}/{i}")
        while True:
            cap, said = training_caption(rng, cfg.p_template, cfg.p_negative)
            if len(tok(cap).input_ids) <= 128:
                break
        caps.append(cap)
        saids.append(said)
    return caps, saids


def training_vocabulary(cfg: CaptionReaderTrainConfig, tok, min_count: int = 3) -> list[str]:
    """The words of the reader's training captions (``reading.normalise``'s words), and the lexicon's phrases of
    several words found in them, that occur at least ``min_count`` times: what the head has learnt to read (the
    generator's random typos occur once or twice and are left out).
    ``models/caption_words.py`` rewrites lexicon words outside this set in the world's own words."""
    from collections import Counter

    from ..world.lexicon import LEXICON, MAX_PHRASE
    from ..world.reading import normalise

    counts: Counter[str] = Counter()
    for k in range(-(-cfg.n_captions // cfg.chunk)):
        caps, _ = chunk_captions(cfg, k, tok)
        for c in caps:
            words = normalise(c).split()
            counts.update(words)
            for n in range(2, MAX_PHRASE + 1):  # the lexicon's phrases of several words, read together
                counts.update(" ".join(key) for i in range(len(words) - n + 1) if (key := tuple(words[i : i + n])) in LEXICON)
    return sorted(w for w, n in counts.items() if n >= min_count)


def write_vocabulary(cfg: CaptionReaderTrainConfig, tok, folder: str | Path) -> Path:
    """``training_vocabulary`` into ``folder/vocabulary.txt``, one word or phrase a line."""
    from ..models.caption_words import CaptionWords

    return CaptionWords(frozenset(training_vocabulary(cfg, tok))).save(folder)


def build_cache(cfg: CaptionReaderTrainConfig, enc, tok) -> Path:
    """Encode every chunk that is not cached yet; returns the cache folder."""
    from ..atomic import atomic_path
    from .t2i import encode_captions

    cache = Path(cfg.cache)
    cache.mkdir(parents=True, exist_ok=True)
    n_chunks = -(-cfg.n_captions // cfg.chunk)
    key = {"seed": cfg.seed, "chunk": cfg.chunk, "p_template": cfg.p_template, "p_negative": cfg.p_negative}
    for k in range(n_chunks):
        path = cache / f"chunk{k:04d}.npz"
        caps, saids = chunk_captions(cfg, k, tok)  # cheap next to encoding them
        if path.is_file():
            with np.load(path) as z:
                # the captions themselves are compared too: a changed caption generator makes other captions
                if json.loads(str(z["key"])) == key and z["captions"].tolist() == caps:
                    continue
            logger.warning("%s was made with other settings or another caption generator; encoding it again", path)
        t0 = time.time()
        states = encode_captions(enc, tok, caps, 128, bar=False)  # (n, 128, 384) float16
        lengths = np.array([len(tok(c).input_ids) for c in caps], np.int32)
        flat = np.concatenate([states[i, : lengths[i]] for i in range(len(caps))])
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                states=flat,
                lengths=lengths,
                captions=np.array(caps),
                saids=np.array([_said_json(s) for s in saids]),
                key=json.dumps(key),
            )
        logger.info("cached chunk %d/%d (%d captions) in %.0f s", k + 1, n_chunks, len(caps), time.time() - t0)
    return cache


def _said_json(said: Said | None) -> str:
    if said is None:
        return "null"
    return json.dumps(
        {
            "scene": said.scene.to_dict(),
            "omitted": {str(k): sorted(v) for k, v in said.omitted.items()},
            "scene_omitted": sorted(said.scene_omitted),
        }
    )


def _said_of_json(s: str) -> Said | None:
    d = json.loads(s)
    if d is None:
        return None
    return Said(Scene.from_dict(d["scene"]), {int(k): frozenset(v) for k, v in d["omitted"].items()}, frozenset(d["scene_omitted"]))


class TokenData:
    """All cached chunks in memory: flat token states with offsets, and the soft targets."""

    def __init__(self, cache: Path, n_chunks: int, omitted_target: str) -> None:
        states, lengths, objs, globs = [], [], [], []
        for k in range(n_chunks):
            with np.load(cache / f"chunk{k:04d}.npz") as z:
                states.append(z["states"])
                lengths.append(z["lengths"])
                for s in z["saids"]:
                    o, g = said_targets(_said_of_json(str(s)), omitted_target)
                    objs.append(o)
                    globs.append(g)
        self.states = np.concatenate(states)
        self.lengths = np.concatenate(lengths)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.objects = torch.from_numpy(np.stack(objs))
        self.scene = torch.from_numpy(np.stack(globs))

    def __len__(self) -> int:
        return len(self.lengths)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        lmax = int(self.lengths[idx].max())
        x = np.zeros((len(idx), lmax, self.states.shape[1]), np.float32)
        for j, i in enumerate(idx):
            x[j, : self.lengths[i]] = self.states[self.offsets[i] : self.offsets[i] + self.lengths[i]]
        mask = torch.arange(lmax)[None] < torch.from_numpy(self.lengths[idx])[:, None]
        return torch.from_numpy(x), mask, self.objects[idx], self.scene[idx]


# -- evaluation ---------------------------------------------------------------------------------
def held_out_detailed(n: int, seed: int) -> list[tuple[str, Scene]]:
    """Detailed captions of the scenes ``retouch world captions --seed SEED`` writes (not in training)."""
    rng = random.Random(f"captions/{seed}")
    scenes = [random_scene(rng) for _ in range(n)]
    return [(detailed_caption(s), s) for s in scenes]


def fixture_pairs(paths=None) -> list[tuple[str, Scene]]:
    """Hand-written paraphrase fixtures as (caption, scene): ``paths``, or the two development ones (``FIXTURES``)."""
    out = []
    for path in sorted(paths if paths is not None else FIXTURES):
        for line in Path(path).read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out.append((r["caption"], Scene.from_dict(r["scene"])))
    return out


@torch.no_grad()
def evaluate_caption_reader(reader: CaptionReader, pairs: list[tuple[str, Scene]], enc=None, tok=None, reading=None) -> dict:
    """Per-attribute accuracy of a reader on captions with exact scenes, and what ``read_scene`` does with them.

    ``occupied``: places read right (of N_SLOTS per caption); each object attribute: the argmax at the true
    object's place; ``background`` / ``style``; ``exact``: the decoded scene equals the true one; ``refused``:
    ``decode`` raised; ``wrong``: decoded, but not the true scene (readable-but-wrong). ``reading``: the reader's
    reading of the captions when already computed."""
    if reading is None:
        reading = reader.read([c for c, _ in pairs], enc, tok)
    obj, glob = reading.objects.numpy(), reading.scene.numpy()
    hits: dict[str, list[bool]] = {"occupied": []} | {k: [] for k in OBJECT_ATTRS} | {k: [] for k, _ in SCENE_FIELDS}
    exact = refused = 0
    failures = []
    for i, (cap, scene) in enumerate(pairs):
        t_obj, _ = scene_features(scene)
        hits["occupied"].extend(((obj[i, :, 0] >= 0.5) == (t_obj[:, 0] > 0.5)).tolist())
        for o in scene.objects:
            for name, vocab in OBJECT_FIELDS[1:]:
                hits[name].append(vocab[int(np.argmax(obj[i, o.slot, OBJECT_SLICES[name]]))] == getattr(o, name))
        for name, vocab in SCENE_FIELDS:
            hits[name].append(vocab[int(np.argmax(glob[i, SCENE_SLICES[name]]))] == getattr(scene, name))
        try:
            got = decode(reading, i, cap)
        except ValueError:
            refused += 1
            failures.append({"caption": cap, "refused": True})
            continue
        if got.same_content(scene):
            exact += 1
        else:
            failures.append({"caption": cap, "read": got.to_dict(), "truth": scene.to_dict()})
    n = len(pairs)
    acc = {k: round(float(np.mean(v)), 4) for k, v in hits.items()}
    attrs = [acc[k] for k in (*OBJECT_ATTRS, *(k for k, _ in SCENE_FIELDS))]
    return {
        "n": n,
        "attributes": acc,
        "mean_attribute": round(float(np.mean(attrs)), 4),
        "min_attribute": round(float(min(attrs)), 4),
        "exact": round(exact / n, 4),
        "refused": round(refused / n, 4),
        "wrong": round((n - exact - refused) / n, 4),
        "failures": failures,
    }


# -- the loop -----------------------------------------------------------------------------------
def build_reader(cfg: CaptionReaderTrainConfig) -> CaptionReader:
    """A fresh head of the recipe's size."""
    return CaptionReader(
        CaptionReaderConfig(
            dim=cfg.dim, heads=cfg.heads, encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers, dropout=cfg.dropout
        )
    )


def train_step(model: CaptionReader, data: TokenData, opt, sched, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
    """One optimiser step on a random batch of cached captions; returns the loss (detached)."""
    x, mask, obj_t, scene_t = data.batch(rng.integers(0, len(data), batch_size))
    obj_l, scene_l = model.logits(x, mask)
    loss = reader_loss(obj_l, scene_l, obj_t, scene_t)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return loss.detach()


@register_task("caption-reader", CaptionReaderTrainConfig)
def train_caption_reader(cfg: CaptionReaderTrainConfig) -> dict:
    from ..atomic import write_json
    from ..models.caption_reader import text_model

    out = start_run(cfg)
    torch.manual_seed(cfg.seed)
    enc, tok = text_model(128)
    t0 = time.time()
    cache = build_cache(cfg, enc, tok)
    t_cache = time.time() - t0
    data = TokenData(cache, -(-cfg.n_captions // cfg.chunk), cfg.omitted_target)
    logger.info("%d cached captions (%.0f s to encode the missing chunks)", len(data), t_cache)
    model = build_reader(cfg)
    logger.info("caption reader: %d parameters", sum(p.numel() for p in model.parameters()))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    ckpt = out / "checkpoint.pt"
    step = resume(ckpt, model, opt, sched)
    rng = np.random.default_rng(cfg.seed * 7919 + step)
    model.train()
    t1 = time.time()
    while step < cfg.steps:
        loss = train_step(model, data, opt, sched, rng, cfg.batch_size)
        step += 1
        if step % 100 == 0 or step == cfg.steps:
            logger.info("step %d/%d loss %.4f (%.2f s/step)", step, cfg.steps, loss.item(), (time.time() - t1) / 100)
            t1 = time.time()
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, model, opt, sched)
    model.eval()
    model.save_pretrained(out)
    write_vocabulary(cfg, tok, out)  # what the head learnt to read: the words CaptionWords leaves as they are
    metrics: dict = {"encode_s": round(t_cache, 1), "train_s": round(time.time() - t0 - t_cache, 1)}
    if cfg.eval_n > 0:  # eval_n 0: no evaluation (tests)
        reader = CaptionReader.from_pretrained(out)
        metrics["detailed"] = evaluate_caption_reader(reader, held_out_detailed(cfg.eval_n, cfg.eval_seed), enc, tok)
        metrics["paraphrases"] = evaluate_caption_reader(reader, fixture_pairs(), enc, tok)
        for k in ("detailed", "paraphrases"):
            logger.info("%s: %s", k, {kk: v for kk, v in metrics[k].items() if kk != "failures"})
    metrics["total_s"] = round(time.time() - t0, 1)
    summary = {k: ({kk: vv for kk, vv in v.items() if kk != "failures"} if isinstance(v, dict) else v) for k, v in metrics.items()}
    write_json(out / "eval.json", summary)
    return summary
