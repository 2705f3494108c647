"""Batch jobs: many edits from a JSON-lines file or from paired folders, in this process or on a Ray cluster.

    retouch batch jobs.jsonl --out DIR                      # one JSON object a line (``BatchJob``)
    retouch batch --images IMGS --masks MASKS --prompt "..." --out DIR
    retouch batch jobs.jsonl --out DIR --ray HOST:PORT      # the same files, edited by Ray actors

The path of a batch reads straight through this module:

1. **read** (``read_jobs`` / ``folder_jobs``): every line becomes a ``Line``, a job or the error that
   names what was wrong with it (not JSON, an unknown field, no instruction...);
2. **check** (``check_lines``): each job's image and mask are opened and checked as ``retouch edit``
   checks them, the method must be registered, the output name must be a new PNG inside ``--out``;
   a job's **key** hashes everything that determines its result (method and settings, the bytes of
   its image and mask, captions, strength, seed) -- all before any model loads;
3. **plan** (``plan``): an output that exists and carries its job's key in its PNG text chunks is
   finished and skipped (so a killed batch resumes where it stopped);
4. **run**: a ``JobRunner`` (one ``retouch.edit.Editor`` per method, each loaded once) edits the
   pending jobs, locally or inside one Ray actor per worker; the driver writes every output
   atomically (``retouch.atomic``: a temporary file, fsync, rename) and, at the end, ``batch-summary.json`` with each
   line's status (done / skipped / error and its message).

Each job is seeded (its ``seed``, else the batch's) before it runs, and its PNG records only what
the job determines (no seconds, no cache hits), so a rerun or a Ray worker writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .atomic import sweep_temps, write_bytes
from .schema import EditSpec

logger = logging.getLogger(__name__)

SUMMARY_NAME = "batch-summary.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_SEED = 2**32 - 1


# -- the job -------------------------------------------------------------------------------------
class BatchJob(EditSpec):
    """One line of a jobs file.  ``prompt`` is accepted for ``target_prompt`` (the target caption)."""

    model_config = ConfigDict(extra="forbid")

    image: str
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    output: str | None = None  # a PNG name inside --out (sub-folders allowed); default: the image's stem + .png

    @model_validator(mode="before")
    @classmethod
    def _prompt_alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prompt" in data:
            if "target_prompt" in data:
                raise ValueError("give 'prompt' or 'target_prompt' (the same thing: the target caption), not both")
            data = {("target_prompt" if k == "prompt" else k): v for k, v in data.items()}
        return data


class BatchRecord(BaseModel):
    """What a batch output's PNG text chunks record: the job and its captions, nothing that depends on
    timing or on the order the jobs ran in (seconds and cache hits live in the summary instead)."""

    method: str
    model: str | None = None
    image: str
    mask: str | None = None
    instruction: str | None = None
    source_caption: str | None = None
    target_caption: str | None = None
    strength: float | None = None
    seed: int
    nfe_edit: int = 0
    width: int = 0
    height: int = 0
    job: str  # the job's key: an existing output with this key is finished


@dataclass
class BatchSettings:
    out: Path
    method: str = "turbo"  # for lines that name none
    options: dict[str, Any] = field(default_factory=dict)  # method settings (--model, --set), for every method
    seed: int = 0  # for lines that give none
    strength: float | None = None  # for lines that give none
    threads: int | None = None  # torch threads per process (None: torch's default locally, the actor's CPUs on Ray)
    overwrite: bool = False  # recompute finished outputs too
    ray: str | None = None  # a Ray cluster's address (HOST:PORT, or "auto")
    ray_workers: int | None = None  # actors (default: the cluster's CPUs / cpus_per_worker)
    cpus_per_worker: float = 1.0


@dataclass
class Line:
    """One job of a batch: where it came from, and either the job or what is wrong with it."""

    number: int  # 1-based position: the line of the jobs file, or the image's place in its folder
    where: str  # "jobs.jsonl:3" or "images/cat.png": how errors name it
    job: BatchJob | None = None
    error: str | None = None
    image: Path | None = None
    mask: Path | None = None
    output: str | None = None  # relative to --out
    key: str | None = None
    status: str = "pending"  # -> done | skipped | error
    result: dict[str, Any] = field(default_factory=dict)

    def fail(self, message: str) -> None:
        self.status, self.error = "error", message


def _pydantic_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"])
        if err["type"] == "extra_forbidden":
            known = ", ".join(k for k in BatchJob.model_fields) + ", prompt"
            parts.append(f"unknown field {loc!r} (known: {known})")
        elif err["type"] == "missing":
            parts.append(f"field {loc!r} is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _job(data: Any, defaults: BatchSettings) -> BatchJob:
    if not isinstance(data, dict):
        raise ValueError(f"a job must be a JSON object, got {type(data).__name__}")
    try:
        job = BatchJob.model_validate(data)
    except ValidationError as e:
        raise ValueError(_pydantic_message(e)) from None
    fill = {"method": defaults.method, "strength": defaults.strength, "seed": defaults.seed}
    return job.model_copy(update={k: v for k, v in fill.items() if getattr(job, k) is None})


def read_jobs(path: str | Path, defaults: BatchSettings) -> list[Line]:
    """The lines of a JSON-lines jobs file (blank lines are skipped).  Relative image and mask paths are
    read from the jobs file's folder.  A line that is not a job becomes a ``Line`` with its error."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"jobs file {p} not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p} is not UTF-8 text (byte {e.start}: {e.reason})") from e
    lines: list[Line] = []
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        line = Line(number=i, where=f"{p.name}:{i}")
        lines.append(line)
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            line.fail(f"not a JSON line ({e.msg} at column {e.colno})")
            continue
        try:
            line.job = _job(data, defaults)
        except ValueError as e:
            line.fail(str(e))
            continue
        line.image = _resolve(line.job.image, p.parent)
        line.mask = _resolve(line.job.mask, p.parent) if line.job.mask else None
        line.output = line.job.output or (PurePosixPath(line.job.image).stem + ".png")
    if not lines:
        raise ValueError(f"{p} holds no job (one JSON object a line)")
    return lines


def _resolve(name: str, base: Path) -> Path:
    q = Path(name).expanduser()
    return q if q.is_absolute() else base / q


def folder_jobs(
    images: str | Path,
    defaults: BatchSettings,
    *,
    masks: str | Path | None = None,
    instruction: str | None = None,
    target_prompt: str | None = None,
    source_prompt: str | None = None,
) -> list[Line]:
    """One job per image file of ``images`` (sorted by name), each with the mask of the same stem from
    ``masks`` (IOPaint's paired folders), one instruction or target caption for all; output ``<stem>.png``."""
    folder = Path(images)
    if not folder.is_dir():
        raise NotADirectoryError(f"--images {folder} is not a folder")
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."))
    if not files:
        raise ValueError(f"--images {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
    by_stem: dict[str, list[Path]] = {}
    if masks is not None:
        mfolder = Path(masks)
        if not mfolder.is_dir():
            raise NotADirectoryError(f"--masks {mfolder} is not a folder")
        for f in sorted(mfolder.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                by_stem.setdefault(f.stem, []).append(f)
    lines = []
    for i, f in enumerate(files, start=1):
        line = Line(number=i, where=f"{folder.name}/{f.name}", image=f, output=f.stem + ".png")
        lines.append(line)
        mask = None
        if masks is not None:
            found = by_stem.get(f.stem, [])
            exact = [m for m in found if m.name == f.name]
            if exact:
                found = exact
            if not found:
                line.fail(f"no mask for {f.name} in --masks {masks} (looked for {f.stem}.*)")
                continue
            if len(found) > 1:
                line.fail(f"more than one mask for {f.name} in --masks {masks}: {', '.join(m.name for m in found)}")
                continue
            mask = found[0]
        data = {"image": str(f), "mask": str(mask) if mask else None, "instruction": instruction}
        data.update(target_prompt=target_prompt, source_prompt=source_prompt)
        try:
            line.job = _job({k: v for k, v in data.items() if v is not None}, defaults)
        except ValueError as e:
            line.fail(str(e))
            continue
        line.mask = mask
    return lines


# -- checks before any model loads -----------------------------------------------------------------
def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_output(name: str, out: Path) -> str:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or Path(name).is_absolute() or ".." in p.parts or not p.parts or p.name.startswith("."):
        raise ValueError(f"output {name!r} must be a relative name inside --out (no '..', no leading '.')")
    if p.suffix.lower() != ".png":
        if p.suffix:
            raise ValueError(f"output {name!r}: batch outputs are PNG files (.png), which carry the job's record")
        p = p.with_suffix(".png")
    if (out / p).is_dir():
        raise ValueError(f"output {p} is a folder in {out}")
    return str(p)


def check_lines(lines: list[Line], settings: BatchSettings) -> None:
    """Check every job as ``retouch edit`` checks its inputs, and give each its key; a bad job fails alone."""
    from .edit import load_image, load_mask
    from .methods import METHODS, list_methods, takes_strength

    known = list_methods()
    seen: dict[str, Line] = {}
    options = json.dumps(settings.options, sort_keys=True, default=str)
    inputs: set[Path] = set()
    for line in lines:
        if line.job is not None:
            inputs.update(p.resolve() for p in (line.image, line.mask) if p is not None)
    for line in lines:
        if line.job is None:
            continue
        job = line.job
        try:
            if job.method not in known:
                raise ValueError(f"unknown method {job.method!r}; known methods: {', '.join(known)}")
            cls = METHODS[job.method]
            if cls.reference:
                raise ValueError(f"{job.method} is a reference method: it needs the ground truth, so it only runs inside `retouch bench`")
            if job.strength is not None and not takes_strength(cls):
                raise ValueError(f"method {job.method!r} has no edit strength; only methods such as turbo take 'strength'")
            line.output = _check_output(line.output, settings.out)
            if line.output in seen:
                raise ValueError(f"output {line.output} is also written by {seen[line.output].where}: give each job its own 'output'")
            if (settings.out / line.output).resolve() in inputs:
                raise ValueError(f"output {settings.out / line.output} is an input of this batch: retouch never writes over its input")
            image = load_image(line.image, name=f"image {line.image}")
            if line.mask is not None:
                load_mask(line.mask, image.shape[:2], name=f"mask {line.mask}")
        except (ValueError, OSError) as e:
            line.fail(str(e))
            continue
        seen[line.output] = line
        spec = {
            "method": job.method,
            "options": options,
            "image": _digest(line.image),
            "mask": _digest(line.mask) if line.mask is not None else None,
            **{k: getattr(job, k) for k in ("instruction", "target_prompt", "source_prompt", "strength", "seed")},
        }
        line.key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def read_record(path: Path) -> dict | None:
    """The ``BatchRecord`` a batch output carries, None when the file has none; ``ValueError`` when it is
    not a whole, readable PNG."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = im.info.get("retouch")
            im.verify()  # the whole file, every chunk's CRC
        with Image.open(path) as im:
            im.load()
    except Exception as e:  # noqa: BLE001 -- Pillow raises many kinds for a broken file
        raise ValueError(f"{path} is not a readable PNG ({type(e).__name__}: {e})") from e
    if not text:
        return None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError:
        return None
    return rec if isinstance(rec, dict) and "job" in rec else None


def plan(lines: list[Line], settings: BatchSettings) -> list[Line]:
    """Mark finished outputs ``skipped``; the lines still to run."""
    pending = []
    for line in lines:
        if line.status != "pending":
            continue
        path = settings.out / line.output
        if path.exists():
            try:
                rec = read_record(path)
            except ValueError as e:
                line.fail(f"{e}; it was not written by retouch batch: move it away or choose another --out")
                continue
            if rec is None:
                line.fail(f"{path} exists and was not written by retouch batch: move it away or choose another --out")
                continue
            if rec["job"] == line.key and not settings.overwrite:
                line.status = "skipped"
                continue
            line.result["replaced"] = True  # an earlier batch's output for another job (or --overwrite)
        pending.append(line)
    return pending


# -- running ------------------------------------------------------------------------------------------
@dataclass
class Task:
    """What a worker needs for one job: the decoded inputs travel with it (no shared disk needed)."""

    number: int
    method: str
    image: np.ndarray
    mask: np.ndarray | None
    record: dict[str, Any]  # BatchRecord fields known before the edit
    instruction: str | None
    target_prompt: str | None
    source_prompt: str | None
    strength: float | None
    seed: int


@dataclass
class Outcome:
    number: int
    png: bytes | None = None
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def make_task(line: Line, settings: BatchSettings) -> Task:
    from .edit import load_image, load_mask

    job = line.job
    image = load_image(line.image, name=f"image {line.image}")
    mask = load_mask(line.mask, image.shape[:2], name=f"mask {line.mask}") if line.mask is not None else None
    record = {"method": job.method, "model": settings.options.get("model"), "image": job.image, "mask": job.mask, "job": line.key}
    return Task(line.number, job.method, image, mask, record, job.instruction, job.target_prompt, job.source_prompt, job.strength, job.seed)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class JobRunner:
    """Edits tasks with one ``Editor`` per method, each loaded the first time a task needs it.  The same
    class runs in the batch's own process and inside each Ray actor."""

    def __init__(self, options: dict[str, Any], threads: int | None = None) -> None:
        self.options = dict(options)
        self.editors: dict[str, Any] = {}
        self.load_errors: dict[str, str] = {}
        self.loads = 0
        if threads:
            import torch

            torch.set_num_threads(threads)

    def _editor(self, method: str):
        from .edit import Editor

        if method in self.load_errors:
            raise RuntimeError(self.load_errors[method])
        if method not in self.editors:
            t0 = time.perf_counter()
            try:
                self.editors[method] = Editor(method, **self.options)
            except Exception as e:  # noqa: BLE001 -- every job of this method fails with the same words
                self.load_errors[method] = f"could not load method {method!r}: {e}"
                raise RuntimeError(self.load_errors[method]) from e
            self.loads += 1
            logger.info("loaded %s in %.1f s", method, time.perf_counter() - t0)
        return self.editors[method]

    def run(self, task: Task) -> Outcome:
        from .edit import encode_png

        t0 = time.perf_counter()
        try:
            editor = self._editor(task.method)
            seed_everything(task.seed)
            settings = getattr(editor.method, "settings", None)
            if settings is not None and hasattr(settings, "seed"):
                settings.seed = task.seed  # methods that draw their own noise (ddpm) take the job's seed
            (turn,) = editor.edit(
                task.image,
                task.instruction,
                target_prompt=task.target_prompt,
                source_prompt=task.source_prompt,
                mask=task.mask,
                strength=task.strength,
            )
        except Exception as e:  # noqa: BLE001 -- a failing job fails alone, with its message
            logger.debug("job %d failed", task.number, exc_info=True)
            msg = str(e) if isinstance(e, ValueError | RuntimeError | OSError) else f"{type(e).__name__}: {e}"
            return Outcome(task.number, error=msg, info={"seconds": round(time.perf_counter() - t0, 4)})
        r = turn.result
        h, w = r.image.shape[:2]
        rec = BatchRecord(
            **task.record,
            instruction=task.instruction,
            source_caption=r.info.get("source_caption"),
            target_caption=r.info.get("target_caption"),
            strength=r.info.get("strength", task.strength),
            seed=task.seed,
            nfe_edit=r.nfe_edit,
            width=w,
            height=h,
        )
        info = {
            "source_caption": rec.source_caption,
            "target_caption": rec.target_caption,
            "nfe_inversion": r.nfe_inversion,
            "nfe_edit": r.nfe_edit,
            "seconds": round(time.perf_counter() - t0, 4),
        }
        return Outcome(task.number, png=encode_png(r.image, rec), info=info)

    def ping(self) -> int:
        return os.getpid()


def _local_outcomes(pending: list[Line], settings: BatchSettings, runner_box: list):
    runner = JobRunner(settings.options, settings.threads)
    runner_box.append(runner)
    for line in pending:
        try:
            task = make_task(line, settings)
        except (ValueError, OSError) as e:
            yield Outcome(line.number, error=str(e))
            continue
        yield runner.run(task)


def _ray_outcomes(pending: list[Line], settings: BatchSettings, meta: dict):
    """Outcomes as Ray actors finish them; each actor holds one ``JobRunner`` (one model load per method)."""
    address = connect_ray(settings.ray)
    import ray

    cpus = ray.cluster_resources().get("CPU", 0.0)
    fit = int(cpus // settings.cpus_per_worker)
    if fit < 1:
        ray.shutdown()
        raise RuntimeError(f"the Ray cluster at {address} has {cpus:g} CPUs; a worker needs {settings.cpus_per_worker:g}")
    if settings.ray_workers and settings.ray_workers > fit:
        logger.warning("--ray-workers %d: the cluster has room for %d workers", settings.ray_workers, fit)
    n = max(1, min(settings.ray_workers or fit, fit, len(pending)))
    threads = settings.threads or max(1, int(settings.cpus_per_worker))
    # a worker that dies (a node lost, out of memory) is started again once and its job retried once
    actor_cls = ray.remote(num_cpus=settings.cpus_per_worker, max_restarts=1, max_task_retries=1)(JobRunner)
    actors = [actor_cls.remote(settings.options, threads) for _ in range(n)]
    meta.update(ray=address, workers=n)
    logger.info("Ray at %s: %d workers of %g CPUs", address, n, settings.cpus_per_worker)
    queue = list(reversed(pending))
    inflight: dict[Any, tuple[Any, int]] = {}

    def submit(actor) -> list[Outcome]:
        """Hand ``actor`` the next job; jobs whose inputs can no longer be read fail on the way."""
        failed = []
        while queue:
            line = queue.pop()
            try:
                task = make_task(line, settings)
            except (ValueError, OSError) as e:
                failed.append(Outcome(line.number, error=str(e)))
                continue
            inflight[actor.run.remote(task)] = (actor, line.number)
            break
        return failed

    try:
        for a in actors:
            for _ in range(2):  # one running, one waiting: an actor never idles between jobs
                yield from submit(a)
        while inflight:
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            actor, number = inflight.pop(ref)
            try:
                outcome = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                outcome = Outcome(number, error=f"the Ray worker died: {str(e)[:500]}")
                if actor in actors:
                    actors.remove(actor)
            except ray.exceptions.RayError as e:
                outcome = Outcome(number, error=f"Ray: {str(e)[:500]}")
            yield outcome
            if actor in actors:
                yield from submit(actor)
        while queue:
            yield Outcome(queue.pop().number, error="no Ray worker is left")
    finally:
        for a in actors:
            ray.kill(a)
        ray.shutdown()


def connect_ray(address: str) -> str:
    """``ray.init`` on an existing cluster, or a clear error when none answers at ``address``."""
    loopback = False
    if address != "auto":
        host, sep, port = address.removeprefix("ray://").rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"--ray {address!r}: give HOST:PORT of a running Ray head (`ray start --head`), or 'auto'")
        host = host.strip("[]")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as e:
            raise ConnectionError(f"no Ray cluster answers at {address} ({e}); start one with `ray start --head`") from e
        loopback = host in ("127.0.0.1", "localhost", "::1")
        if loopback:
            # Ray turns a loopback address into the machine's network address, where a head started on
            # loopback (`ray start --head --node-ip-address 127.0.0.1` with this variable, docs/batch.md) does
            # not listen, and then waits for it for ever; the variable keeps loopback as loopback
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as e:
        raise RuntimeError("--ray needs the ray package: pip install 'retouch[ray]'") from e
    if loopback:
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # read when ray was imported, which may have been before the variable was set
    ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    return address


def run_batch(lines: list[Line], settings: BatchSettings, *, progress: bool | None = None) -> dict[str, Any]:
    """Check, plan and run ``lines``; write each output as it is done and the summary at the end."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    out = settings.out
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    check_lines(lines, settings)
    out.mkdir(parents=True, exist_ok=True)
    sweep_temps(out)
    pending = plan(lines, settings)
    by_number = {line.number: line for line in lines}
    meta: dict[str, Any] = {"ray": None, "workers": 1}
    runner_box: list[JobRunner] = []
    n_skipped = sum(line.status == "skipped" for line in lines)
    bar = tqdm(total=len(pending), desc="batch", unit="edit", disable=None if progress is None else not progress, mininterval=0.5)
    bar.set_postfix(skipped=n_skipped, failed=0)
    t_run = time.perf_counter()
    n_failed = 0
    try:
        if pending:
            outcomes = _ray_outcomes(pending, settings, meta) if settings.ray else _local_outcomes(pending, settings, runner_box)
            for o in outcomes:
                line = by_number[o.number]
                line.result.update(o.info)
                if o.error is not None:
                    line.fail(o.error)
                    n_failed += 1
                    logger.warning("%s: %s", line.where, o.error)
                else:
                    write_bytes(out / line.output, o.png)
                    line.status = "done"
                bar.update(1)
                bar.set_postfix(skipped=n_skipped, failed=n_failed)
    finally:
        bar.close()
        summary = _summary(lines, settings, meta, time.perf_counter() - t0, time.perf_counter() - t_run)
        if runner_box:
            summary["model_loads"] = runner_box[0].loads
        write_bytes(out / SUMMARY_NAME, (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode())
    return summary


def _summary(lines: list[Line], settings: BatchSettings, meta: dict, seconds: float, run_seconds: float) -> dict[str, Any]:
    counts = {s: sum(line.status == s for line in lines) for s in ("done", "skipped", "error", "pending")}
    entries = []
    for line in lines:
        e: dict[str, Any] = {"line": line.number, "where": line.where, "status": line.status}
        if line.output:
            e["output"] = line.output
        if line.error:
            e["error"] = line.error
        e.update(line.result)
        entries.append(e)
    return {
        "out": str(settings.out),
        "total": len(lines),
        **counts,
        "seconds": round(seconds, 3),
        "edits_per_s": round(counts["done"] / run_seconds, 3) if counts["done"] and run_seconds > 0 else None,
        **meta,
        "errors": [{"line": e["line"], "where": e["where"], "error": e["error"]} for e in entries if e["status"] == "error"],
        "lines": entries,
    }


# -- the command ------------------------------------------------------------------------------------
def parse_settings(items: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` method settings (``retouch bench --set``'s form): VALUE is JSON, else a plain string."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        if key == "seed":
            raise ValueError("give the seed with --seed (or a line's 'seed'), not --set seed=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def cli_main(a: Any) -> int:
    """``retouch batch``: 0 when every line is done or skipped, 1 when some failed (the summary says which)."""
    if (a.jobs is None) == (a.images is None):
        raise ValueError("give a JOBS.jsonl file or --images DIR (with --prompt or --instruction), not both or neither")
    if a.jobs is not None and (a.masks or a.prompt or a.instruction or a.source_prompt):
        raise ValueError("--masks, --prompt, --instruction and --source-prompt go with --images; a jobs file names them per line")
    if a.masks and a.images is None:
        raise ValueError("--masks pairs with --images")
    if a.ray_workers is not None and not a.ray:
        raise ValueError("--ray-workers goes with --ray ADDRESS")
    for name in ("threads", "ray_workers"):
        v = getattr(a, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    if not 0 <= a.seed <= MAX_SEED:
        raise ValueError(f"--seed must lie in [0, {MAX_SEED}], got {a.seed}")
    options = parse_settings(a.set)
    if a.model:
        options["model"] = a.model
    settings = BatchSettings(
        out=Path(a.out),
        method=a.method,
        options=options,
        seed=a.seed,
        strength=a.strength,
        threads=a.threads,
        overwrite=a.overwrite,
        ray=a.ray,
        ray_workers=a.ray_workers,
    )
    if a.jobs is not None:
        lines = read_jobs(a.jobs, settings)
    else:
        lines = folder_jobs(
            a.images, settings, masks=a.masks, instruction=a.instruction, target_prompt=a.prompt, source_prompt=a.source_prompt
        )
    if a.dry_run:
        check_lines(lines, settings)
        pending = plan(lines, settings) if settings.out.is_dir() else [line for line in lines if line.status == "pending"]
        for line in lines:
            if line.status == "error":
                print(f"{line.where}: error: {line.error}")
        n_err = sum(line.status == "error" for line in lines)
        n_skip = sum(line.status == "skipped" for line in lines)
        print(f"{len(lines)} lines: {len(pending)} to run, {n_skip} finished, {n_err} with errors (dry run: nothing was edited)")
        return 1 if n_err else 0
    s = run_batch(lines, settings)
    for e in s["errors"]:
        print(f"{e['where']}: error: {e['error']}")
    rate = f"; {s['edits_per_s']} edits/s" if s["edits_per_s"] else ""
    print(
        f"{s['total']} lines: {s['done']} done, {s['skipped']} skipped (finished before), {s['error']} failed{rate}; "
        f"summary in {settings.out / SUMMARY_NAME}"
    )
    return 1 if s["error"] or s["pending"] else 0
