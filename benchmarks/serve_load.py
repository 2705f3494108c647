"""The numbers of docs/serve.md: what a session's edits cost, and one server under 16 concurrent clients.

    python benchmarks/serve_load.py --clients 16 --seconds 60 --json runs/serve_load.json

Starts `retouch serve --preload` on a free loopback port in a subprocess (the shipped Shapes models,
turbo), then
1. cost: for a few fresh images, a one-shot `POST /v1/edit` (inversion + edit), then `POST /v1/sessions`
   (the inversion, once) and two `POST /v1/sessions/{id}/edits`: seconds and network evaluations of each;
2. load: N client threads for S seconds, each looping over a one-shot edit, an edit of its own session,
   and `GET /healthz`; a client answered 429 waits what its Retry-After says (or --retry-wait seconds).
   It counts every status code, checks that each 429 carries Retry-After, samples the server's resident
   memory every 0.2 s, and reports latency percentiles of the answered requests.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scene_png(seed: int) -> bytes:
    from retouch.world import random_scene, render_pil

    buf = io.BytesIO()
    render_pil(random_scene(random.Random(seed)), 128).save(buf, format="PNG")
    return buf.getvalue()


def target_for(seed: int) -> dict:
    """A target caption that differs from the scene's own: the edit never fails for being empty."""
    return {"target_prompt": f"a sepia picture of a large red solid star on a white background, variant {seed}"}


class RSS:
    """Peak resident memory of a process and its children, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.proc, self.every, self.peak, self.samples = psutil.Process(pid), every, 0, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss + sum(c.memory_info().rss for c in self.proc.children(recursive=True))
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples.append((time.time(), rss))
            time.sleep(self.every)

    def start(self) -> RSS:
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def measure_cost(c: httpx.Client, n: int, seed0: int) -> dict:
    rows = []
    for k in range(n):
        seed = seed0 + k
        img = scene_png(seed)
        files = {"image": ("in.png", img, "image/png")}
        t0 = time.perf_counter()
        one = c.post("/v1/edit", files=files, data=target_for(seed))
        one.raise_for_status()
        rec_one = json.loads(one.headers["x-retouch-record"])
        wall_one = time.perf_counter() - t0
        # a session on another fresh image (the one-shot edit left this one's inversion in turbo's cache)
        img2 = scene_png(seed + 10_000)
        t0 = time.perf_counter()
        s = c.post("/v1/sessions", files={"image": ("in.png", img2, "image/png")})
        s.raise_for_status()
        wall_prep = time.perf_counter() - t0
        sid = s.json()["id"]
        edits = []
        for j in range(2):
            t0 = time.perf_counter()
            r = c.post(f"/v1/sessions/{sid}/edits", data=target_for(seed * 10 + j))
            r.raise_for_status()
            edits.append((r.json()["turns"][-1]["record"], time.perf_counter() - t0))
        c.delete(f"/v1/sessions/{sid}")
        rows.append(
            {
                "one_shot": {"nfe": rec_one["nfe_inversion"] + rec_one["nfe_edit"], "seconds": rec_one["seconds"], "wall": wall_one},
                "session_prepare": {"nfe": s.json()["prepare"]["nfe"], "seconds": s.json()["prepare"]["seconds"], "wall": wall_prep},
                "session_edit_1": {
                    "nfe": edits[0][0]["nfe_inversion"] + edits[0][0]["nfe_edit"],
                    "seconds": edits[0][0]["seconds"],
                    "wall": edits[0][1],
                },
                "session_edit_2": {
                    "nfe": edits[1][0]["nfe_inversion"] + edits[1][0]["nfe_edit"],
                    "seconds": edits[1][0]["seconds"],
                    "wall": edits[1][1],
                },
            }
        )
    out = {}
    for key in rows[0]:
        out[key] = {
            "nfe": sorted({r[key]["nfe"] for r in rows}),
            "seconds_median": round(statistics.median(r[key]["seconds"] for r in rows), 4),
            "wall_median": round(statistics.median(r[key]["wall"] for r in rows), 4),
        }
    out["n"] = n
    return out


def load(url: str, clients: int, seconds: float, seed0: int, retry_wait: float | None = None) -> dict:
    codes: Counter = Counter()
    by_route: dict[str, Counter] = {}
    latencies: dict[str, list[float]] = {}
    missing_retry_after = 0
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.time() + seconds

    def note(route: str, status: int, dt: float, resp: httpx.Response | None) -> None:
        nonlocal missing_retry_after
        with lock:
            codes[status] += 1
            by_route.setdefault(route, Counter())[status] += 1
            if status < 400:
                latencies.setdefault(route, []).append(dt)
            if status == 429 and resp is not None and "retry-after" not in resp.headers:
                missing_retry_after += 1
            if status >= 500 and resp is not None:
                errors.append(f"{route} {status}: {resp.text[:200]}")

    def client(k: int) -> None:
        rng = random.Random(seed0 + k)
        img = scene_png(seed0 + k)
        with httpx.Client(base_url=url, timeout=300) as c:
            sid, edited = None, False
            while time.time() < deadline:
                choice = rng.random()
                t0 = time.perf_counter()
                try:
                    if choice < 0.5:
                        route = "POST /v1/edit"
                        r = c.post("/v1/edit", files={"image": ("in.png", img, "image/png")}, data=target_for(rng.randrange(10**6)))
                    elif choice < 0.9:
                        if sid is None:
                            route = "POST /v1/sessions"
                            r = c.post("/v1/sessions", files={"image": ("in.png", img, "image/png")})
                            if r.status_code == 201:
                                sid, edited = r.json()["id"], False
                        else:
                            route = "POST /v1/sessions/{id}/edits"
                            slider = edited and rng.random() < 0.5  # the strength slider: re-render the current turn
                            data = (
                                {"replace": "true", "strength": f"{rng.uniform(0.2, 1.2):.2f}"}
                                if slider
                                else target_for(rng.randrange(10**6))
                            )
                            r = c.post(f"/v1/sessions/{sid}/edits", data=data)
                            if r.status_code == 200:
                                edited = True
                            elif r.status_code == 404:  # evicted (LRU): open a new one next time
                                sid, edited = None, False
                    else:
                        route = "GET /healthz"
                        r = c.get("/healthz")
                except httpx.HTTPError as e:
                    note(route, 599, 0.0, None)
                    with lock:
                        errors.append(f"{route}: {type(e).__name__}: {e}")
                    continue
                note(route, r.status_code, time.perf_counter() - t0, r)
                if r.status_code == 429:  # a polite client: wait as long as the server says
                    time.sleep(float(r.headers.get("retry-after", 1)) if retry_wait is None else retry_wait)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3) if xs else float("nan")

    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": sum(codes.values()),
        "status": {str(k): v for k, v in sorted(codes.items())},
        "by_route": {r: {str(k): v for k, v in sorted(c.items())} for r, c in by_route.items()},
        "5xx": sum(v for k, v in codes.items() if k >= 500),
        "429_without_retry_after": missing_retry_after,
        "latency_s": {r: {"p50": pct(x, 0.5), "p95": pct(x, 0.95), "n": len(x)} for r, x in latencies.items()},
        "edits_per_s": round(
            sum(by_route.get(r, Counter()).get(200, 0) for r in ("POST /v1/edit", "POST /v1/sessions/{id}/edits")) / elapsed, 2
        ),
        "errors": errors[:10],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--cost-images", type=int, default=5, help="fresh images for the cost measurement")
    ap.add_argument("--max-concurrent", type=int, default=4)
    ap.add_argument("--max-sessions", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="OMP/torch threads of the server")
    ap.add_argument("--retry-wait", type=float, default=None, help="seconds a client waits after a 429 (default: its Retry-After)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    cmd = [
        sys.executable, "-m", "retouch.cli", "serve", "--port", str(port), "--preload",
        "--max-concurrent", str(a.max_concurrent), "--max-sessions", str(a.max_sessions),
    ]  # fmt: skip
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    rss = RSS(server.pid).start()
    try:
        t0 = time.time()
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() - t0 > 300:
                raise SystemExit(f"the server did not start: {server.stderr.read() if server.stderr else ''}")
            time.sleep(0.2)
        startup = time.time() - t0
        idle_rss = rss.peak
        with httpx.Client(base_url=url, timeout=300) as c:
            cost = measure_cost(c, a.cost_images, a.seed)
        after_cost_rss = rss.peak
        t_load = time.time()
        result = load(url, a.clients, a.seconds, a.seed + 1000, a.retry_wait)
        t_end = time.time()
        health = httpx.get(f"{url}/healthz").json()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        rss.stop()
    mib = 1024 * 1024
    summary = {
        "command": " ".join(["python", "benchmarks/serve_load.py", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end",
        "startup_s": round(startup, 1),
        "cost": cost,
        "load": result,
        "rss_mib": {"after_start": round(idle_rss / mib), "after_cost": round(after_cost_rss / mib), "peak": round(rss.peak / mib)},
        # resident memory through the load phase, at each fifth of it: bounded if it levels off
        "rss_mib_during_load": [
            round(max((r for t, r in rss.samples if t <= t_load + f * (t_end - t_load)), default=0) / mib)
            for f in (0.2, 0.4, 0.6, 0.8, 1.0)
        ],
        "sessions_at_end": health["sessions"],
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text + "\n")
    return 1 if result["5xx"] else 0


if __name__ == "__main__":
    sys.exit(main())
