"""Fuzz targets: the decoders people feed retouch.

Each target takes the fuzzer's bytes and must either return or raise one of its ``ALLOWED`` exception
types (the documented errors: ``ValueError`` and ``OSError`` subclasses such as ``FileNotFoundError``,
which the CLI turns into exit status 2 and the server into a 4xx).  Anything else -- a ``KeyError``,
an ``IndexError``, a hang, a crash of a C decoder -- is a bug the fuzzer reports.

    python fuzz/run.py image -runs=1000000      # see fuzz/run.py and docs/reliability.md
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

ALLOWED: tuple[type[BaseException], ...] = (ValueError, OSError)
# a memory-backed folder where there is one: the pie and recipe targets write a file per input
_TMP = Path(tempfile.mkdtemp(prefix="retouch-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))


def image(data: bytes) -> None:
    """An image file's bytes -> ``retouch.edit.load_image`` (EXIF, modes, sizes, every Pillow decoder)."""
    from retouch.edit import load_image

    arr = load_image(data, name="fuzz")
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, arr.shape


def mask(data: bytes) -> None:
    """A mask file's bytes -> ``retouch.edit.load_mask`` against a 16x16 image, in either orientation."""
    from retouch.edit import load_mask

    size = (16, 16) if len(data) % 2 else (16, 24)
    m = load_mask(data, size, name="fuzz")
    assert m.dtype == bool and m.shape == size and m.any()


def _suite_dir() -> Path:
    folder = _TMP / "suite"
    if not folder.is_dir():
        from PIL import Image

        img = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
        for rel in ("annotation_images/0_random_140/a.png", "annotation_images/a.png", "target_images/a.png", "a.png"):
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            img.save(folder / rel)
    return folder


def pie(data: bytes) -> None:
    """A ``mapping_file.json``'s bytes -> ``load_suite`` (every case checked) -> each case's mask decoded."""
    from retouch.world.suite import MAPPING, load_suite

    folder = _suite_dir()
    (folder / MAPPING).write_bytes(data)
    for case in load_suite(folder):
        m = case.mask((16, 16))
        assert m.shape == (16, 16)
        case.mask((16, 16), border=False)
        _ = case.source_prompt, case.target_prompt


def rle(data: bytes) -> None:
    """Any list of JSON numbers -> ``rle_decode`` on a small image."""
    from retouch.world.suite import rle_decode

    try:
        encoded = json.loads(data)
    except (ValueError, RecursionError):
        return  # not JSON: the pie target covers that path
    h = 1 + len(data) % 7
    m = rle_decode(encoded, (h, 5), border=bool(len(data) % 2))
    assert m.shape == (h, 5)


def recipe(data: bytes) -> None:
    """A recipe file's bytes -> ``retouch.train.load_recipe`` (JSON, task, unknown keys, types)."""
    from retouch.train import load_recipe

    p = _TMP / "recipe.json"
    p.write_bytes(data)
    load_recipe(p)


TARGETS: dict[str, Callable[[bytes], None]] = {"image": image, "mask": mask, "pie": pie, "rle": rle, "recipe": recipe}

try:  # the HTTP service's request parsers, where that package exists
    from fuzz import serve_targets

    TARGETS |= serve_targets.TARGETS
except ImportError:
    pass


def run_one(name: str, data: bytes) -> None:
    """One input through one target; only the documented exception types may leave it."""
    allowed = ALLOWED
    if name.startswith("serve-"):
        allowed = serve_targets.ALLOWED
    try:
        TARGETS[name](data)
    except allowed:
        pass


def corpus_dir(name: str) -> Path:
    return Path(__file__).resolve().parent / "corpus" / name


def quiet() -> None:
    import logging
    import warnings

    logging.disable(logging.WARNING)  # broken EXIF / ICC warnings would flood the output
    warnings.simplefilter("ignore")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
