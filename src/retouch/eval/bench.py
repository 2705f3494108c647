"""The benchmark runner: run one method over a PIE-Bench-format suite and measure it.

Metrics per case (see docs/benchmark.md):
- PIE-Bench background preservation (PSNR/MSE/SSIM on images times 1 - mask, mask
  decoded with PIE-Bench's border rule) and the same inside the mask;
- edit success and per-attribute accuracy: the scene reader's parse of the output
  against the target scene (Shapes-PIE suites only);
- MagicBrush L1/L2 against the ground-truth target image (when the suite has one);
- CLIP-family metrics when a CLIP model is given, else reported as unavailable.
Writes a per-case CSV, a markdown table with a per-type breakdown and a summary JSON.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write, sweep_temps, write_json, write_text
from ..methods import INPUTS, EditRequest, EditResult, Method, get_method
from ..world.edits import EDIT_TYPES
from ..world.reader import SceneReader, read_scenes
from ..world.suite import Case, load_suite
from .metrics import scene_match
from .pie import PieMetrics, gt_distance

logger = logging.getLogger(__name__)

SUMMARY_KEYS = (
    "success",
    "attr_accuracy",
    "bg_psnr",
    "bg_mse",
    "bg_ssim",
    "in_psnr",
    "in_mse",
    "in_ssim",
    "gt_l1",
    "gt_l2",
    "clip_whole",
    "clip_edited",
    "clip_dir",
    "clip_img",
    "clip_out",
    "dino_gt",
    "dino_src",
    "bg_lpips",
    "s_per_edit",
    "nfe_per_edit",
    "s_per_inversion",
    "nfe_per_inversion",
)


@dataclass
class BenchConfig:
    suite: str
    method: str
    inputs: str = "instruction"
    limit: int | None = None
    every: int = 1  # every k-th case (a stratified subset: cases are ordered by edit type)
    options: dict | None = None  # method settings, e.g. {"mask": "difference"}
    json_out: str | None = None
    reader: str | None = None  # scene reader folder; the shipped one by default
    clip: str | None = None  # CLIPModel folder or hub id for the CLIP metrics
    dino: str | None = None  # ViT/DINO folder or hub id; default: facebook/dino-vits16 when cached


def build_request(case: Case, image: np.ndarray, inputs: str) -> EditRequest:
    """The request a method sees: the source image plus only what ``inputs`` allows."""
    if inputs not in INPUTS:
        raise ValueError(f"unknown --inputs {inputs!r}; choose one of {list(INPUTS)}")
    allowed = INPUTS[inputs]
    kw = {}
    if "instruction" in allowed:
        kw["instruction"] = case.editing_instruction
    if "source_prompt" in allowed:
        kw["source_prompt"] = case.source_caption or case.source_prompt
        kw["target_prompt"] = case.target_caption or case.target_prompt
    if "mask" in allowed:
        kw["mask"] = case.mask(image.shape[:2], border=False)
    return EditRequest(image=image, **kw)


def _run_method(method: Method, request: EditRequest, case: Case) -> EditResult:
    if method.reference:
        return method.edit_with_truth(request, case.load_target())  # type: ignore[attr-defined]
    return method.edit(request)


def _mean(vals: list[float]) -> float | None:
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else None


def summarise(rows: list[dict]) -> dict:
    out: dict = {"n": len(rows)}
    for k in SUMMARY_KEYS:
        out[k] = _mean([r.get(k) for r in rows])
    return out


def run_bench(cfg: BenchConfig, callback: Callable[[int, int], None] | None = None, method: Method | None = None) -> dict:
    cases = load_suite(cfg.suite)
    if cfg.limit is not None:
        if cfg.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {cfg.limit}")
        cases = cases[: cfg.limit]
    if cfg.every < 1:
        raise ValueError(f"--every must be at least 1, got {cfg.every}")
    cases = cases[:: cfg.every]
    if cfg.inputs not in INPUTS:
        raise ValueError(f"unknown --inputs {cfg.inputs!r}; choose one of {list(INPUTS)}")
    method = method or get_method(cfg.method, **(cfg.options or {}))
    has_truth = all(c.target_scene is not None for c in cases)
    reader = SceneReader.from_pretrained(cfg.reader) if cfg.reader else SceneReader.from_pretrained() if has_truth else None
    clip = None
    if cfg.clip:
        from .clip import CLIPEmbedder

        clip = CLIPEmbedder.load(cfg.clip)
    dino, lpips, status = _optional_metrics(cfg)
    pie = PieMetrics()
    rows: list[dict] = []
    clip_jobs: list[tuple] = []  # CLIP metrics are computed a batch of cases at a time
    bar = tqdm(cases, desc=f"bench {cfg.method}", disable=None, mininterval=2)
    for k, case in enumerate(bar):
        src = case.load_image()
        req = build_request(case, src, cfg.inputs)
        t0 = time.perf_counter()
        res = _run_method(method, req, case)
        wall = time.perf_counter() - t0
        out = res.image
        if out.shape != src.shape or out.dtype != np.uint8:
            raise RuntimeError(f"method {cfg.method} returned shape {out.shape} {out.dtype} for a {src.shape} uint8 input (case {case.id})")
        mask = case.mask(src.shape[:2])  # PIE-Bench semantics: border rule on
        row: dict = {"id": case.id, "type": case.editing_type_id, "type_name": EDIT_TYPES.get(case.editing_type_id, "?")}
        # a case whose mask covers the whole image has no background to preserve
        bg = pie(src, out, mask)
        if mask.all():
            bg = {k: (v if k.startswith("in_") else None) for k, v in bg.items()}
        row |= bg
        target = case.load_target()
        if target is not None:
            row |= gt_distance(out, target)
        if reader is not None and case.target_scene is not None:
            (parsed,) = read_scenes(reader, out)
            m = scene_match(parsed, case.target_scene)
            row["success"] = float(m["exact"])
            row["attr_accuracy"] = float(np.mean(list(m["attrs"].values())))
            row |= {f"acc_{a}": v for a, v in m["attrs"].items()}
        if clip is not None:
            clip_jobs.append((row, src, out, mask, case.source_prompt, case.target_prompt))
            if len(clip_jobs) == CLIP_BATCH:
                _clip_rows(clip, clip_jobs)
        if dino is not None:
            row["dino_src"] = dino.similarity(out, src)
            if target is not None:
                row["dino_gt"] = dino.similarity(out, target)
        if lpips is not None and not mask.all():
            row["bg_lpips"] = lpips(src, out, mask)
        row["s_per_edit"] = wall - res.s_inversion
        row["nfe_per_edit"] = res.nfe_edit
        row["s_per_inversion"] = res.s_inversion
        row["nfe_per_inversion"] = res.nfe_inversion
        rows.append(row)
        if callback:
            callback(k + 1, len(cases))
    if clip is not None and clip_jobs:
        _clip_rows(clip, clip_jobs)
    summary = summarise(rows)
    summary["per_type"] = {
        EDIT_TYPES.get(t, str(t)): summarise([r for r in rows if r["type"] == t]) for t in sorted({r["type"] for r in rows})
    }
    summary |= {
        "method": cfg.method,
        "options": cfg.options or {},
        "every": cfg.every,
        "inputs": cfg.inputs,
        "suite": str(cfg.suite),
        "clip_model": cfg.clip or "unavailable: no --clip model given",
        **status,
    }
    if cfg.json_out:
        write_reports(rows, summary, Path(cfg.json_out))
    return summary


def _optional_metrics(cfg: BenchConfig):
    """DINO and LPIPS scorers where their weights are on disk, and a status line for each."""
    from .clip import optional_metrics_status
    from .perceptual import BackgroundLPIPS, DinoEmbedder

    dino_id = cfg.dino or "facebook/dino-vits16"
    status = optional_metrics_status(dino_model=dino_id)
    dino = lpips = None
    if cfg.dino or status["dino"] == "available":
        dino = DinoEmbedder.load(dino_id)  # an explicit --dino that fails to load is an error
        status["dino"] = f"available: {dino_id}"
    if status["lpips"] == "available":
        try:
            lpips = BackgroundLPIPS()
        except Exception as e:  # weights present but unusable: say so instead of guessing
            status["lpips"] = f"unavailable: {type(e).__name__}: {e}"
    return dino, lpips, status


CLIP_BATCH = 32


def _clip_rows(clip, jobs: list[tuple]) -> None:
    """Fill the CLIP columns of a batch of rows (each job: row, src, out, mask, source prompt, target prompt); empties ``jobs``."""
    from .clip import clip_score, clip_score_edited, emu_metrics

    rows, srcs, outs, masks, src_caps, tgts = (list(x) for x in zip(*jobs, strict=True))
    whole = clip_score(clip, outs, tgts)
    edited = clip_score_edited(clip, outs, masks, tgts)
    emu = emu_metrics(clip, srcs, outs, src_caps, tgts)
    for i, row in enumerate(rows):
        row |= {"clip_whole": whole[i], "clip_edited": edited[i], **{k: v[i] for k, v in emu.items()}}
    jobs.clear()


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def markdown_table(summary: dict) -> str:
    cols = ["n", "success", "attr_accuracy", "bg_psnr", "bg_mse", "bg_ssim", "gt_l1", "gt_l2", "s_per_edit", "nfe_per_edit"]
    lines = [f"# {summary['method']} on {summary['suite']} (inputs: {summary['inputs']})", ""]
    lines.append("| type | " + " | ".join(cols) + " |")
    lines.append("|---" * (len(cols) + 1) + "|")
    for name, s in list(summary["per_type"].items()) + [("all", summary)]:
        lines.append(f"| {name} | " + " | ".join(_fmt(s.get(c)) for c in cols) + " |")
    lines += ["", f"s_per_inversion: {_fmt(summary['s_per_inversion'])}, nfe_per_inversion: {_fmt(summary['nfe_per_inversion'])}"]
    for k in ("clip_model", "lpips", "dino"):
        lines.append(f"{k}: {summary.get(k)}")
    return "\n".join(lines) + "\n"


def write_reports(rows: list[dict], summary: dict, json_out: Path, markdown: str | None = None) -> None:
    """Per-case CSV, a markdown table (``markdown``, else the editing table of ``summary``) and the summary JSON."""
    json_out.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(json_out.parent, names=[json_out.with_suffix(s).name for s in (".csv", ".md", ".json")])
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    # each file renamed into place whole; the summary JSON last, so its presence means the run finished
    with atomic_write(json_out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    write_text(json_out.with_suffix(".md"), markdown if markdown is not None else markdown_table(summary))
    write_json(json_out, summary)
