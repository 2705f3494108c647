"""Score a fill method (inpaint / erase / outpaint) on a Shapes-world fill suite (``retouch.world.fill_suite``).

Per case (docs/inpaint.md):
- ``success`` by the scene reader's parse of the output against the truth scene:
  erase: the parse is the truth scene exactly (the object gone and nothing else changed);
  inpaint: the slot holds exactly the described object (``exact_scene`` also reports the whole scene);
  outpaint: the whole scene is right (``exact_scene``); ``attr_accuracy`` is the mean per-attribute accuracy on
  the part not shown: background and style, the occupancy of the slots the mask touches, and every object
  attribute of the objects whose footprint the mask touches;
- ``in_psnr`` / ``in_mse`` / ``in_l1`` inside the mask against the truth image (PSNR capped at 100 dB for identical
  pixels; L1 on the 0-255 scale); the summary adds ``in_psnr_pooled`` (the PSNR of the mean in-mask MSE, which
  cases filled exactly cannot inflate), ``in_psnr_median`` and ``exact_fills`` (cases whose fill is exact);
- ``outside_exact``: 1 when every pixel outside the mask is the input's (for outpaint, at its new place);
- ``s_per_image``: the method's wall time; ``nfe_per_image``: its network evaluations.
Reference methods (``identity``, ``oracle``) get the truth as in ``retouch bench`` and calibrate the table.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..methods import EditRequest, EditResult, Method, get_method
from ..world.fill_suite import FillCase, load_fill_suite
from ..world.reader import SceneReader, read_scenes
from ..world.render import object_footprint
from ..world.scene import GRID, N_SLOTS, OBJECT_ATTRS
from .bench import write_reports
from .metrics import scene_match

logger = logging.getLogger(__name__)

PSNR_CAP = 100.0
SUMMARY_KEYS = (
    "success",
    "exact_scene",
    "attr_accuracy",
    "in_psnr",
    "in_mse",
    "in_l1",
    "coherence",
    "outside_exact",
    "s_per_image",
    "nfe_per_image",
)
COHERENCE_MODEL = "models/reward-coherence"  # ByteEdit's pixel-level reward: scored when the folder exists


@dataclass
class FillBenchConfig:
    suite: str
    method: str  # a method of the suite's task (erase / inpaint / outpaint), or a reference method
    options: dict | None = None  # method settings, e.g. {"backend": "ns"}
    limit: int | None = None
    every: int = 1
    json_out: str | None = None
    reader: str | None = None
    coherence: str | None = COHERENCE_MODEL  # a coherence reward folder (models/rewards.py); None or missing: not scored
    label: str | None = None  # the row's name in tables (default: method and backend)


def in_mask_metrics(out: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    d = out[mask].astype(np.float64) - truth[mask].astype(np.float64)
    mse = float(np.mean(d**2))
    psnr = PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))
    return {"in_psnr": psnr, "in_mse": mse, "in_l1": float(np.mean(np.abs(d)))}


def hidden_attributes(parsed, truth, mask: np.ndarray) -> dict[str, float]:
    """Outpaint: per-attribute accuracy on the part the input did not show."""
    size = mask.shape[0]
    cell = size // GRID
    out = {"background": float(parsed.background == truth.background), "style": float(parsed.style == truth.style)}
    cells = {s: mask[(s // GRID) * cell : (s // GRID + 1) * cell, (s % GRID) * cell : (s % GRID + 1) * cell] for s in range(N_SLOTS)}
    slots = [s for s, m in cells.items() if m.any()]
    if slots:
        out["layout"] = float(np.mean([(parsed.object_at(s) is None) == (truth.object_at(s) is None) for s in slots]))
    objs = [o for o in truth.objects if (object_footprint(o, size) & mask).any()]
    for k in OBJECT_ATTRS:
        if objs:
            out[k] = float(np.mean([(p := parsed.object_at(o.slot)) is not None and getattr(p, k) == getattr(o, k) for o in objs]))
    return out


def _request(case: FillCase, image: np.ndarray) -> tuple[EditRequest, np.ndarray]:
    """The method's request and the input as it lies on the truth's canvas (for the outside-the-mask check)."""
    if case.task == "outpaint":
        from ..methods.inpaint import extend_canvas

        canvas, mask = extend_canvas(image, **case.extend)
        if not np.array_equal(mask, case.mask):
            raise ValueError(f"case {case.id}: its mask is not the area its 'extend' adds")
        return EditRequest(image=canvas, mask=mask), canvas
    return EditRequest(image=image, mask=case.mask, target_prompt=case.prompt), image


def _run(method: Method, request: EditRequest, case: FillCase) -> EditResult:
    if method.reference:
        return method.edit_with_truth(request, case.load_target())  # type: ignore[attr-defined]
    return method.edit(request)


def coherence_score(judge, image: np.ndarray, mask: np.ndarray) -> float:
    """The coherence reward's mean "real" probability over the mask and a band around it (1: reads as untouched)."""
    import torch

    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
        m = torch.from_numpy(mask.astype(np.float32))[None, None]
        return float(judge.score(x, m)[0])


def _mean(vals) -> float | None:
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def run_fill_bench(cfg: FillBenchConfig, method: Method | None = None, callback: Callable[[int, int], None] | None = None) -> dict:
    task, cases = load_fill_suite(cfg.suite)
    if cfg.limit is not None:
        if cfg.limit < 1:
            raise ValueError(f"--limit must be at least 1, got {cfg.limit}")
        cases = cases[: cfg.limit]
    if cfg.every < 1:
        raise ValueError(f"--every must be at least 1, got {cfg.every}")
    cases = cases[:: cfg.every]
    method = method or get_method(cfg.method, **(cfg.options or {}))
    if not method.reference and method.task != task:
        raise ValueError(f"method {cfg.method!r} does {method.task}; this is a {task} suite (use --method {task} with --set backend=...)")
    reader = SceneReader.from_pretrained(cfg.reader) if cfg.reader else SceneReader.from_pretrained()
    judge = None
    if cfg.coherence and Path(cfg.coherence).is_dir():
        from ..models.rewards import RewardModel

        judge = RewardModel.from_pretrained(cfg.coherence, kind="coherence")
    rows: list[dict] = []
    for k, case in enumerate(tqdm(cases, desc=f"{task} {cfg.method}", disable=None, mininterval=2)):
        src = case.load_image()
        truth = case.load_target()
        req, on_canvas = _request(case, src)
        t0 = time.perf_counter()
        res = _run(method, req, case)
        wall = time.perf_counter() - t0
        out = res.image
        if out.shape != truth.shape or out.dtype != np.uint8:
            raise RuntimeError(f"method {cfg.method} returned {out.shape} {out.dtype} for case {case.id}; the truth is {truth.shape} uint8")
        row: dict = {"id": case.id, "task": task}
        row |= in_mask_metrics(out, truth, case.mask)
        row["outside_exact"] = float(np.array_equal(out[~case.mask], on_canvas[~case.mask]))
        if judge is not None:
            row["coherence"] = coherence_score(judge, out, case.mask)
        (parsed,) = read_scenes(reader, out)
        m = scene_match(parsed, case.target_scene)
        row["exact_scene"] = float(m["exact"])
        if task == "erase":
            row["success"] = row["exact_scene"]
            attrs = m["attrs"]
        elif task == "inpaint":
            want = case.target_scene.object_at(case.slot)
            got = parsed.object_at(case.slot)
            row["success"] = float(got is not None and got == want)
            attrs = {k: float(got is not None and getattr(got, k) == getattr(want, k)) for k in OBJECT_ATTRS}
        else:
            row["success"] = row["exact_scene"]
            attrs = hidden_attributes(parsed, case.target_scene, case.mask)
        row["attr_accuracy"] = float(np.mean(list(attrs.values())))
        row |= {f"acc_{a}": v for a, v in attrs.items()}
        row["s_per_image"] = wall
        row["nfe_per_image"] = res.nfe_edit
        rows.append(row)
        if callback:
            callback(k + 1, len(cases))
    keys = list(SUMMARY_KEYS) + sorted({k for r in rows for k in r if k.startswith("acc_")})
    summary: dict = {"n": len(rows)} | {k: _mean(r.get(k) for r in rows) for k in keys}
    # the mean of per-case PSNRs (PIE-Bench's way) is pulled up by cases filled exactly (capped at 100 dB); the PSNR
    # of the mean in-mask MSE over all cases and the median per-case PSNR are not
    mse = summary["in_mse"]
    summary["in_psnr_pooled"] = None if mse is None else PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))
    summary["in_psnr_median"] = float(np.median([r["in_psnr"] for r in rows])) if rows else None
    summary["exact_fills"] = int(sum(r["in_mse"] == 0 for r in rows))
    summary |= {"task": task, "method": cfg.method, "options": cfg.options or {}, "suite": str(cfg.suite), "every": cfg.every}
    if cfg.label:
        summary["label"] = cfg.label
    if cfg.json_out:
        write_fill_reports(rows, summary, Path(cfg.json_out))
    return summary


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


TABLE_COLS = (
    "n",
    "success",
    "attr_accuracy",
    "in_psnr_pooled",
    "in_psnr_median",
    "in_psnr",
    "exact_fills",
    "in_l1",
    "coherence",
    "outside_exact",
    "s_per_image",
    "nfe_per_image",
)


def fill_table(summaries: list[dict]) -> str:
    """One markdown row per summary (method and its backend)."""
    lines = ["| method | " + " | ".join(TABLE_COLS) + " |", "|---" * (len(TABLE_COLS) + 1) + "|"]
    for s in summaries:
        backend = (s.get("options") or {}).get("backend")
        name = s.get("label") or (f"{s['method']} ({backend})" if backend else s["method"])
        lines.append(f"| {name} | " + " | ".join(_fmt(s.get(c)) for c in TABLE_COLS) + " |")
    return "\n".join(lines) + "\n"


def write_fill_reports(rows: list[dict], summary: dict, json_out: Path) -> None:
    write_reports(rows, summary, json_out, f"# {summary['method']} on {summary['suite']} ({summary['task']})\n\n" + fill_table([summary]))
