"""World CLIP: a small CLIP trained contrastively on Shapes-world renders and their captions.

The result is an ordinary transformers ``CLIPModel`` folder (weights, ``CLIPImageProcessor``,
tokenizer), so :class:`retouch.eval.clip.CLIPEmbedder` loads it exactly as it loads
``openai/clip-vit-large-patch14``.  OpenAI's CLIP has never seen this world and cannot tell
a dotted star from a striped one; this one is trained for nothing else.

* Tokenizer: byte-level BPE (so nothing is ever unknown) trained on world captions and
  edit instructions plus a list of general English, with CLIP's ``<|startoftext|>`` /
  ``<|endoftext|>`` around every text (``<|endoftext|>`` doubles as padding; the text
  tower pools at its first occurrence).
* Data: fresh random scenes streamed from a seeded generator; each image is paired with its
  detailed caption (probability ``p_detailed``) or its short one.  Captions of different
  scenes differ by single words, so a fraction ``twin_frac`` of the scenes bring a
  minimally edited twin (one ``sample_edit`` change) into the same batch as a hard negative.
* Loss: the symmetric InfoNCE loss of CLIP (Radford et al. 2021, "Learning Transferable
  Visual Models From Natural Language Supervision", Fig. 3) with CLIPModel's learned
  temperature ``logit_scale``; rows whose captions are the same string count as positives of
  one another (identical to ``CLIPModel(..., return_loss=True)`` when all captions differ).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset
from tqdm import tqdm

from ..atomic import atomic_folder, write_json, write_text
from ..world.captions import BACKGROUND_PHRASE, STYLE_PHRASE, detailed_caption, object_phrase, short_caption
from ..world.edits import sample_edit
from ..world.render import render
from ..world.scene import (
    BACKGROUNDS,
    COLORS,
    EMBLEMS,
    N_SLOTS,
    OBJECT_ATTRS,
    PATTERNS,
    POSES,
    POSITIONS,
    SHAPES,
    SIZES,
    STYLES,
    Scene,
    WorldObject,
    random_scene,
)
from . import register_task
from .loop import resume, save_checkpoint, start_run, warmup_cosine
from .reader import degrade

logger = logging.getLogger(__name__)

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# Edit types used for twins: every single-change PIE type (type 0 changes 2-3 things at once).
TWIN_TYPES: tuple[int, ...] = tuple(range(1, 10))

# General English so that paraphrases ("a crimson five-pointed star tilted to the left") split into
# sensible sub-words instead of bytes.  The world's own words come from generated captions.
GENERAL_ENGLISH = """
a an the this that these those it its they them their there here what which who whose where when why how
is are was were be been being am do does did done has have had having will would shall should can could may might must
and or but nor so yet if then else than as at by for from in into of off on onto out over to under up with within without
about above across after against along among around before behind below beneath beside between beyond down during
except inside near next outside past since through throughout toward towards upon via
i you he she we me him her us my your our mine yours his hers ours one ones some any all both each every few many
much more most less least other others another such same own only just also too very quite rather really almost
not no yes please thanks okay now again still even ever never always often sometimes once twice
make made makes making turn turned turns turning change changed changes changing replace replaced replacing
swap swapped swapping switch switched remove removed removing delete deleted erase erased add added adding
put puts putting place placed placing insert inserted draw drew drawn drawing paint painted painting
color colour colored coloured colors colours recolor recolour recolored tint tinted shade shaded fill filled
rotate rotated rotating rotation flip flipped flipping mirror mirrored invert inverted tilt tilted tilting lean leaning
slant slanted slanting spin spun upright upside down sideways vertical horizontal diagonal angle angled degrees
clockwise counterclockwise anticlockwise counter
move moved moving shift shifted slide push pull keep kept leave left right top bottom middle center centre central
upper lower corner corners edge side sides half quarter front back foreground background backdrop behind
enlarge enlarged shrink shrunk grow bigger smaller larger largest smallest tiny huge big little giant mini
size sized scale scaled resize resized wide narrow tall short long thick thin
give gave given show shows showing showed carry carries carrying wear wearing hold holding bear bearing
get got rid take taken away disappear vanish gone instead rather than convert converted render rendered redraw
set setting scene picture image photo photograph photography illustration drawing sketch sketched pencil
painting painted watercolor watercolour oil acrylic ink pen crayon charcoal cartoon comic anime poster
pixel pixels pixelated pixelart bit retro vintage old antique sepia grayscale greyscale monochrome black white
gray grey flat vector clean simple minimal style styled look looks looking like version
red crimson scarlet maroon ruby cherry pink rose magenta fuchsia orange amber tangerine peach coral
yellow gold golden lemon mustard cream beige tan brown chocolate bronze copper
green lime olive emerald mint jade forest teal turquoise cyan aqua
blue navy azure cobalt sapphire indigo sky purple violet lilac lavender plum mauve
silver dark light pale bright deep vivid dull pastel neon
circle circles circular round ring disc disk dot oval ellipse sphere ball
square squares box boxes rectangle rectangular cube block tile
triangle triangles triangular pyramid cone wedge
star stars starry five pointed five-pointed pentagram asterisk sparkle
heart hearts heart-shaped love valentine
cross crosses plus x cruciform
pentagon hexagon octagon diamond rhombus polygon shape shapes object objects item items thing things figure figures
pattern patterned patterns texture textured solid plain stripe stripes striped stripy lines lined
dot dots dotted spot spots spotted speckled polka checker checkers checkered chequered checkerboard chessboard grid plaid
emblem emblems icon icons symbol symbols sign logo badge mark label sticker decal picture of
arrow arrows pointing point arrowhead moon crescent lunar bolt lightning thunder flash zap electric
drop droplet raindrop water tear smile smiley smiling face happy emoji grin
sky clouds cloud cloudy blue-sky daylight sun sunny sunlight sunset sunrise
grass grassy field meadow lawn pasture park garden green-field
night nighttime dark starry midnight space galaxy
brick bricks brick-wall wall stone stones masonry
sand sandy desert dunes dune beach
white plain empty blank bare paper canvas
first second third fourth last zero one two three four five six seven eight nine ten eleven twelve
hundred thousand number numbers count counted
0 1 2 3 4 5 6 7 8 9 10 12 16 20 30 45 60 90 100 180 270 360
cat dog bird fish horse cow house tree flower car boat train plane person man woman child people
water fire earth air snow rain ice mountain river lake sea ocean forest city street road window door
photo realistic photorealistic high quality detailed beautiful lovely nice pretty ugly new old good bad best
time year day week month hour minute morning evening afternoon today tomorrow yesterday
way part place case point group problem fact hand eye head body life world work home school room area
question answer word words sentence text caption description describe described describing prompt instruction
know knew think thought see saw seen look looked want wanted use used find found tell told ask asked
seem seemed feel felt try tried call called need needed become became begin began help helped talk talked
open opened close closed run ran walk walked sit sat stand stood lie lay lying stay stayed fall fell
cut cutting break broke broken join joined split separate separated combine combined merge merged mix mixed
cover covered covering wrap wrapped surround surrounded border outline outlined frame framed
copy copied duplicate duplicated repeat repeated double triple single pair couple
create created generate generated produce produced design designed edit edited editing modify modified adjust adjusted
improve improved fix fixed restore restored transform transformed transformation
appear appeared visible invisible hidden hide hid reveal revealed transparent opaque
stripes-pattern horizontally vertically diagonally slightly barely fully completely entirely partly mostly
lighter darker brighter duller warmer cooler softer sharper stronger weaker richer
hot cold warm cool soft hard smooth rough sharp blurry blurred shiny glossy matte metallic wooden plastic glass paper
early late fast slow quick quickly slowly easy difficult simple complex important different similar
able possible impossible sure certain clear clearly exactly nearly probably maybe perhaps
between beside opposite adjacent neighbouring neighboring surrounding nearby far close closer farthest nearest
north south east west northern southern eastern western upward downward upwards downwards leftward rightward
across along around round about circa roughly approximately
animal animals plant plants flowers trees leaves leaf rock rocks hill hills valley island cliff cave
king queen crown sword shield castle tower bridge ship rocket robot monster dragon ghost
apple banana orange lemon cherry grape strawberry cake cookie candy bread cheese
letter letters alphabet digit digits character characters shape-like geometric geometry
small-sized medium-sized large-sized mid-sized middle-sized half-size full-size
"""

GENERAL_SENTENCES = (
    "a crimson five-pointed star tilted to the left",
    "a scarlet heart rotated by thirty degrees clockwise",
    "make the circle in the upper left corner navy blue",
    "turn the square upside down and paint it bright yellow",
    "replace the striped triangle with a spotted one",
    "give the star a polka dot pattern",
    "put a small green cross in the bottom right corner",
    "remove the big purple heart from the picture",
    "change the background to a night sky full of stars",
    "make the whole image look like an old sepia photograph",
    "convert the picture to black and white",
    "turn it into a pencil drawing",
    "render the scene as pixel art",
    "a watercolour painting of shapes on a sandy beach",
    "there is a lightning bolt on the red circle",
    "the orange heart shows a crescent moon",
    "a checkerboard square with a smiley face on it",
    "swap the raindrop icon for an arrow pointing up",
    "a photo of a cat sitting on a brick wall",
    "rotate the shape ninety degrees counterclockwise",
)


def world_corpus(n_scenes: int = 3000, seed: int = 0) -> list[str]:
    """Texts of the world: detailed and short captions of random scenes and edit instructions
    of every type on them, plus every closed-vocabulary phrase (so rare values are covered)."""
    rng = random.Random(f"world-clip-tokenizer:{seed}")
    texts: list[str] = []
    for i in range(n_scenes):
        s = random_scene(rng)
        texts += [detailed_caption(s), short_caption(s)]
        e = sample_edit(s, i % 10, rng)
        if e is not None:
            texts.append(e.instruction)
    vocab = (*SHAPES, *COLORS, *SIZES, *PATTERNS, *POSES, *EMBLEMS, *POSITIONS, *STYLE_PHRASE.values(), *BACKGROUND_PHRASE.values())
    texts += [" ".join(vocab)] * 10
    return texts


def build_tokenizer(out_dir: str | Path | None = None, vocab_size: int = 3000, max_length: int = 96) -> Any:
    """Train the world tokenizer (deterministic) and, if ``out_dir`` is given, save it there.

    Returns a ``PreTrainedTokenizerFast`` that ``AutoTokenizer.from_pretrained(out_dir)`` reloads.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # CLIP's tokenizer lower-cases and cleans whitespace too; captions are lower case, users may not be
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase(), normalizers.Strip()])
    # a prefix space makes the first word tokenise like the same word mid-sentence
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    # strip the prefix space again so decode(encode(text)) == text for normalised text
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[BOS, EOS],  # ids 0 and 1 (eos must not be 2: transformers' CLIP then pools at argmax(ids))
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    general = GENERAL_ENGLISH.split() + list(GENERAL_SENTENCES)
    # general English is repeated so its words reach whole-word merges next to the far more frequent world text
    tok.train_from_iterator(world_corpus() + general * 8, trainer=trainer)
    bos, eos = tok.token_to_id(BOS), tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B:1 {EOS}:1", special_tokens=[(BOS, bos), (EOS, eos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS, model_max_length=max_length, clean_up_tokenization_spaces=False
    )
    if out_dir is not None:
        with atomic_folder(out_dir) as tmp:
            fast.save_pretrained(str(tmp))
    return fast


def max_caption_tokens(tokenizer: Any) -> int:
    """Token count (with start and end tokens) of the longest detailed caption the world can produce.

    Byte-level pre-tokenisation splits on words and punctuation, so a caption's count is the sum of
    its words' counts and the longest caption takes, attribute by attribute, the longest value.
    """

    def count(text: str) -> int:
        return len(tokenizer(text)["input_ids"])

    obj = WorldObject(**{k: v[0] for k, v in OBJECT_ATTRS.items()}, slot=0)
    for attr, vocab in OBJECT_ATTRS.items():
        obj = max((replace(obj, **{attr: v}) for v in vocab), key=lambda o: count(object_phrase(o)))
    objects = tuple(replace(obj, slot=k) for k in range(N_SLOTS))
    return max(count(detailed_caption(Scene(objects, b, s))) for b in BACKGROUNDS for s in STYLES)


@dataclass
class WorldClipConfig:
    """Settings of the world-CLIP recipe.

    Cost, measured as CPU seconds with ``threads=1`` (AMD EPYC with AVX512-BF16) for the defaults
    (1.6M parameters): one training step 1.10-1.15 s with ``bf16`` (1.3-1.6 s in float32); one batch of
    128 renders + degradation 1.04 s in the data worker.  With ``workers=1`` the two overlap on two
    cores, so a step takes ~1.15-1.2 s and 1800 steps ~35 min, plus ~30 s of evaluation.
    ``image_size=128``: at 64 (patch 8) the towers see the same 64 patches and cost the same, only
    rendering gets cheaper, while an emblem shrinks to ~6 px.
    """

    out: str = "models/world-clip"
    steps: int = 1800
    batch_size: int = 128  # image-caption pairs per step, twins included
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100  # linear warm-up steps, then cosine decay to 0
    grad_clip: float = 1.0
    seed: int = 0  # batch k is drawn from random.Random(f"world-clip:{seed}:{k}"): a stream no integer-seeded suite or reader shares
    # towers (CLIP ViT and causal text transformer; heads of width head_dim)
    image_size: int = 128
    patch_size: int = 16
    vision_width: int = 128
    vision_layers: int = 4
    text_width: int = 128
    text_layers: int = 2
    head_dim: int = 32
    projection_dim: int = 128
    max_length: int = 96  # the longest detailed caption is 88 tokens (checked at start, see max_caption_tokens)
    vocab_size: int = 3000  # cap of the BPE vocabulary (the world + general English fill ~2200)
    # data
    p_detailed: float = 0.7  # caption of an image: detailed with this probability, else short
    twin_frac: float = 0.5  # probability that a scene brings a one-change twin into its batch (hard negative)
    aug_prob: float = 0.5  # light degradation (retouch.train.reader.degrade) of this share of images
    noise_max: float = 0.03
    blur_max: float = 0.8
    jitter: float = 0.04
    bf16: bool = True  # bfloat16 autocast of both towers (logits and loss stay float32); ignored without CPU bf16 support
    ckpt_every: int = 100
    eval_n: int = 1000  # retrieval queries
    eval_pool: int = 100  # candidates per query, the right one included
    eval_seed: int = 7777
    workers: int = 1
    threads: int = 1


class WorldPairs(IterableDataset):
    """Endless stream of whole batches ``(images uint8 (B,H,W,3), captions list[str])``, already degraded.

    Batch ``k`` depends only on ``(seed, k)``, so resuming at step ``k`` continues the same stream,
    and with several workers the DataLoader still returns batches in order.  Rendering and
    degradation run here, in the worker, so that they overlap the training step.
    """

    def __init__(self, cfg: WorldClipConfig, start: int = 0) -> None:
        self.cfg, self.start = cfg, start

    def batch(self, k: int) -> tuple[torch.Tensor, list[str]]:
        cfg = self.cfg
        rng = random.Random(f"world-clip:{cfg.seed}:{k}")
        scenes, captions = pair_scenes(cfg.batch_size, rng, cfg.p_detailed, cfg.twin_frac)
        images = torch.from_numpy(np.stack([render(s, cfg.image_size) for s in scenes]))
        if cfg.aug_prob > 0:
            g = torch.Generator().manual_seed(rng.getrandbits(63))
            x = degrade(images.permute(0, 3, 1, 2).float() / 255.0, cfg, g)  # type: ignore[arg-type]  # reads the aug fields only
            # back to uint8: the processor sees uint8 images at inference too
            images = (x * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        return images, captions

    def __iter__(self) -> Iterator[tuple[torch.Tensor, list[str]]]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        k = self.start + wid
        while True:
            yield self.batch(k)
            k += nw


def pair_scenes(n: int, rng: random.Random, p_detailed: float, twin_frac: float) -> tuple[list[Scene], list[str]]:
    """``n`` random scenes and their captions; with probability ``twin_frac`` a scene is followed by its
    one-change twin, the two captioned alike (both detailed or both short)."""
    scenes: list[Scene] = []
    captions: list[str] = []
    while len(scenes) < n:
        s = random_scene(rng)
        detailed = rng.random() < p_detailed
        twin = one_change_twin(s, rng) if len(scenes) + 2 <= n and rng.random() < twin_frac else None
        if twin is None:
            scenes.append(s)
            captions.append(detailed_caption(s) if detailed else short_caption(s))
            continue
        pair = (s, twin)
        # a pose, pattern or emblem change leaves the short captions equal: the pair then takes detailed ones
        if not detailed and short_caption(s) == short_caption(twin):
            detailed = True
        scenes += pair
        captions += [detailed_caption(x) if detailed else short_caption(x) for x in pair]
    return scenes, captions


def one_change_twin(scene: Scene, rng: random.Random) -> Scene | None:
    """``scene`` with one attribute changed (a random single-change PIE edit type that the scene admits)."""
    for t in rng.sample(TWIN_TYPES, len(TWIN_TYPES)):
        e = sample_edit(scene, t, rng)
        if e is not None:
            return e.target
    return None


def clip_loss(logits_per_text: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021): cross-entropy over texts for each image and over
    images for each text, averaged.  Items with the same caption string are positives of each other
    (two one-object scenes can share a short caption); with distinct captions this is exactly
    transformers' ``CLIPModel(..., return_loss=True)`` loss."""
    ids: dict[str, int] = {}
    group = torch.tensor([ids.setdefault(c, len(ids)) for c in captions])
    same = (group[:, None] == group[None, :]).float()
    target = same / same.sum(1, keepdim=True)  # symmetric matrix, so it serves both directions
    return (F.cross_entropy(logits_per_text, target) + F.cross_entropy(logits_per_text.t(), target)) / 2


def build_model(cfg: WorldClipConfig, tokenizer: Any) -> Any:
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_width,
        intermediate_size=4 * cfg.text_width,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=max(1, cfg.text_width // cfg.head_dim),
        max_position_embeddings=cfg.max_length,
        projection_dim=cfg.projection_dim,
        # the text tower pools at the first end token; eos must be the tokenizer's (and not 2, see build_tokenizer)
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_width,
        intermediate_size=4 * cfg.vision_width,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=max(1, cfg.vision_width // cfg.head_dim),
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.projection_dim,
    )
    torch.manual_seed(cfg.seed)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim))


def build_image_processor(image_size: int) -> Any:
    """Processor matching training: a render of ``image_size`` passes unchanged to [-1, 1]
    (mean = std = 0.5); other sizes are resized (shortest edge) and centre-cropped to it."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": image_size},
        do_center_crop=True,
        crop_size={"height": image_size, "width": image_size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=True,
    )


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B,H,W,3) -> float (B,3,H,W) in [-1, 1], what the image processor makes of a render of image_size."""
    return (images.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5


def contrastive_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixels: torch.Tensor, bf16: bool) -> torch.Tensor:
    """``logits_per_text`` (texts x images) as ``CLIPModel.forward`` computes them; the towers may run under
    bfloat16 autocast, but normalisation and the scaled cosine stay float32 so the temperature (up to 100)
    does not magnify bf16 rounding into the logits."""
    from ..eval.clip import _features

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        img = _features(model.get_image_features(pixel_values=pixels), "image_embeds")
        txt = _features(model.get_text_features(input_ids=input_ids, attention_mask=attention_mask), "text_embeds")
    img, txt = F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1)
    return model.logit_scale.exp() * txt @ img.t()


def save_world_clip(model: Any, tokenizer: Any, image_size: int, out: str | Path) -> None:
    """Save a transformers CLIP folder: fp16 safetensors weights (half the size; a ~1e-3 relative rounding
    that retrieval does not notice, see eval.json which is measured on the saved folder), a config
    that loads them back as float32 (CPU fp16 kernels are slow), the image processor and the tokenizer."""
    out = Path(out)
    half = copy.deepcopy(model).half()
    with atomic_folder(out) as tmp:  # every file whole, whenever the run is killed
        half.save_pretrained(tmp, safe_serialization=True)
        conf = json.loads((tmp / "config.json").read_text())
        for c in (conf, conf.get("text_config", {}), conf.get("vision_config", {})):
            for key in ("dtype", "torch_dtype"):
                if key in c:
                    c[key] = "float32"
        write_text(tmp / "config.json", json.dumps(conf, indent=2) + "\n")
        build_image_processor(image_size).save_pretrained(tmp)
        # calls with padding / truncation leave that state in the backend; ship the tokenizer as it was built
        tokenizer.backend_tokenizer.no_truncation()
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.save_pretrained(tmp)


def _embedder(path_or_model: Any) -> Any:
    from ..eval.clip import CLIPEmbedder, ImageTextEmbedder

    if isinstance(path_or_model, ImageTextEmbedder):
        return path_or_model
    if isinstance(path_or_model, (str, os.PathLike)):
        return CLIPEmbedder.load(path_or_model, batch_size=100)
    raise TypeError(f"expected a model folder or an ImageTextEmbedder, got {type(path_or_model).__name__}")


def evaluate_world_clip(path_or_model: Any, n: int = 1000, pool: int = 100, seed: int = 7777) -> dict:
    """Retrieval on fresh random scenes, embedded through :class:`CLIPEmbedder` (as the metrics do).

    Each of ``n`` query images is ranked against ``pool`` captions: its own and those of ``pool - 1``
    other random scenes (``top1`` / ``top5`` detailed captions, ``*_short`` short ones; a candidate
    with the same caption string counts as right).  ``t2i_top1*``: caption -> image among the same
    pool.  ``twin_i2t`` / ``twin_t2i``: two-way choice between a scene and its one-change twin
    (per edit kind in ``twin_i2t_by_kind``), the fine-grained distinction edit metrics rely on.
    """
    if n < 1 or pool < 1:
        raise ValueError(f"n and pool must be positive, got n={n} pool={pool}")
    emb = _embedder(path_or_model)
    rng = random.Random(f"world-clip-eval:{seed}")
    m = max(n, pool)
    scenes = [random_scene(rng) for _ in range(m)]
    twins, kinds = [], []
    for s in scenes[:n]:
        for t in rng.sample(TWIN_TYPES, len(TWIN_TYPES)):
            e = sample_edit(s, t, rng)
            if e is not None:
                twins.append(e.target)
                kinds.append(e.changes[0].kind)
                break
    detailed = [detailed_caption(s) for s in scenes]
    short = [short_caption(s) for s in scenes]
    img = emb.embed_images([render(s) for s in scenes])
    txt_d, txt_s = emb.embed_texts(detailed), emb.embed_texts(short)
    twin_img = emb.embed_images([render(s) for s in twins])
    twin_txt = emb.embed_texts([detailed_caption(s) for s in twins])

    # candidates: the query itself first, then pool-1 distinct others
    cand = torch.tensor([[q] + [j + (j >= q) for j in rng.sample(range(m - 1), pool - 1)] for q in range(n)])
    out: dict[str, Any] = {"n": n, "pool": pool, "seed": seed}

    def groups(texts: list[str]) -> torch.Tensor:
        ids: dict[str, int] = {}
        return torch.tensor([ids.setdefault(t, len(ids)) for t in texts])

    for name, txt, caps in (("", txt_d, detailed), ("_short", txt_s, short)):
        g = groups(caps)
        right = g[cand] == g[:n, None]  # (n, pool): candidate has the query's caption
        i2t = torch.einsum("nd,npd->np", img[:n], txt[cand])
        order = i2t.argsort(dim=1, descending=True)
        out[f"top1{name}"] = float(right.gather(1, order[:, :1]).any(1).float().mean())
        out[f"top5{name}"] = float(right.gather(1, order[:, :5]).any(1).float().mean())
        t2i = torch.einsum("nd,npd->np", txt[:n], img[cand])
        out[f"t2i_top1{name}"] = float(right.gather(1, t2i.argmax(1, keepdim=True)).float().mean())
    k = len(twins)
    own = (img[:k] * txt_d[:k]).sum(1)
    i2t_ok = own > (img[:k] * twin_txt).sum(1)
    out["twin_i2t"] = float(i2t_ok.float().mean())
    out["twin_t2i"] = float((own > (twin_img * txt_d[:k]).sum(1)).float().mean())
    out["twin_i2t_by_kind"] = {
        kind: float(i2t_ok[[i for i, x in enumerate(kinds) if x == kind]].float().mean()) for kind in sorted(set(kinds))
    }
    return out


@register_task("world-clip", WorldClipConfig)
def train_world_clip(cfg: WorldClipConfig) -> dict:
    from transformers import AutoTokenizer

    out = start_run(cfg)
    ckpt = out / "checkpoint.pt"
    if ckpt.is_file() and (out / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(out)  # the one the checkpoint was trained with
    else:
        tokenizer = build_tokenizer(out, vocab_size=cfg.vocab_size, max_length=cfg.max_length)
    longest = max_caption_tokens(tokenizer)
    if longest > cfg.max_length:
        raise ValueError(f"max_length={cfg.max_length} would truncate detailed captions of up to {longest} tokens")
    model = build_model(cfg, tokenizer)
    # CLIP's recipe: no weight decay on gains, biases and the temperature
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6
    )
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    step = resume(ckpt, model, opt, sched)
    loader = DataLoader(WorldPairs(cfg, start=step), batch_size=None, num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    bf16 = cfg.bf16 and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    if cfg.bf16 and not bf16:
        logger.warning("this CPU has no bfloat16 support: training in float32")
    max_scale = math.log(100.0)  # CLIP clips the learned temperature at 100 to keep training stable
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="world-clip", mininterval=5)
    t0, it = time.time(), iter(loader)
    while step < cfg.steps:
        images, captions = next(it)
        tok = tokenizer(captions, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt")
        logits = contrastive_logits(model, tok["input_ids"], tok["attention_mask"], to_pixels(images), bf16)
        loss = clip_loss(logits, captions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, max_scale)
        step += 1
        bar.update(1)
        acc = (logits.argmax(0) == torch.arange(len(captions))).float().mean().item()  # image -> text, in batch
        bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.2f}", scale=f"{model.logit_scale.exp().item():.1f}")
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(ckpt, step, model, opt, sched)
            logger.info("step %d loss %.4f batch acc %.3f (%.1fs)", step, loss.item(), acc, time.time() - t0)
    bar.close()
    del it, loader  # stop the data worker before the evaluation
    model.eval()
    save_world_clip(model, tokenizer, cfg.image_size, out)
    metrics = evaluate_world_clip(out, cfg.eval_n, cfg.eval_pool, cfg.eval_seed)
    write_json(out / "eval.json", metrics)
    logger.info("eval %s", metrics)
    return metrics
