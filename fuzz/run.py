"""Run one fuzz target with atheris (libFuzzer options pass through).

    python fuzz/run.py TARGET -runs=N [-max_len=65536] [-timeout=10]
    # TARGET: image, mask, pie, rle, recipe, serve-form, serve-json (the last two where src/retouch/serve exists)
    python fuzz/run.py TARGET --replay                                   # every corpus file once, no fuzzing

The corpus is fuzz/corpus/TARGET/ (seeds and reproducers, checked in); new inputs the fuzzer finds go
to fuzz/work/TARGET/ (not checked in), and any crash reproducer to fuzz/corpus/TARGET/crash-*.  A crash reproducer replays with
``python fuzz/run.py TARGET --replay``, which prints the exception of each file that fails.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__)
        return 2
    name, rest = argv[1], argv[2:]
    replay = "--replay" in rest
    import contextlib

    import numpy  # noqa: F401  (imported before instrumentation: C extensions gain nothing from it)

    if replay:
        instrumented = contextlib.nullcontext()
    else:
        import atheris

        # coverage feedback from retouch's own code, Pillow's Python decoders and the multipart parser
        instrumented = atheris.instrument_imports(include=["retouch", "PIL", "fuzz", "multipart", "starlette"])
    with instrumented:
        from PIL import Image

        import retouch.edit  # noqa: F401
        import retouch.train  # noqa: F401
        import retouch.world.suite  # noqa: F401
        from fuzz import targets

        Image.init()  # every Pillow decoder plugin
    # the training tasks (torch, diffusers) load on the first recipe; loaded here, their import is no "hang"
    retouch.train._load_tasks()
    if name not in targets.TARGETS:
        print(f"unknown target {name!r}; known: {', '.join(targets.TARGETS)}", file=sys.stderr)
        return 2
    targets.quiet()
    corpus = targets.corpus_dir(name)
    if replay:
        bad = 0
        files = sorted(p for p in corpus.rglob("*") if p.is_file())
        for p in files:
            try:
                targets.run_one(name, p.read_bytes())
            except Exception as e:  # report every failing file, then fail
                bad += 1
                print(f"{p}: {type(e).__name__}: {e}")
        print(f"{name}: replayed {len(files)} files, {bad} failed")
        return 1 if bad else 0
    corpus.mkdir(parents=True, exist_ok=True)
    # new inputs go to fuzz/work/TARGET (not kept in git); the checked-in seeds and reproducers are read too
    work = Path(__file__).resolve().parent / "work" / name
    work.mkdir(parents=True, exist_ok=True)
    args = [argv[0], *rest, f"-artifact_prefix={corpus}/crash-", str(work), str(corpus)]
    if not any(a.startswith("-max_len") for a in rest):
        args.insert(1, "-max_len=65536")

    def one(data: bytes) -> None:
        targets.run_one(name, data)

    atheris.Setup(args, one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
