"""The ``retouch`` command: thin, one sub-command per task."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tqdm import tqdm

logger = logging.getLogger(__name__)


def _progress(desc: str, total: int):
    bar = tqdm(total=total, desc=desc, disable=None, mininterval=1)

    def cb(done: int, n: int) -> None:
        bar.n = done
        bar.refresh()
        if done >= n:
            bar.close()

    return cb


# -- world ----------------------------------------------------------------------
def cmd_world_bench(a: argparse.Namespace) -> int:
    if a.turns != 1:  # multi-turn edit chains in MagicBrush's turn structure (retouch.world.turn_suite)
        if a.task != "edit":
            raise ValueError(f"--turns belongs to --task edit, not {a.task}")
        if not 1 <= a.turns <= 20:
            raise ValueError(f"--turns must lie in [1, 20], got {a.turns}")
        from .world.turn_suite import write_turn_suite

        path = write_turn_suite(a.out, n=a.n, turns=a.turns, seed=a.seed, size=a.size, callback=_progress("turn suite", a.n))
        print(f"wrote {a.n} sessions of {a.turns} turns to {path}")
        return 0
    if a.task != "edit":  # the fill tasks' suites (retouch.world.fill_suite)
        from .world.fill_suite import write_fill_suite

        path = write_fill_suite(a.out, a.task, n=a.n, seed=a.seed, size=a.size, callback=_progress(f"{a.task} suite", a.n))
        print(f"wrote {a.n} {a.task} cases to {path}")
        return 0
    from .world.suite import write_suite

    path = write_suite(a.out, n=a.n, seed=a.seed, size=a.size, callback=_progress("suite", a.n))
    print(f"wrote {a.n} cases to {path}")
    return 0


def cmd_world_sample(a: argparse.Namespace) -> int:
    import random

    from .world import detailed_caption, random_scene, render_pil, short_caption

    scene = random_scene(random.Random(a.seed), n_objects=a.objects)
    from .atomic import save_image

    out = Path(a.output)
    save_image(render_pil(scene, a.size), out)
    print(
        json.dumps(
            {"image": str(out), "short": short_caption(scene), "detailed": detailed_caption(scene), "scene": scene.to_dict()}, indent=2
        )
    )
    return 0


def cmd_world_parse(a: argparse.Namespace) -> int:
    from .world.captions import detailed_caption
    from .world.reader import SceneReader, read_scenes
    from .world.suite import load_rgb

    # read and check every input before loading the model, so a bad path fails fast
    images = [load_rgb(p) for p in a.images]
    for p, img in zip(a.images, images, strict=True):
        if img.shape[0] != img.shape[1]:
            raise ValueError(f"{p}: the scene reader reads square Shapes-world images, got {img.shape[1]}x{img.shape[0]}")
    reader = SceneReader.from_pretrained(a.reader) if a.reader else SceneReader.from_pretrained()
    results = []
    for p, img in zip(a.images, images, strict=True):
        (scene,) = read_scenes(reader, img)
        # a scene with no object is no Shapes-world scene (a photo, say): it has no world caption
        detailed = detailed_caption(scene) if scene.objects else None
        results.append({"image": str(p), "scene": scene.to_dict(), "detailed": detailed})
    if a.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    else:
        for r in results:
            print(f"{r['image']}: {r['detailed'] or 'no Shapes-world object found'}")
    return 0


def cmd_world_reader_eval(a: argparse.Namespace) -> int:
    from .train.reader import evaluate_reader
    from .world.reader import SceneReader

    reader = SceneReader.from_pretrained(a.reader) if a.reader else SceneReader.from_pretrained()
    print(json.dumps(evaluate_reader(reader, a.n, a.seed, refine=not a.no_refine), indent=2))
    return 0


def cmd_world_captions(a: argparse.Namespace) -> int:
    import random

    from .world import detailed_caption, random_scene, short_caption

    if a.n < 1:
        raise ValueError(f"--n must be at least 1, got {a.n}")
    rng = random.Random(f"captions/{a.seed}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for _ in range(a.n):
        s = random_scene(rng)
        lines.append(json.dumps({"scene": s.to_dict(), "short": short_caption(s), "detailed": detailed_caption(s)}))
    from .atomic import write_text

    write_text(out, "\n".join(lines) + "\n")
    print(f"wrote {a.n} captions to {out}")
    return 0


def cmd_world_score(a: argparse.Namespace) -> int:
    from .eval.metrics import score_images

    result = score_images(a.dir, a.against, reader=a.reader)
    text = json.dumps(result, indent=2)
    if a.json:
        from .atomic import write_text

        write_text(a.json, text)
    print(text)
    return 0


# -- generate -------------------------------------------------------------------
def _read_prompts(path: str, field: str) -> list[str]:
    """The ``field`` of every JSON line of ``path`` (a plain string line is taken as the prompt)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prompts file {p} not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p} is not UTF-8 text (byte {e.start}: {e.reason})") from e
    prompts = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{i + 1}: not a JSON line ({e})") from e
        if isinstance(obj, str):
            prompts.append(obj)
        elif isinstance(obj, dict) and isinstance(obj.get(field), str):
            prompts.append(obj[field])
        else:
            raise ValueError(f"{p}:{i + 1}: no string field {field!r}")
    if not prompts:
        raise ValueError(f"{p} holds no prompts")
    return prompts


def cmd_generate(a: argparse.Namespace) -> int:
    from .atomic import save_image
    from .generate import generate
    from .models.backbone import DEFAULT_MODEL, load_backbone

    if (a.prompt is None) == (a.prompts is None):
        raise ValueError("give either a PROMPT or --prompts FILE.jsonl")
    if a.prompt is not None:
        if not a.prompt.strip():
            raise ValueError("the prompt is empty")
        if not a.output:
            raise ValueError("a single prompt needs -o OUT.png")
        prompts, outs = [a.prompt], [Path(a.output)]
    else:
        if not a.out:
            raise ValueError("--prompts needs --out DIR")
        prompts = _read_prompts(a.prompts, a.field)
        outs = [Path(a.out) / f"{i:05d}.png" for i in range(len(prompts))]
    if outs[0].suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):  # batch outputs are always .png
        raise ValueError(f"{outs[0]}: output must be .png, .jpg or .webp")
    if a.steps is not None and a.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {a.steps}")
    backbone = load_backbone(a.model or DEFAULT_MODEL)
    size = a.size or backbone.default_size
    bar = _progress("generate", len(prompts))
    for start in range(0, len(prompts), a.batch_size):
        chunk = prompts[start : start + a.batch_size]
        # seed + line index: an image is the same whichever batch it was made in
        images = generate(backbone, chunk, steps=a.steps, seed=a.seed + start, size=size, guidance=a.guidance)
        for o, img in zip(outs[start : start + len(chunk)], images, strict=True):
            save_image(img, o)  # never a half-written image under the real name (retouch.atomic)
        bar(start + len(chunk), len(prompts))
    print(f"wrote {outs[0]}" if len(outs) == 1 else f"wrote {len(outs)} images to {a.out}")
    return 0


# -- edit -------------------------------------------------------------------------
def cmd_edit(a: argparse.Namespace) -> int:
    import numpy as np

    from .edit import Editor, check_output_path, check_text, load_image, load_mask, save_image

    out = Path(a.output)
    # every input is read and checked before a model loads (retouch.edit's checks; docs/reliability.md)
    n_then = len(a.then or [])
    for p in [out] + [out.with_name(f"{out.stem}.turn{k + 1}{out.suffix}") for k in range(n_then)]:
        check_output_path(p, (a.image, a.mask))
    show = Path(a.show_mask) if a.show_mask else None
    if show is not None:
        if show.suffix.lower() != ".png":
            raise ValueError(f"{show}: --show-mask writes a PNG; give a .png name")
        turn_paths = [out] + [out.with_name(f"{out.stem}.turn{k + 1}{out.suffix}") for k in range(n_then)]
        for p in [show] + [show.with_name(f"{show.stem}.turn{k + 1}{show.suffix}") for k in range(n_then)]:
            check_output_path(p, (a.image, a.mask))
            if p.resolve() in {q.resolve() for q in turn_paths}:
                raise ValueError(f"--show-mask {p} is also an edited image's output: choose another name")
    image = load_image(a.image)
    mask = load_mask(a.mask, image.shape[:2]) if a.mask else None
    for text, what in [(a.instruction, "instruction"), (a.target_prompt, "--target-prompt"), (a.source_prompt, "--source-prompt")] + [
        (t, f"--then instruction {k + 1}") for k, t in enumerate(a.then or [])
    ]:
        if text is not None:
            check_text(text, what)
    if (a.instruction is None or not a.instruction.strip()) and not (a.target_prompt and a.target_prompt.strip()):
        raise ValueError("the instruction is empty (give an INSTRUCTION or --target-prompt)")
    if a.instruction and a.instruction.strip() and a.target_prompt and a.target_prompt.strip():
        raise ValueError("give an INSTRUCTION or --target-prompt, not both (the caption would override the instruction)")
    options: dict = {}
    if a.model:
        options["model"] = a.model
    if a.method == "turbo":
        if a.inversion:
            options["inversion"] = a.inversion
        if a.mask_threshold is not None:
            options["mask_threshold"] = a.mask_threshold
        if a.auto_mask is not None:
            options["mask"] = a.auto_mask
        if a.compose is not None:
            options["compose"] = a.compose
    elif a.inversion or a.mask_threshold is not None or a.auto_mask is not None or a.compose is not None:
        raise ValueError(f"--inversion, --mask-threshold, --auto-mask and --compose belong to --method turbo, not {a.method}")
    if a.method == "region":
        if a.predictor:
            options["predictor"] = a.predictor
        if a.region_threshold is not None:
            if not 0.0 < a.region_threshold < 1.0:
                raise ValueError(f"--region-threshold must lie in (0, 1), got {a.region_threshold}")
            options["threshold"] = a.region_threshold
        if a.region_from is not None:
            options["region_from"] = a.region_from
    elif a.predictor or a.region_threshold is not None or a.region_from is not None:
        raise ValueError(f"--predictor, --region-threshold and --region-from belong to --method region, not {a.method}")
    if a.rewriter != "reader" or a.rewriter_url or a.rewriter_model:
        options["rewriter"] = a.rewriter
        ropts = {k: v for k, v in (("base_url", a.rewriter_url), ("model", a.rewriter_model)) if v}
        if ropts:
            options["rewriter_options"] = ropts
    if a.strength is not None and a.method != "turbo":
        raise ValueError(f"method {a.method!r} has no edit strength; only turbo takes --strength")
    if a.strength is not None and not 0.0 <= a.strength <= 1.5:
        raise ValueError(f"--strength must lie in [0, 1.5], got {a.strength}")
    from .rewrite import REWRITERS

    if a.rewriter not in REWRITERS:
        raise ValueError(f"unknown rewriter {a.rewriter!r}; known: {', '.join(sorted(REWRITERS))}")
    editor = Editor(a.method, **options)
    n_turns = 1 + len(a.then or [])

    written: list[Path] = []

    def save(k: int, turn) -> None:
        # each turn is written as soon as it is done: a later turn's failure loses no finished work
        path = out if k == n_turns - 1 else out.with_name(f"{out.stem}.turn{k + 1}{out.suffix}")
        save_image(turn.image, path)
        written.append(path)
        r = turn.result
        mask_path = None
        if show is not None:
            mask_path = show if k == n_turns - 1 else show.with_name(f"{show.stem}.turn{k + 1}{show.suffix}")
            if r.mask is None:
                raise ValueError(f"method {a.method!r} reports no edit region, so --show-mask has nothing to save")
            from .atomic import save_image as save_plain

            save_plain((np.asarray(r.mask) * 255).round().clip(0, 255).astype(np.uint8), mask_path)
        print(
            json.dumps(
                {
                    "turn": k + 1,
                    "instruction": turn.instruction,
                    "output": str(path),
                    "source_caption": r.info.get("source_caption"),
                    "target_caption": r.info.get("target_caption"),
                    "nfe_inversion": r.nfe_inversion,
                    "nfe_edit": r.nfe_edit,
                    "seconds": round(turn.seconds, 3),
                }
                | ({"mask_output": str(mask_path), "mask_fraction": round(float(np.mean(r.mask)), 4)} if mask_path else {})
                | ({"warning": r.info["warning"]} if r.info.get("warning") else {})
            ),
            flush=True,
        )

    from .caption import NoSceneError

    try:
        editor.edit(
            image,
            a.instruction,
            target_prompt=a.target_prompt,
            source_prompt=a.source_prompt,
            mask=mask,
            strength=a.strength,
            then=a.then or [],
            on_turn=save,
            then_from=a.then_from,
        )
    except NoSceneError as e:  # name the file (or the turn whose output) the captioner could not read
        raise ValueError(f"{written[-1] if written else a.image}: {e}") from e
    return 0


# -- inpaint / erase / outpaint -----------------------------------------------------
def _fill_options(a: argparse.Namespace) -> dict:
    """The fill method's settings from the shared flags (retouch.methods.inpaint.FillSettings)."""
    from .methods.fill import BACKENDS

    if a.backend is not None and a.backend not in BACKENDS:
        raise ValueError(f"unknown --backend {a.backend!r}; known: {', '.join(BACKENDS)}")
    if a.steps is not None and a.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {a.steps}")
    if a.margin is not None and a.margin < 0:
        raise ValueError(f"--margin must be at least 0 pixels, got {a.margin}")
    pairs = (
        ("backend", a.backend),
        ("model", a.model),
        ("steps", a.steps),
        ("guidance", a.guidance),
        ("samples", a.samples),
        ("blend", a.blend),
        ("margin", a.margin),
        ("crop_size", a.crop_size),
    )
    return {k: v for k, v in pairs if v is not None} | {"seed": a.seed}


def _fill_run(a: argparse.Namespace, task: str) -> int:
    from .edit import check_output_path, check_text, load_image, save_image
    from .fill import load_fill_mask
    from .methods import EditRequest, get_method
    from .methods.inpaint import check_extents

    mask_path = getattr(a, "mask", None)
    out = check_output_path(a.output, (a.image, mask_path))
    image = load_image(a.image)  # every input is read and checked before a model loads
    mask = load_fill_mask(mask_path, image.shape[:2], image_name=str(a.image)) if mask_path else None
    prompt = getattr(a, "prompt", None)
    if prompt is not None:
        prompt = check_text(prompt, "prompt").strip() or None
    if task == "inpaint" and prompt is None:
        raise ValueError("the prompt is empty: inpaint draws what the prompt describes (use `retouch erase` to fill without one)")
    sides = {}
    if task == "outpaint":
        sides = {k: getattr(a, k) for k in ("left", "right", "top", "bottom")}
        check_extents(image.shape, **sides)
    method = get_method(task, **_fill_options(a))
    if task == "outpaint":
        res = method.outpaint(image, prompt=prompt, callback=_progress(task, 1), **sides)
    else:
        res = method.edit(EditRequest(image=image, target_prompt=prompt, mask=mask), callback=_progress(task, 1))
    save_image(res.image, out)  # atomic: never a half-written image under the real name
    h, w = res.image.shape[:2]
    print(json.dumps({"output": str(out), "size": [w, h], "nfe": res.nfe_edit} | res.info), flush=True)
    return 0


def cmd_inpaint(a: argparse.Namespace) -> int:
    return _fill_run(a, "inpaint")


def cmd_erase(a: argparse.Namespace) -> int:
    return _fill_run(a, "erase")


def cmd_outpaint(a: argparse.Namespace) -> int:
    return _fill_run(a, "outpaint")


# -- batch ------------------------------------------------------------------------
def cmd_batch(a: argparse.Namespace) -> int:
    from .batch import cli_main

    return cli_main(a)


# -- bench / train ----------------------------------------------------------------
def cmd_bench(a: argparse.Namespace) -> int:
    from .eval.bench import BenchConfig, markdown_table, run_bench

    options = {}
    for item in a.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # a bare string
    from .world.fill_suite import suite_task

    if suite_task(a.suite) is not None:  # a fill suite: inpaint / erase / outpaint scoring (docs/inpaint.md)
        from .eval.fill_bench import FillBenchConfig, fill_table, run_fill_bench

        if a.inputs != "instruction" or a.clip or a.dino:
            raise ValueError("--inputs, --clip and --dino belong to edit suites; a fill suite gives each method its image and mask")
        fcfg = FillBenchConfig(a.suite, a.method, options=options, limit=a.limit, every=a.every, json_out=a.json, reader=a.reader)
        print(fill_table([run_fill_bench(fcfg)]))
        if a.json:
            print(f"wrote {a.json} (+ .csv, .md)")
        return 0
    cfg = BenchConfig(
        suite=a.suite,
        method=a.method,
        inputs=a.inputs,
        limit=a.limit,
        every=a.every,
        options=options,
        json_out=a.json,
        reader=a.reader,
        clip=a.clip,
        dino=a.dino,
    )
    summary = run_bench(cfg)
    print(markdown_table(summary))
    if a.json:
        print(f"wrote {a.json} (+ .csv, .md)")
    return 0


def cmd_serve(a: argparse.Namespace) -> int:
    from .serve import ServeSettings, serve
    from .serve.settings import read_token_file

    token = read_token_file(a.token_file) if a.token_file else None
    settings = ServeSettings(
        host=a.host,
        port=a.port,
        model=a.model,
        token=token,
        default_method=a.method,
        max_concurrent=a.max_concurrent,
        request_timeout_s=a.timeout,
        max_sessions=a.max_sessions,
        preload=[a.method] if a.preload else [],
    )
    serve(settings)
    return 0


def cmd_methods(a: argparse.Namespace) -> int:
    from .methods import list_methods

    print("\n".join(list_methods()))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from .train import run_recipe

    result = run_recipe(a.recipe, steps=a.steps, out=a.out)
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="retouch", description="Edit images from words; the Shapes world and its benchmark.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="cmd", required=True)

    w = sub.add_parser("world", help="the Shapes world: sample, benchmark suites, scene reader").add_subparsers(
        dest="world_cmd", required=True
    )
    b = w.add_parser("bench", help="write a Shapes-PIE suite in PIE-Bench's format")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--n", type=int, default=700, help="number of cases (PIE-Bench proportions; default 700)")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--size", type=int, default=128, help="image side, a multiple of 32")
    b.add_argument(
        "--task",
        default="edit",
        choices=["edit", "inpaint", "erase", "outpaint"],
        help="edit: the ten PIE-Bench types (default); inpaint / erase / outpaint: a fill suite with exact truth (docs/inpaint.md)",
    )
    b.add_argument(
        "--turns",
        type=int,
        default=1,
        help="1: a Shapes-PIE suite (default); K > 1: N sessions of K-turn edit chains in MagicBrush's format, truth after each turn",
    )
    b.set_defaults(fn=cmd_world_bench)
    s = w.add_parser("sample", help="render a random scene and print its captions")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--objects", type=int, default=None, help="number of objects (1-4)")
    s.add_argument("--size", type=int, default=128)
    s.set_defaults(fn=cmd_world_sample)
    r = w.add_parser("parse", help="read the scene in an image")
    r.add_argument("images", nargs="+")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.add_argument("--reader", default=None, help="scene reader folder (default: the shipped one)")
    r.set_defaults(fn=cmd_world_parse)
    e = w.add_parser("reader-eval", help="exact-scene accuracy of the scene reader on fresh renders")
    e.add_argument("--n", type=int, default=2000)
    e.add_argument("--seed", type=int, default=424242)
    e.add_argument("--reader", default=None)
    e.add_argument("--no-refine", action="store_true", help="the network alone, without analysis by synthesis")
    e.set_defaults(fn=cmd_world_reader_eval)

    c = w.add_parser("captions", help="random scenes with their short and detailed captions, as JSON lines")
    c.add_argument("--n", type=int, required=True)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True, help="output .jsonl")
    c.set_defaults(fn=cmd_world_captions)
    sc = w.add_parser("score", help="parse generated images (00000.png, ...) and compare with the scenes they were made from")
    sc.add_argument("dir", help="folder of PNGs named by line index")
    sc.add_argument("--against", required=True, help="the .jsonl of `retouch world captions`")
    sc.add_argument("--json", default=None, help="write the result here too")
    sc.add_argument("--reader", default=None)
    sc.set_defaults(fn=cmd_world_score)

    bb = sub.add_parser("bench", help="run a method over a PIE-Bench-format suite")
    bb.add_argument("suite")
    bb.add_argument("--method", required=True)
    bb.add_argument("--inputs", default="instruction", choices=["instruction", "prompts", "mask"])
    bb.add_argument("--limit", type=int, default=None)
    bb.add_argument("--every", type=int, default=1, help="every k-th case: a subset with the suite's type proportions")
    bb.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help="a method setting, e.g. mask=difference")
    bb.add_argument("--json", default=None, help="summary JSON path; the CSV and markdown go beside it")
    bb.add_argument("--reader", default=None, help="scene reader folder (default: the shipped one)")
    bb.add_argument("--clip", default=None, help="CLIPModel folder or hub id for CLIP metrics")
    bb.add_argument("--dino", default=None, help="ViT/DINO folder or hub id for DINO similarity (default: facebook/dino-vits16 if cached)")
    bb.set_defaults(fn=cmd_bench)

    g = sub.add_parser("generate", help="text to image with a backbone (default: the shipped Shapes few-step model)")
    g.add_argument("prompt", nargs="?", default=None, help="the prompt (or use --prompts)")
    g.add_argument("-o", "--output", default=None, help="output image for a single prompt")
    g.add_argument("--prompts", default=None, help="JSON-lines file, one image per line, named 00000.png, 00001.png, ...")
    g.add_argument("--field", default="detailed", help="the field of each JSON line that holds the prompt (default: detailed)")
    g.add_argument("--out", default=None, help="output folder for --prompts")
    g.add_argument("--model", default=None, help="diffusers folder or cached hub id (default: models/shapes-turbo)")
    g.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's own, 4 for the Shapes student)")
    g.add_argument("--seed", type=int, default=0, help="noise seed; line i of --prompts uses seed + i")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the model's own)")
    g.add_argument("--size", type=int, default=None, help="image side in pixels (default: the model's training size)")
    g.add_argument("--batch-size", type=int, default=32)
    g.set_defaults(fn=cmd_generate)

    ed = sub.add_parser("edit", help="edit an image from an instruction (default method: turbo)")
    ed.add_argument("image", help="input image (RGB; grey and palette images are converted)")
    ed.add_argument("instruction", nargs="?", default=None, help='what to change, e.g. "make the circle blue"')
    ed.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp); earlier turns go beside it as NAME.turnK.png")
    ed.add_argument("--method", default="turbo", help="editing method (see `retouch methods`)")
    ed.add_argument("--target-prompt", default=None, help="the target caption itself, instead of rewriting the source caption")
    ed.add_argument("--source-prompt", default=None, help="the source caption, instead of the captioner's")
    ed.add_argument("--mask", default=None, help="single-channel mask of the image's size, white = edit; pixels outside stay bit-identical")
    ed.add_argument("--strength", type=float, default=None, help="turbo: edit strength, 0 (reconstruction) to 1.5 (default 1)")
    ed.add_argument(
        "--then", action="append", default=None, metavar="INSTRUCTION", help="a further instruction for the last output (repeatable)"
    )
    ed.add_argument(
        "--then-from",
        default="output",
        choices=["output", "source"],
        help="--then turns edit the last output (default) or re-edit the input with the chained caption (one inversion)",
    )
    ed.add_argument("--model", default=None, help="diffusers pipeline folder (default: the method's shipped model)")
    ed.add_argument("--inversion", default=None, help="turbo: inversion network folder (default: MODEL-inversion)")
    ed.add_argument("--mask-threshold", type=float, default=None, help="turbo: attention-mask threshold (default 0.6)")
    ed.add_argument(
        "--auto-mask",
        default=None,
        choices=["auto", "attention", "difference", "layout", "none"],
        help="turbo: mask without --mask (default auto: layout on a layout-map generator, else none)",
    )
    ed.add_argument(
        "--compose", default=None, choices=["adaptive", "delta", "paste"], help="turbo: how the edit returns to pixels (default adaptive)"
    )
    ed.add_argument(
        "--show-mask", default=None, metavar="MASK.png", help="save the edited region (white = edited; earlier turns as MASK.turnK.png)"
    )
    ed.add_argument("--predictor", default=None, help="region: region predictor folder (default: models/region-predictor)")
    ed.add_argument("--region-threshold", type=float, default=None, help="region: patch probability that joins the region (default 0.5)")
    ed.add_argument(
        "--region-from",
        choices=("predictor", "generator", "union"),
        default=None,
        help="region: where the region comes from: the learned predictor (default), the generator's drafts of the two "
        "captions (where they differ), or both",
    )
    ed.add_argument("--rewriter", default="reader", help="instruction -> caption backend: reader (default), rules, smollm2 or openai")
    ed.add_argument("--rewriter-url", default=None, help="openai: base URL of an OpenAI-compatible endpoint")
    ed.add_argument("--rewriter-model", default=None, help="openai: model name")
    ed.set_defaults(fn=cmd_edit)

    fill_help = {
        "inpaint": "draw what a prompt describes inside a mask (needs a diffusion inpainting model, --model)",
        "erase": "fill a mask with what its surroundings imply (OpenCV Telea by default; docs/inpaint.md)",
        "outpaint": "extend the canvas and fill the new pixels (classic backends: an edge-propagating fallback)",
    }
    for task, fn in (("inpaint", cmd_inpaint), ("erase", cmd_erase), ("outpaint", cmd_outpaint)):
        fp = sub.add_parser(task, help=fill_help[task])
        fp.add_argument("image", help="input image (any size; grey and palette images are converted)")
        if task == "inpaint":
            fp.add_argument("prompt", help="what to draw in the mask")
        if task == "outpaint":
            fp.add_argument("prompt", nargs="?", default=None, help="what the new area shows (needs a diffusion model)")
            for side in ("left", "right", "top", "bottom"):
                fp.add_argument(f"--{side}", type=int, default=0, metavar="PX", help=f"pixels to add on the {side}")
        else:
            fp.add_argument("--mask", required=True, help="mask PNG of the image's size: white, or non-zero alpha, = fill")
        fp.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp), the input's size (outpaint: extended)")
        fp.add_argument("--backend", default=None, help="telea | ns | biharmonic | diffusion (default: diffusion with --model, else telea)")
        fp.add_argument("--model", default=None, help="a diffusers SD-inpainting folder (StableDiffusionInpaintPipeline, 9-channel UNet)")
        fp.add_argument("--steps", type=int, default=None, help="diffusion: sampling steps (default 25)")
        fp.add_argument("--guidance", type=float, default=None, help="diffusion: classifier-free guidance (default 7.5)")
        fp.add_argument("--seed", type=int, default=0, help="diffusion: noise seed")
        fp.add_argument(
            "--samples", type=int, default=None, help="diffusion: fills averaged per crop (default: the model's own for erase, else 1)"
        )
        fp.add_argument(
            "--blend",
            type=float,
            default=None,
            help="diffusion: match the fill's colour to its surroundings, fading over PX pixels (default: the crop's side / 16; 0: off)",
        )
        fp.add_argument("--margin", type=int, default=None, help="context pixels around each mask region in its crop (default 64)")
        fp.add_argument(
            "--crop-size", type=int, default=None, help="the working size crops are filled at (default: the model's; classic: 512)"
        )
        fp.set_defaults(fn=fn, trailing_prompt=task == "outpaint")

    ba = sub.add_parser("batch", help="many edits from a JSON-lines file or paired folders; resumable, optionally on Ray (docs/batch.md)")
    ba.add_argument("jobs", nargs="?", default=None, help="JSON lines: image, instruction or prompt, [method mask strength seed output]")
    ba.add_argument("--out", required=True, help="output folder: one PNG per job and batch-summary.json")
    ba.add_argument("--images", default=None, help="a folder of images to edit alike (instead of JOBS)")
    ba.add_argument("--masks", default=None, help="with --images: masks paired by file name (white = edit)")
    ba.add_argument("--prompt", default=None, help="with --images: the target caption for every image")
    ba.add_argument("--instruction", default=None, help="with --images: the instruction for every image")
    ba.add_argument("--source-prompt", default=None, help="with --images: the source caption (default: the captioner's)")
    ba.add_argument("--method", default="turbo", help="method for lines that name none (default turbo)")
    ba.add_argument("--model", default=None, help="diffusers pipeline folder for every method (default: each method's shipped model)")
    ba.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help="a method setting, e.g. mask=difference")
    ba.add_argument("--strength", type=float, default=None, help="edit strength for lines that give none (turbo)")
    ba.add_argument("--seed", type=int, default=0, help="seed for lines that give none (default 0)")
    ba.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's; on Ray, each worker's CPUs)")
    ba.add_argument("--overwrite", action="store_true", help="recompute outputs that are already finished")
    ba.add_argument("--dry-run", action="store_true", help="check every line and say what would run; load no model")
    ba.add_argument("--ray", default=None, metavar="ADDRESS", help="run on the Ray cluster at HOST:PORT (or 'auto'); needs retouch[ray]")
    ba.add_argument("--ray-workers", type=int, default=None, help="Ray actors, each loading the model once (default: the cluster's CPUs)")
    ba.set_defaults(fn=cmd_batch)

    sv = sub.add_parser("serve", help="the HTTP API (FastAPI; OpenAPI at /docs; docs/serve.md)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (anything but loopback needs --token-file)")
    sv.add_argument("--port", type=int, default=8080)
    sv.add_argument("--model", default=None, help="pipeline folder to serve (default: the shipped Shapes models)")
    sv.add_argument("--token-file", default=None, help="file holding the secret clients send as 'Authorization: Bearer <secret>'")
    sv.add_argument("--method", default="turbo", help="the default method (default: turbo)")
    sv.add_argument("--max-concurrent", type=int, default=4, help="model requests at once; more are answered 429 (default 4)")
    sv.add_argument("--timeout", type=float, default=120.0, help="seconds a model request may take; past it 408 (default 120)")
    sv.add_argument("--max-sessions", type=int, default=32, help="sessions kept; the least recently used go first (default 32)")
    sv.add_argument("--preload", action="store_true", help="load the default method at start-up, not on the first request")
    sv.set_defaults(fn=cmd_serve)

    m = sub.add_parser("methods", help="list registered editing methods")
    m.set_defaults(fn=cmd_methods)

    t = sub.add_parser("train", help="train a model from a recipe file (resumable)")
    t.add_argument("recipe")
    t.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    t.add_argument("--out", default=None, help="override the recipe's output folder")
    t.set_defaults(fn=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse (3.11) cannot take an optional positional after options (`retouch outpaint IMG --left 64 "PROMPT"`)
        if getattr(args, "trailing_prompt", False) and args.prompt is None and len(extra) == 1 and not extra[0].startswith("-"):
            args.prompt = extra[0]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.fn(args)
    except (ValueError, OSError, RuntimeError) as e:  # OSError covers FileNotFoundError, PermissionError, ...
        print(f"retouch: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
