"""Atomic writes: every file retouch writes goes to a temporary file beside it and is renamed into place.

A rename within one folder is atomic on POSIX, so a process killed at any moment (``kill -9``,
out of memory, a power cut after ``fsync``) leaves either the old file or the new one under the real
name, never a torn one.  A kill can leave a temporary file behind; its name is
``.<name>.<random>.retouch-tmp``, and :func:`sweep_temps` (called when a suite, a report or a
training run starts writing into a folder) removes such leftovers.

    from retouch.atomic import atomic_write, write_text, save_image
    write_text(path, text)
    with atomic_write(path, "wb") as f: ...
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

TMP_SUFFIX = ".retouch-tmp"


def is_temp(path: str | Path) -> bool:
    """Whether ``path`` is one of this module's temporary files (or folders)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


_FILE_MODE = 0o666 & ~_umask()  # what open() would have given the file (mkstemp gives 0600)


def _tmp_path(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
    finally:
        os.close(fd)
    return Path(name)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to (by any library); renamed onto ``path`` when
    the block ends without an exception, removed otherwise."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file: cannot write it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)  # a library may have recreated the file (safetensors does, as 0600)
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", fsync: bool = True, **open_kw: Any) -> Iterator[IO]:
    """``open(path, mode)`` whose content appears under ``path`` only once the block has finished."""
    if "w" not in mode:
        raise ValueError(f"atomic_write writes new files; mode {mode!r} has no 'w'")
    if "b" not in mode:
        open_kw.setdefault("encoding", "utf-8")
    with atomic_path(path, fsync=False) as tmp, open(tmp, mode, **open_kw) as f:
        yield f
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def write_text(path: str | Path, text: str, fsync: bool = True) -> Path:
    with atomic_write(path, "w", fsync=fsync) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    with atomic_write(path, "wb", fsync=fsync) as f:
        f.write(data)
    return Path(path)


def write_json(path: str | Path, obj: Any, indent: int | None = 2, fsync: bool = True) -> Path:
    return write_text(path, json.dumps(obj, indent=indent) + ("\n" if indent is not None else ""), fsync=fsync)


def save_image(image: Any, path: str | Path, fsync: bool = True, **save_kw: Any) -> Path:
    """A PIL image or an HxWx3 / HxW uint8 array, saved in the format its suffix names."""
    from PIL import Image

    path = Path(path)
    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image format {path.suffix!r}")
    with atomic_path(path, fsync=fsync) as tmp:
        img.save(tmp, format=fmt, **save_kw)
    return path


def save_safetensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


def torch_save(obj: Any, path: str | Path) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """A temporary folder to save a model into (``save_pretrained`` and kin); when the block ends each of
    its files is renamed onto the same relative path under ``folder`` (each file whole; files that only
    the old content had stay).  Removed on an exception."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=TMP_SUFFIX, dir=folder.parent))
    try:
        yield tmp
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        for p in files:
            with open(p, "rb+") as f:
                os.fsync(f.fileno())
        for p in files:
            dest = folder / p.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
        _fsync_dir(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sweep_temps(folder: str | Path, recursive: bool = True, names: list[str] | None = None) -> int:
    """Remove the temporary files and folders an interrupted write left in ``folder`` (and, with
    ``recursive``, below it; the folder's own parent is swept for temporary copies of it too).
    ``names``: only the temporaries of these file names (for a folder other runs share).
    Returns how many were removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    if names is not None:
        found = [p for n in names for p in folder.glob(f".{n}.*{TMP_SUFFIX}")]
    else:
        found = list(folder.rglob(f".*{TMP_SUFFIX}") if recursive else folder.glob(f".*{TMP_SUFFIX}"))
        found += list(folder.parent.glob(f".{folder.name}.*{TMP_SUFFIX}"))
    n = 0
    for p in found:
        if not is_temp(p):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    if n:
        logger.info("removed %d temporary files an interrupted run left in %s", n, folder)
    return n
