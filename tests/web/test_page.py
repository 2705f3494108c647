"""The browser editor end to end: Debian's chromium (Playwright) against a real `retouch serve` on loopback.

One image is opened, a mask brushed, edited, re-rendered by the strength slider, edited again, undone and
downloaded; the test reads the page as a user would and the downloaded PNG as a program would (its pixels and
the record in its text chunks).  Screenshots: runs/test-artifacts/web/<test name>/.
"""

from __future__ import annotations

import base64
import random
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retouch.web.browser import EditorPage
from retouch.world import random_scene, render_pil

W, H = 200, 150  # not the model's 128 x 128, not square: the page and the server keep the image's own size
FIRST = "change the background to a starry night sky"
SECOND = "make it a sepia picture"


def scene_file(path: Path, size: tuple[int, int], seed: int = 3) -> np.ndarray:
    img = render_pil(random_scene(random.Random(seed)), 256).resize(size, Image.BICUBIC).convert("RGB")
    img.save(path)
    return np.asarray(img)


def test_upload_brush_edit_strength_undo_download(server, page, shots, tmp_path):
    src = scene_file(tmp_path / "scene.png", (W, H))
    ed = EditorPage(page)
    ed.goto(server)
    assert page.input_value("#method") == "turbo"  # the server's default method
    assert "server ok" in page.inner_text("#server-status")
    shots(page, "0-start")

    # open: the session (caption + inversion, once) at the image's own size
    ed.open(tmp_path / "scene.png")
    assert f"{W}×{H} px" in page.inner_text("#stage-info")
    assert page.evaluate("[document.getElementById('mask').width, document.getElementById('mask').height]") == [W, H]
    assert np.array_equal(ed.image("#img-before"), src)
    assert page.is_disabled("#undo") and page.is_disabled("#redo")

    # brush the lower half with a 40 px brush, erase a band through it, then check what the page will send
    ed.brush([(0.02, 0.6), (0.98, 0.6), (0.98, 0.75), (0.02, 0.75), (0.02, 0.9), (0.98, 0.9)], size=40)
    assert page.inner_text("#brush-size-out") == "40 px"
    ed.brush([(0.5, 0.4), (0.5, 1.0)], erase=True)
    mask = ed.mask()
    assert mask.shape == (H, W)
    assert mask[int(0.75 * H), int(0.2 * W)] and not mask[int(0.75 * H), W // 2] and not mask[: H // 3].any()
    assert 0.15 < mask.mean() < 0.6
    assert re.search(r"\d+\.\d% of the image", page.inner_text("#mask-state"))
    shots(page, "1-mask")

    # edit, recording what the progress line says while it runs
    page.evaluate(
        """() => {
        window.progressSeen = [];
        new MutationObserver(() => {
            const box = document.getElementById('progress-box');
            if (!box.hidden) window.progressSeen.push(document.getElementById('progress-text').textContent);
        }).observe(document.getElementById('progress-box'), {attributes: true, childList: true, subtree: true});
    }"""
    )
    ed.edit(FIRST)
    assert any(t.startswith("Editing…") for t in page.evaluate("window.progressSeen")), "a progress line while the edit ran"
    assert page.is_hidden("#progress-box")
    item = page.inner_text("#history li[data-index='1']")
    assert FIRST in item and "starry night sky" in item.split("\n")[-1] and "0+4 evaluations" in item
    assert page.is_enabled("#undo") and page.is_disabled("#redo")
    assert page.is_visible("#compare-box")
    edited1 = ed.image("#img-after")
    assert edited1.shape == src.shape
    assert np.array_equal(edited1[~mask], src[~mask]), "outside the brushed mask every pixel is the input's"
    assert np.abs(edited1[mask].astype(int) - src[mask]).mean() > 2, "inside the mask the picture changed"

    # the mask the server applied, previewed on the page, is the one brushed
    page.check("#auto-show")
    page.wait_for_selector("#auto-mask:not([hidden])")
    assert np.array_equal(ed.auto_mask(), mask)
    page.click("#mask-clear")
    assert not ed.mask().any() and "none" in page.inner_text("#mask-state")
    page.click("#auto-use")  # the applied mask back into the brush layer
    page.wait_for_function("document.querySelector('#auto-show').checked === false")
    assert np.array_equal(ed.mask(), mask)
    page.fill("#compare", "40")
    assert page.evaluate("getComputedStyle(document.getElementById('frame')).getPropertyValue('--split').trim()") == "40%"
    shots(page, "2-edited")

    # strength slider: re-renders turn 1 (no new turn) from the cached inversion
    ed.set_strength(0.5)
    assert ed.turns() == 2 and ed.current() == 1
    weaker = ed.image("#img-after")
    assert np.array_equal(weaker[~mask], src[~mask])
    assert not np.array_equal(weaker[mask], edited1[mask]), "another strength gives another picture"
    shots(page, "3-strength")

    # a second edit, then undo back to the strength-0.5 turn
    ed.edit(SECOND)
    assert ed.current() == 2
    ed.undo()
    assert ed.current() == 1 and "undone" in page.get_attribute("#history li[data-index='2']", "class")
    assert page.is_enabled("#redo")
    assert np.array_equal(ed.image("#img-after"), weaker)
    shots(page, "4-undo")

    # download: the server's PNG of the current turn, its record in the text chunks
    pixels, record = ed.download(tmp_path / "download.png")
    assert np.array_equal(pixels, weaker)
    assert record["method"] == "turbo" and record["instruction"] == FIRST
    assert record["strength"] == pytest.approx(0.5) and record["mask"] == "user"
    assert record["nfe_inversion"] == 0 and record["nfe_edit"] == 4 and record["inversion_reused"] is True
    assert "starry night sky" in record["target_caption"] and "starry night sky" not in record["source_caption"]
    assert (record["width"], record["height"]) == (W, H) and record["seconds"] > 0
    assert not page.page_errors, page.page_errors


def test_errors_are_words_and_large_images_fit(server, page, shots, tmp_path):
    ed = EditorPage(page)
    ed.goto(server)

    # not an image at all (the page says so), then bytes that claim to be a PNG (the server says so)
    (tmp_path / "notes.txt").write_text("hello")
    page.set_input_files("#file", str(tmp_path / "notes.txt"))
    page.wait_for_selector("#error:not([hidden])")
    assert "is not an image" in page.inner_text("#error")
    page.set_input_files("#file", files=[{"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\nnot really"}])
    page.wait_for_function("document.querySelector('#error').textContent.includes('image')")
    ed.idle()
    words = page.inner_text("#error")
    assert not re.search(r"\b[45]\d\d\b", words), f"an HTTP status code shown to the user: {words!r}"
    assert "Traceback" not in words and len(words.split()) >= 4
    assert page.is_visible("#drop")  # nothing was opened
    shots(page, "error-not-an-image")

    # a large, wide image, dropped on the page, opens at its own size and the picture fits the window
    big = (1000, 560)
    scene_file(tmp_path / "big.png", big, seed=5)
    drop = page.evaluate_handle(
        """(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'big.png', {type: 'image/png'}));
        return dt;
    }""",
        base64.b64encode((tmp_path / "big.png").read_bytes()).decode(),
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": drop})
    page.wait_for_selector("#history li[data-index='0'].current")
    ed.idle()
    assert page.is_hidden("#error")
    assert page.evaluate("[document.getElementById('mask').width, document.getElementById('mask').height]") == list(big)
    box = page.locator("#frame").bounding_box()
    assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= 1280 and box["y"] + box["height"] <= 900

    # an uploaded mask of half the size: stretched onto the image (the page says so), white = edit
    m = np.zeros((big[1] // 2, big[0] // 2), np.uint8)
    m[:, : big[0] // 4] = 255  # the left half
    Image.fromarray(m).save(tmp_path / "mask.png")
    page.set_input_files("#mask-file", str(tmp_path / "mask.png"))
    page.wait_for_selector("#error:not([hidden])")
    assert "stretched" in page.inner_text("#error")
    got = ed.mask()
    assert got[:, : big[0] // 2 - 2].all() and not got[:, big[0] // 2 + 2 :].any()
    page.click("#mask-clear")
    assert not ed.mask().any()

    # an instruction the rewriter cannot read: a sentence from the server, no turn added
    page.fill("#instruction", "paint a moustache on the moon")
    page.click("#edit-btn")
    page.wait_for_selector("#error:not([hidden])")
    ed.idle()
    words = page.inner_text("#error")
    assert not re.search(r"\b[45]\d\d\b", words) and len(words.split()) >= 4, words
    assert ed.turns() == 1
    shots(page, "error-instruction")
    # an empty instruction is caught on the page
    page.fill("#instruction", "  ")
    page.click("#edit-btn")
    assert "Type an instruction" in page.inner_text("#error")
    shots(page, "error-empty-instruction")
    assert not page.page_errors, page.page_errors
