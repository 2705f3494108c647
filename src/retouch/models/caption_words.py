"""Words the caption reader never saw, put in the words it knows, before it reads a caption.

The caption reader (``caption_reader.py``) is a head trained on the captions of one generator
(``world/rich_captions.py``); a word that generator never writes ("navy", "tiny", "lower right", "rotated
clockwise", "brickwork") reaches the head only as MiniLM states it learnt nothing about, and the head reads it
badly (colour 15.5% on the 52 hand-written paraphrases). The instruction reader's lexicon (``world/lexicon.py``)
knows hundreds of everyday words for the world's values. ``CaptionWords`` joins the two: a phrase the lexicon
reads as a value (colour, shape, size, pattern, emblem, pose, background, style) or as a row ("upper", "lower")
*and* that holds a word outside the head's training vocabulary is rewritten as the world's own word for that
value, in place (case, punctuation and brackets kept); everything else is left as written, so the head still reads
the sentence's structure (places, relatives, order, negations) itself, and a caption made only of words it knows
(every detailed caption) passes unchanged.

The head's vocabulary (``vocabulary.txt`` in the reader's folder, written by
``train.caption_reader.write_vocabulary``) holds every word of its training captions that occurs at least 3 times
(the generator's random typos are not words) and every phrase of several words of the lexicon that occurs in them
as a phrase: "the right way up" is new to the head although each of its words is not.

    words = CaptionWords.from_folder("models/caption-reader")
    words("a huge navy disc in the lower right, rotated clockwise")
    # -> 'a large blue circle in the bottom right, tilted right'

A caption the lexicon cannot help with is passed on unchanged, and the reader refuses it as before.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

VOCABULARY_FILE = "vocabulary.txt"

# the world's own words for each value: what the head read most often in training
CANONICAL: dict[str, dict[str, str]] = {
    "COLOR": {c: c for c in ("blue", "purple", "red", "green", "orange", "yellow")},
    "SIZE": {s: s for s in ("small", "medium", "large")},
    "PATTERN": {p: p for p in ("solid", "striped", "dotted", "checkered")},
    "EMBLEM": {"arrow": "arrow", "moon": "moon", "bolt": "lightning bolt", "drop": "drop", "smile": "smile"},
    "POSE": {p: p for p in ("upright", "tilted left", "tilted right", "upside down")},
    "BG": {
        "plain": "plain white background",
        "sky": "blue sky with clouds",
        "grass": "grassy field",
        "night": "starry night sky",
        "brick": "brick wall",
        "sand": "sandy desert",
    },
    "STYLE": {
        "flat": "flat illustration",
        "sketch": "pencil sketch",
        "pixel": "pixel art",
        "watercolor": "watercolor painting",
        "grayscale": "grayscale",
        "sepia": "sepia",
    },
    "ROW0": {None: "top"},
    "ROW1": {None: "bottom"},
}
SHAPE_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars", "heart": "hearts", "cross": "crosses"}
# words that turn a following direction into a pose ("tipped clockwise", "rotated counter clockwise"): rewritten
# with it, so "tipped clockwise" becomes "tilted right", not "tipped tilted right"
TURN_WORDS = frozenset(
    {"tilted", "tipped", "tilting", "tipping", "leaning", "leans", "slanted", "slanting", "rotated", "turned", "spun", "canted"}
)
# a pattern named as a noun ("with bands", "covered in speckles"): the world's noun for it
PATTERN_NOUN = {"striped": "stripes", "dotted": "dots", "checkered": "checks", "solid": "solid color"}
NOUN_BEFORE = frozenset({"with", "in", "of", "has", "have", "having", "showing", "bearing", "carrying", "covered"})
# pattern nouns that also name other things ("pencil lines", "clean lines"): a pattern only after one of
# NOUN_BEFORE or at the start of a clause ("fill: lines", "striped? no, lines")
LOOSE_PATTERN_NOUNS = frozenset({"lines", "line"})
# "clockwise from the top left", "counter clockwise starting at ...": an order of places, not a pose
ORDER_AFTER = frozenset({"from", "starting", "order", "round", "around"})
# directions after a turn word: "askew to the left" -> tilted left (the lexicon's own rule in ``reading._tilt_directions``)
SIDES = {"left": "tilted left", "right": "tilted right"}


@dataclass(frozen=True)
class Rewrite:
    """One rewritten phrase: the caption's words ``start:end`` (of ``reading.normalise``'s words) -> ``text``."""

    start: int
    end: int
    said: str
    text: str


class CaptionWords:
    """``words(caption) -> caption`` in the head's words (see the module doc); ``rewrites(caption)`` says what changed."""

    def __init__(self, known: frozenset[str] | set[str]) -> None:
        self.known = frozenset(known)

    @classmethod
    def from_folder(cls, folder: str | Path) -> CaptionWords | None:
        """The caption reader folder's vocabulary, or None when it has none (an older reader: no rewriting)."""
        path = Path(folder) / VOCABULARY_FILE
        if not path.is_file():
            return None
        return cls(_read_vocabulary(str(path.resolve())))

    def save(self, folder: str | Path) -> Path:
        """The vocabulary into ``folder/vocabulary.txt``, one word or phrase a line."""
        from ..atomic import write_text

        return write_text(Path(folder) / VOCABULARY_FILE, "\n".join(sorted(self.known)) + "\n")

    def _new(self, words: list[str]) -> bool:
        """A word the head never learnt, or a phrase of several words it never read together ("the right way up":
        every word known, the phrase not)."""
        if len(words) > 1 and " ".join(words) not in self.known:
            return True
        return any(w not in self.known and re.fullmatch(r"[a-z]+", w) for w in words)

    def _new_words(self, words: list[str]) -> bool:
        return any(w not in self.known and re.fullmatch(r"[a-z]+", w) for w in words)

    def rewrites(self, caption: str) -> list[Rewrite]:
        from ..world.lexicon import LEXICON, MAX_PHRASE, TILT_WORDS
        from ..world.reading import normalise

        words = normalise(caption).split()
        spans: list[tuple[int, int, str, object]] = []
        i = 0
        while i < len(words):  # longest phrase first, as the instruction reader's tokenizer
            for n in range(min(MAX_PHRASE, len(words) - i), 0, -1):
                entry = LEXICON.get(tuple(words[i : i + n]))
                if entry is not None:
                    spans.append((i, i + n, *entry))
                    i += n
                    break
            else:
                spans.append((i, i + 1, "UNK", words[i]))
                i += 1
        tilt = {tuple(w.split()) for w in TILT_WORDS} | {(w,) for w in TURN_WORDS}
        out: list[Rewrite] = []
        k = 0
        while k < len(spans):
            a, b, cat, val = spans[k]
            said = words[a:b]
            # "askew to the left", "tipped over to the right": a turn word, then a side
            if tuple(said) in tilt or (cat == "TILT"):
                j, side = k + 1, None
                while j < len(spans) and j <= k + 3:
                    t = words[spans[j][0] : spans[j][1]]
                    if spans[j][2] in ("COL0", "COL1"):
                        side = SIDES["left" if spans[j][2] == "COL0" else "right"]
                        break
                    if t not in (["to"], ["the"], ["over"], ["a", "bit"], ["slightly"]):
                        break
                    j += 1
                if side is not None and self._new_words(words[a : spans[j][1]]):
                    out.append(Rewrite(a, spans[j][1], " ".join(words[a : spans[j][1]]), side))
                    k = j + 1
                    continue
                if k + 1 < len(spans) and spans[k + 1][2] == "POSE" and self._new(words[spans[k + 1][0] : spans[k + 1][1]]):
                    # "rotated clockwise": the turn word goes with the pose
                    c = spans[k + 1]
                    out.append(Rewrite(a, c[1], " ".join(words[a : c[1]]), CANONICAL["POSE"][c[3]]))
                    k += 2
                    continue
            text = None
            before_word = words[a - 1] if a > 0 else ","
            if cat == "PATTERN" and " ".join(said) in LOOSE_PATTERN_NOUNS and before_word not in NOUN_BEFORE | {",", ":", ";", "(", "."}:
                k += 1
                continue
            if cat == "POSE" and b < len(words) and words[b] in ORDER_AFTER:
                k += 1
                continue
            if cat == "SHAPE" and self._new(said):
                shape, plural = val
                text = SHAPE_PLURAL[shape] if plural else shape
            elif cat in CANONICAL and self._new(said):
                table = CANONICAL[cat]
                text = table.get(val) if cat not in ("ROW0", "ROW1") else table[None]
                if cat == "PATTERN" and before_word in NOUN_BEFORE:
                    text = PATTERN_NOUN[val]
                if cat in ("BG", "STYLE"):
                    # "desert dunes", "old-fashioned sepia photograph": the value is already said beside it
                    # (the neighbour before has been kept or rewritten already; the one after is kept when known)
                    before = spans[k - 1] if k else None
                    after = spans[k + 1] if k + 1 < len(spans) else None
                    if (before and before[2:] == (cat, val)) or (
                        after and after[2:] == (cat, val) and not self._new(words[after[0] : after[1]])
                    ):
                        text = ""
            if text is not None and text != " ".join(said):
                out.append(Rewrite(a, b, " ".join(said), text))
            k += 1
        return out

    def __call__(self, caption: str) -> str:
        rewrites = self.rewrites(caption)
        if not rewrites:
            return caption
        spliced = _splice(caption, rewrites)
        return spliced if spliced is not None else self._rebuilt(caption, rewrites)

    @staticmethod
    def _rebuilt(caption: str, rewrites: list[Rewrite]) -> str:
        """The caption rebuilt from ``reading.normalise``'s words (lower case, punctuation spaced, brackets gone):
        only when a rewritten phrase cannot be found in the caption as written."""
        from ..world.reading import normalise

        words = normalise(caption).split()
        parts: list[str] = []
        i = 0
        for r in rewrites:
            parts += words[i : r.start]
            if r.text:
                if parts and parts[-1] in ("a", "an"):  # "a amber" -> "an orange", "an enormous" -> "a large"
                    parts[-1] = "an" if r.text[0] in "aeiou" else "a"
                parts.append(r.text)
            i = r.end
        parts += words[i:]
        return re.sub(r" ([,;.!?:])", r"\1", " ".join(parts))


# spellings ``reading.normalise`` unifies, matched back in the caption as written
_SPELLINGS = (("color", "colou?r"), ("gray", "gr[ae]y"), ("checkered", "che(?:ck|qu)ered"), ("center", "cent(?:er|re)"))


def _phrase_pattern(said: str) -> re.Pattern:
    parts = []
    for w in said.split():
        alt = re.escape(w)
        for a, b in _SPELLINGS:
            alt = alt.replace(a, b)
        parts.append(alt)
    return re.compile(r"(?<![A-Za-z0-9])" + r"[\s\-_/]+".join(parts) + r"(?![A-Za-z0-9])", re.IGNORECASE)


def _splice(caption: str, rewrites: list[Rewrite]) -> str | None:
    """The caption as written with each rewritten phrase replaced in place (case, punctuation and brackets kept),
    or None when a phrase is not found in order."""
    out, pos = [], 0
    for r in rewrites:
        m = _phrase_pattern(r.said).search(caption, pos)
        if m is None:
            return None
        head = caption[pos : m.start()]
        if r.text:
            art = re.search(r"(?<![A-Za-z])(an?)(\s+)$", head, re.IGNORECASE)
            if art:  # "a amber" -> "an orange", "an enormous" -> "a large"
                want = "an" if r.text[0] in "aeiou" else "a"
                if art.group(1)[0].isupper():
                    want = want.capitalize()
                head = head[: art.start(1)] + want + art.group(2)
            text = r.text[0].upper() + r.text[1:] if m.group(0)[0].isupper() else r.text
            out += [head, text]
            pos = m.end()
        else:  # the value is said beside it: the phrase goes, with the space before it (after it, at the start)
            out.append(head.rstrip())
            pos = m.end()
            if not "".join(out).strip():
                pos += len(caption[pos:]) - len(caption[pos:].lstrip())
    out.append(caption[pos:])
    return re.sub(r"  +", " ", "".join(out))


@functools.lru_cache(maxsize=4)
def _read_vocabulary(path: str) -> frozenset[str]:
    return frozenset(line.strip() for line in Path(path).read_text().splitlines() if line.strip())


__all__ = ["CANONICAL", "VOCABULARY_FILE", "CaptionWords", "Rewrite"]
