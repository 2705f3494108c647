"""The hand-written paraphrase fixture: real scenes, described in words the caption templates never use."""

from __future__ import annotations

import json
import re
from pathlib import Path

from retouch.world import captions
from retouch.world.captions import detailed_caption
from retouch.world.scene import Scene

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "paraphrases.jsonl"


def _template_vocabulary() -> set[str]:
    words: set[str] = set()
    tables = (captions.STYLE_WORDS, captions.BACKGROUND_WORDS, captions.SIZE_WORDS, captions.PATTERN_WORDS, captions.EMBLEM_WORDS)
    for table in (*tables, captions.POSE_WORDS):
        for phrases in table.values():
            for p in phrases:
                words.update(re.findall(r"[a-z]+", p.lower()))
    for phrase in (*captions.STYLE_PHRASE.values(), *captions.BACKGROUND_PHRASE.values()):
        words.update(re.findall(r"[a-z]+", phrase))
    return words


def test_fixture_holds_at_least_50_scenes_in_new_words():
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    assert len(rows) >= 50
    vocab = _template_vocabulary()
    counts = set()
    for r in rows:
        scene = Scene.from_dict(r["scene"])
        counts.add(len(scene.objects))
        cap = r["caption"]
        assert cap != detailed_caption(scene)
        novel = set(re.findall(r"[a-z]+", cap.lower())) - vocab
        # at least the style or background and one object attribute are in words no template has
        assert len(novel) >= 3, (cap, novel)
        assert "emblem" not in cap  # the templates' own word for what these call a symbol, a crescent, a teardrop...
    assert counts == {1, 2, 3, 4}
