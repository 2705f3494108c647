"""The structured instruction reader: a Shapes-world scene and an instruction in everyday words -> the
target scene, or a refusal that says why.

How it reads (no templates):

1. ``tokenize``: the words are matched, longest phrase first, against the lexicon (``lexicon.py``):
   values (shapes, colours, sizes, patterns, emblems, poses, backgrounds, styles and their synonyms),
   places ("top left", "on the right", "the lower one"), determiners, verbs of each kind of edit,
   and the small words that give roles ("into", "instead of", "with", "should be", "no").
2. The instruction is cut into clauses at commas, "and", "then", ... ; each clause is read into a
   frame: its verb, the noun phrases that name existing objects (references), the values it asks
   for, places for new objects, and what it says about background and style.
3. Frames that carry only values ("..., and striped") or only a place join the clause before them;
   a clause that only names an object ("the cross with the smiley: make it green") is the topic of
   the next one; one that only names an object after an edit repeats that edit ("remove the red
   circle and the triangle").
4. References resolve against the source scene: colour, shape, size, pattern, emblem, pose, place
   ("top left", "the upper one"), relative size ("the bigger star", "the small one" among two), plurals
   and "all / both / every"; "it" is the topic or the only object.  An ambiguous reference raises
   ``ReadingError`` naming the candidates ("2 objects match 'the star': the red one at the top left,
   the blue one at the bottom right"), an unresolvable one names what the image holds.  Nothing is
   guessed: a clause with a word the reader does not model ("less", "glow", "undo") or without a
   complete meaning is refused.

``read_instruction(scene, text) -> Reading`` (target scene + the changes in words).
New objects take what the instruction says and ``NEW_OBJECT_DEFAULTS`` for the rest; "another X" and
"a copy of X" copy the existing X.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace

from .captions import BACKGROUND_PHRASE, STYLE_PHRASE
from .lexicon import LEXICON, MAX_PHRASE
from .scene import POSES, POSITIONS, SIZES, Scene, WorldObject

logger = logging.getLogger(__name__)

NEW_OBJECT_DEFAULTS = {"size": "medium", "color": "red", "pattern": "solid", "pose": "upright", "emblem": "smile"}
OBJECT_VALUE_CATS = ("COLOR", "SIZE", "PATTERN", "EMBLEM", "POSE", "PLAIN", "BADCOLOR", "CMP", "SUP", "TILT")
PLACE_CATS = ("ROW0", "ROW1", "COL0", "COL1", "EMPTY", "CORNER", "CENTER")
REL_CATS = ("LEFTOF", "RIGHTOF", "ABOVE", "BELOW", "NEAR")


PREDICATE_VERBS = frozenset(
    {
        "should not be there",
        "not be there",
        "should not be here",
        "has to go",
        "have to go",
        "must go",
        "should go",
        "can go",
        "needs to go",
        "gone",
        "disappear",
        "vanish",
        "go away",
        "removed",
        "deleted",
        "erased",
        "away",
        "moved",
        "shifted",
        "rotated",
        "colored",
        "painted",
        "changed",
        "made",
        "turned",
        "replaced",
        "swapped",
    }
)


NO_CENTER = "the world has no centre place: objects stand at the top left, top right, bottom left or bottom right"


class ReadingError(ValueError):
    """The reader refuses: the message says why (ambiguous, unknown, impossible, or not understood)."""


@dataclass
class Tok:
    cat: str
    val: object
    text: str


# -- words ---------------------------------------------------------------------------------------------
def normalise(text: str) -> str:
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = t.replace("colour", "color").replace("grey", "gray").replace("chequered", "checkered").replace("centre", "center")
    t = re.sub(r"->|\u2192|=>", " to ", t).replace("&", " and ")
    t = re.sub(r"\bcan't\b", "can not", t)
    t = re.sub(r"\bwon't\b", "will not", t)
    t = re.sub(r"n't\b", " not", t)
    t = re.sub(r"\b(i|we|you|they)'d\b", r"\1 would", t)
    t = re.sub(r"\blet's\b", "let us", t)
    t = re.sub(r"\b(it|that|there|what)'s\b", r"\1 is", t)
    t = re.sub(r"'(re|m)\b", " am", t)
    t = re.sub(r"'ll\b", " will", t)
    t = re.sub(r"'ve\b", " have", t)
    t = re.sub(r"(\w)'s\b", r"\1 's", t)
    t = re.sub(r"(\w)s'(\s|$)", r"\1s 's\2", t)
    t = re.sub(r"[-_/]", " ", t)
    t = re.sub(r"([,;.!?:])", r" \1 ", t)
    t = re.sub(r"[^a-z0-9',;.!?: ]", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def tokenize(text: str) -> list[Tok]:
    words = normalise(text).split()
    out: list[Tok] = []
    i = 0
    while i < len(words):
        for n in range(min(MAX_PHRASE, len(words) - i), 0, -1):
            key = tuple(words[i : i + n])
            if key in LEXICON:
                cat, val = LEXICON[key]
                out.append(Tok(cat, val, " ".join(key)))
                i += n
                break
        else:
            out.append(Tok("UNK", words[i], words[i]))
            i += 1
    # "the one(s)" -> determiner + head; "this/that" before a noun is a determiner, else a pronoun
    fixed: list[Tok] = []
    for k, t in enumerate(out):
        if t.cat in ("DEFONE", "DEFONES"):
            fixed += [Tok("DEF", None, "the"), Tok("HEAD", t.cat == "DEFONES", t.text.split()[1])]
            continue
        if t.cat == "DEMO":
            nxt = out[k + 1].cat if k + 1 < len(out) else ""
            t = Tok("DEF" if nxt in ("SHAPE", "HEAD", "IMAGE", *OBJECT_VALUE_CATS, *PLACE_CATS) else "PRON", None, t.text)
        if t.cat == "HEAD":
            t = Tok("HEAD", t.text.endswith("s"), t.text)
        fixed.append(t)
    for k, t in enumerate(fixed):  # "plus" joins clauses unless an article or an adjective comes before it
        if t.cat == "SHAPE" and t.text == "plus":
            prev = fixed[k - 1].cat if k else ""
            nxt = fixed[k + 1].cat if k + 1 < len(fixed) else ""
            dets = ("DEF", "INDEF", "ANOTHER", "ALL", "NUM")
            if prev in dets:
                continue
            starts = ("DEF", "PRON", "ALL", "BG", "STYLE", "ANOTHER", "UNSAFE")
            adjectives = ("COLOR", "SIZE", "PATTERN", "BADCOLOR", "CMP", "SUP", "EMBLEM", "POSE", "TILT", "ROW0", "ROW1", "COL0", "COL1")
            if nxt == "VERB" and fixed[k + 1].text not in PREDICATE_VERBS:
                nxt = "DEF"  # an imperative verb starts a clause
            b = k - 1
            while b >= 0 and fixed[b].cat in adjectives:
                b -= 1
            inside_np = b < k - 1 and (b < 0 or fixed[b].cat in dets)
            if nxt in starts or not inside_np:
                fixed[k] = Tok("SEP", None, "plus")
    for k, t in enumerate(fixed):  # "drop the sepia": the verb, not the emblem
        if (
            t.text == "drop"
            and k + 1 < len(fixed)
            and fixed[k + 1].cat in ("DEF", "PRON")
            and (k == 0 or fixed[k - 1].cat in ("SEP", "FILL", "MODAL"))
        ):
            fixed[k] = Tok("VERB", "delete", t.text)
    return _tilt_directions(fixed)


def _tilt_directions(toks: list[Tok]) -> list[Tok]:
    """ "tilt/lean ... (to the) left/right" -> a pose; a left/right after "at/on/in" stays a place."""
    out = list(toks)
    for i, t in enumerate(out):
        if t.cat != "TILT":
            continue
        for j in range(i + 1, len(out)):
            if out[j].cat == "SEP":
                break
            if out[j].cat in ("COL0", "COL1"):
                before = out[j - 1].cat if j - 1 >= 0 else ""
                before2 = out[j - 2].cat if j - 2 >= 0 else ""
                if i + 1 < len(out) and out[i + 1].cat == "POSE":
                    break  # "tilted clockwise": the direction is already there
                direct = j == i + 1 or (before == "DEF" and j == i + 2)
                via_to = before == "TO" or (before == "DEF" and before2 == "TO")
                at_end = j == len(out) - 1 or out[j + 1].cat in ("SEP", "FILL")
                bare = before in ("SHAPE", "HEAD", "PRON") and at_end
                if direct or via_to or bare:
                    side = "left" if out[j].cat == "COL0" else "right"
                    out[i] = Tok("POSE", f"tilted {side}", f"{t.text} {out[j].text}")
                    out[j] = Tok("FILL", None, out[j].text)
                    if before == "DEF":
                        out[j - 1] = Tok("FILL", None, "the")
                    if before == "TO" or before2 == "TO":
                        out[j - (1 if before == "TO" else 2)] = Tok("FILL", None, "to")
                    break
    return out


# -- noun phrases ------------------------------------------------------------------------------------
@dataclass
class NP:
    det: str  # def | indef | another | all | num | pron | bare
    mods: list[Tok] = field(default_factory=list)
    head: str | None = None  # shape | one | emblem | pattern | attr | image | corner | None
    shape: str | None = None
    plural: bool = False
    count: int | None = None
    copy: bool = False
    text: str = ""

    @property
    def is_place(self) -> bool:
        return self.head in (None, "corner") and self.mods and all(m.cat in PLACE_CATS for m in self.mods) and self.det != "pron"

    @property
    def is_object(self) -> bool:
        return self.head in ("shape", "one", "emblem", "pattern") or self.det in ("pron", "all")


def _parse_np(toks: list[Tok], i: int, det: str) -> tuple[NP, int]:
    np = NP(det=det)
    start = i
    j = i + (0 if det == "bare" else 1)
    last_mod = j
    while j < len(toks):
        t = toks[j]
        if t.cat in OBJECT_VALUE_CATS or t.cat in PLACE_CATS:
            np.mods.append(t)
            j += 1
            last_mod = j
        elif t.cat == "SHAPE":
            np.head, np.shape, np.plural = "shape", t.val[0], t.val[1]
            j += 1
            break
        elif t.cat == "HEAD":
            np.head, np.plural = "one", bool(t.val)
            j += 1
            break
        elif t.cat == "IMAGE":
            np.head = "image"
            j += 1
            break
        elif t.cat == "ANOTHER" and "of" in t.text:
            np.copy = True
            j += 1
            break
        elif t.cat.startswith("ATTR_") and (np.mods or det == "indef"):
            np.head = "attr"
            j += 1
            break
        elif t.cat == "NUM":
            np.count = {"two": 2, "three": 3, "four": 4}[t.text]
            np.plural = True
            j += 1
        elif t.cat == "FILL" and j + 1 < len(toks) and toks[j + 1].cat in ("SHAPE", "HEAD", *OBJECT_VALUE_CATS) and det != "bare":
            j += 1  # "a single star", "the very big one"
        elif t.cat == "DEF" and det in ("all", "num"):
            j += 1
        else:
            break
    if np.head is None:
        j = last_mod
        first = start + (0 if det == "bare" else 1)
        run = 0
        while run < len(np.mods) and np.mods[run].cat in PLACE_CATS:
            run += 1
        if run and run < len(np.mods):
            # "on the right blue": a place, then loose values
            np.mods, j = np.mods[:run], first + run
        elif det in ("def", "indef", "another", "bare") and any(m.cat in ("EMBLEM", "PATTERN") for m in np.mods):
            # "the lightning bolt checkered": the emblem is the head, what follows is loose
            e = next(k for k, m in enumerate(np.mods) if m.cat in ("EMBLEM", "PATTERN"))
            if det == "bare" and e > 0:
                np.mods, j = np.mods[:e], first + e
            else:
                np.head = np.mods[e].cat.lower()
                np.mods, j = np.mods[: e + 1], first + e + 1
        elif det == "all":
            np.mods, j = [], start + 1
        elif not run and det in ("def", "indef"):
            np.mods, j = [], start + 1  # an article before loose values
    if det == "all":
        np.plural = True
        if toks[start].text == "both":
            np.count = 2
    np.text = " ".join(t.text for t in toks[start:j])
    return np, j


# -- clauses -----------------------------------------------------------------------------------------
@dataclass
class Frame:
    verbs: list[str] = field(default_factory=list)
    refs: list[NP] = field(default_factory=list)
    new_nps: list[NP] = field(default_factory=list)
    new: list[Tok] = field(default_factory=list)  # loose values asked for
    old: list[Tok] = field(default_factory=list)  # values the object has now ("from red", "instead of grey")
    negated: list[Tok] = field(default_factory=list)  # "no dots"
    places: list[NP] = field(default_factory=list)  # where a new or moved object goes
    ref_places: list[Tok] = field(default_factory=list)
    anchors: list[tuple[str, NP]] = field(default_factory=list)
    excludes: list[NP] = field(default_factory=list)
    copy_src: NP | None = None
    bg: list[tuple[str, str]] = field(default_factory=list)  # (value, role)
    style: list[tuple[str, str]] = field(default_factory=list)
    attrs: set[str] = field(default_factory=set)
    statement: bool = False
    modal: bool = False
    replaced: bool = False  # an object was named after "instead of": it is changed, nothing is added
    plain_words: int = 0
    unknown: list[str] = field(default_factory=list)
    text: str = ""

    @property
    def empty(self) -> bool:
        return not (
            self.verbs or self.refs or self.new_nps or self.new or self.negated or self.places or self.bg or self.style or self.anchors
        )

    @property
    def has_values(self) -> bool:
        return bool(self.new or self.new_nps or self.negated)


def _split(toks: list[Tok]) -> list[list[Tok]]:
    segs: list[list[Tok]] = [[]]
    seen_all = False
    for t in toks:
        if t.cat == "ALL":
            seen_all = True
        if t.cat == "SEP" or (t.cat == "BUT" and not seen_all):
            segs.append([])
            continue
        segs[-1].append(t)
    return [s for s in segs if s]


def _frame(toks: list[Tok]) -> Frame:
    f = Frame(text=" ".join(t.text for t in toks))
    zone = "pre"  # pre | new | old | not | exclude
    marker = None  # the last role word: at | with | to | rel:<kind> | from | instead | poss | copy
    last_role = None
    i = 0

    def has_ref() -> bool:
        return bool(f.refs)

    while i < len(toks):
        t = toks[i]
        c = t.cat
        if c == "UNSAFE":
            raise ReadingError(f"the reader does not handle {t.text!r} (in {f.text!r}); say the change with the world's values")
        if c == "CENTER":
            raise ReadingError(NO_CENTER)
        if c == "VERB":
            f.verbs.append(t.val)
            if t.text not in PREDICATE_VERBS:  # "i would like you to change the bolt ...": the verb starts afresh
                zone, marker = "pre", None
            i += 1
            continue
        if c in ("COPULA", "MODAL"):
            if has_ref() or any(n.det == "pron" for n in f.refs):
                zone = "new"
                f.statement |= c == "COPULA"
                f.modal |= c == "MODAL"
            marker = None
            i += 1
            continue
        if c == "TO":
            zone = "new" if zone != "old" else "new"
            marker = "to"
            i += 1
            continue
        if c == "AT":
            marker = "at"
            i += 1
            continue
        if c == "WITH":
            marker = "with"
            i += 1
            continue
        if c in ("FROM", "INSTEAD"):
            zone, marker = "old", c.lower()
            i += 1
            continue
        if c == "NOT":
            zone, marker = "not", None
            i += 1
            continue
        if c == "BUT":
            zone, marker = "exclude", None
            i += 1
            continue
        if c in REL_CATS:
            marker = "rel:" + c
            i += 1
            continue
        if c == "POSS":
            marker = "poss"
            i += 1
            continue
        if c.startswith("ATTR_"):
            f.attrs.add(c[5:])
            if marker == "poss":
                marker = None
            i += 1
            continue
        if c == "IMAGE":
            f.attrs.add("image")
            i += 1
            continue
        if c in ("BG", "STYLE"):
            role = "old" if zone in ("old", "not") else "new"
            (f.bg if c == "BG" else f.style).append((t.val, role))
            i += 1
            continue
        if c == "FILL" or c == "UNK":
            if c == "UNK":
                f.unknown.append(t.text)
            i += 1
            continue
        if c == "ANOTHER" and "of" in t.text:  # "a copy of the heart"
            marker = "copy"
            f.new_nps.append(NP(det="another", copy=True, text=t.text))
            i += 1
            continue
        if c in ("DEF", "INDEF", "ANOTHER", "ALL", "NUM", "PRON", "SHAPE", "HEAD") or c in OBJECT_VALUE_CATS or c in PLACE_CATS:
            if c == "PRON":
                np = NP(det="pron", text=t.text, plural=t.text in ("them", "they"))
                j = i + 1
                if j < len(toks) and toks[j].cat == "ALL":
                    np.plural, np.count = True, 2 if toks[j].text == "both" else None
                    j += 1
            elif c in ("DEF", "INDEF", "ANOTHER", "ALL", "NUM"):
                det = {"DEF": "def", "INDEF": "indef", "ANOTHER": "another", "ALL": "all", "NUM": "num"}[c]
                np, j = _parse_np(toks, i, det)
                if det == "num":
                    np.count = {"two": 2, "three": 3, "four": 4}[t.text]
                    np.plural = True
                if j == i + 1 and det in ("def", "indef") and np.head is None:
                    i = j  # a lone article
                    continue
            else:
                np, j = _parse_np(toks, i, "bare")
                if np.head in (None, "emblem", "pattern") and not np.is_place:
                    # loose values: what is asked for, what is there now, or what is not wanted
                    for m in np.mods:
                        _loose(f, m, zone, marker, has_ref(), last_role)
                    if marker in ("poss", "with"):
                        marker = None
                    i = j if j > i else i + 1
                    continue
            i = j
            role = _np_role(np, zone, marker, has_ref(), f, last_role)
            if np.is_place and last_role and last_role.startswith("rel:") and f.anchors:
                f.anchors[-1][1].mods += np.mods  # "below the circle at the upper left": the anchor's place
                marker = None
                continue
            if np.is_place:
                adding = f.verbs and f.verbs[-1] in ("add", "copy") and any(n.head == "shape" or n.copy for n in f.new_nps)
                if role == "new" or (adding and marker in ("to", "at", None) and last_role not in ("ref", "old")):
                    f.places.append(np)
                else:
                    f.ref_places += np.mods
                marker = None
                continue
            if marker == "with" and role.startswith("rel:") and f.anchors:
                f.anchors[-1][1].mods += np.mods  # "below the one with the bolt"
                marker = None
                continue
            last_role = role
            if role == "ref":
                f.refs.append(np)
            elif role == "new":
                f.new_nps.append(np)
            elif role == "old":
                f.refs.append(np)
                f.replaced = True
            elif role.startswith("rel:"):
                f.anchors.append((role[4:], np))
            elif role == "exclude":
                f.excludes.append(np)
            elif role == "copy":
                f.copy_src = np
            if role in ("ref", "old") and zone in ("pre", "old"):
                zone = "pre"
            marker = None
            continue
        if c == "PLAIN":
            _loose(f, t, zone, marker, has_ref(), last_role)
            i += 1
            continue
        f.unknown.append(t.text)
        i += 1
    return f


def _np_role(np: NP, zone: str, marker: str | None, has_ref: bool, f: Frame, last_role: str | None) -> str:
    if marker and marker.startswith("rel:"):
        return marker
    if marker == "copy":
        return "copy"
    if zone == "exclude":
        return "exclude"
    if np.det in ("indef", "another"):
        if np.head == "attr" or np.head in ("emblem", "pattern") or np.head == "shape" or np.mods:
            return "new"
        return "new"
    if marker == "with":
        return last_role or "ref"
    if marker == "poss":
        return "ref"
    if np.is_place:
        if marker == "to":
            return "new"
        return "ref"
    if zone == "new" and marker == "to" and np.det == "def" and np.head in ("emblem", "pattern"):
        return "new"
    if np.det == "bare" and zone == "new" and has_ref:
        return "new"
    if zone == "old":
        return "old"
    return "ref"


def _loose(f: Frame, t: Tok, zone: str, marker: str | None, has_ref: bool, last_role: str | None) -> None:
    if t.cat in PLACE_CATS:
        adding = f.verbs and f.verbs[-1] in ("add", "copy") and any(n.head == "shape" or n.copy for n in f.new_nps)
        if (adding and last_role not in ("ref", "old")) or (f.verbs and f.verbs[-1] == "move" and marker == "to"):
            f.places.append(NP(det="bare", mods=[t], text=t.text))
        else:
            f.ref_places.append(t)
        return
    if zone == "not":
        f.negated.append(t)
    elif zone == "old" or marker == "poss":
        f.old.append(t)
    elif marker == "with" and last_role in ("ref", "old") and not (f.verbs and f.verbs[-1] in ("fill", "replace", "paint")):
        f.old.append(t)
    elif zone == "pre" and not has_ref and not f.verbs and t.cat in ("SIZE", "CMP", "SUP"):
        f.old.append(t)
    else:
        f.new.append(t)


# -- references ----------------------------------------------------------------------------------------
def _where(o: WorldObject) -> str:
    return f"at the {o.position}"


def describe(o: WorldObject) -> str:
    return f"a {o.size} {o.color} {o.pattern} {o.shape} with a {o.emblem} emblem, {o.pose}, at the {o.position}"


def _tell_apart(objs: list[WorldObject]) -> list[str]:
    """'the red one at the top left', ... : the first attribute in which the candidates differ, and the place."""
    for attr in ("color", "size", "shape", "pattern", "emblem", "pose"):
        if len({getattr(o, attr) for o in objs}) > 1:
            if attr == "emblem":
                return [f"the one with the {o.emblem} {_where(o)}" for o in objs]
            if attr == "shape":
                return [f"the {o.shape} {_where(o)}" for o in objs]
            return [f"the {getattr(o, attr)} one {_where(o)}" for o in objs]
    return [f"the one {_where(o)}" for o in objs]


def _holds(scene: Scene) -> str:
    return "; ".join(f"a {o.size} {o.color} {o.pattern} {o.shape} with a {o.emblem} {_where(o)}" for o in scene.objects)


@dataclass
class Ref:
    """The merged constraints of the noun phrases of one clause that name existing objects."""

    text: str
    cons: dict[str, set[str]] = field(default_factory=dict)
    rows: set[int] | None = None
    cols: set[int] | None = None
    size_rel: str | None = None  # small | large: "the small one" among objects none of which is small
    cmp: str | None = None
    plural: bool = False
    count: int | None = None
    every: bool = False
    pron: bool = False
    heads: list[str] = field(default_factory=list)

    def add(self, attr: str, values: set[str]) -> None:
        self.cons[attr] = self.cons.get(attr, values) & values


def _ref_from(nps: list[NP], extra: list[Tok], old: list[Tok]) -> Ref:
    texts = [n.text for n in nps if n.text]
    r = Ref(text=" ".join(texts) or "it")
    for n in nps:
        r.plural |= n.plural
        r.count = n.count or r.count
        r.every |= n.det == "all"
        r.pron |= n.det == "pron"
        if n.head:
            r.heads.append(n.head)
        if n.shape:
            r.add("shape", {n.shape})
        for m in n.mods:
            _constrain(r, m)
    for m in extra + old:
        _constrain(r, m)
    return r


def _constrain(r: Ref, m: Tok) -> None:
    c = m.cat
    if c == "COLOR":
        r.add("color", {m.val})
    elif c == "BADCOLOR":
        r.add("color", set())
    elif c == "SIZE":
        r.add("size", {m.val})
    elif c in ("CMP", "SUP"):
        r.cmp = {"+": "max", "-": "min"}.get(m.val, m.val)
    elif c == "PATTERN":
        r.add("pattern", {m.val})
    elif c == "PLAIN":
        r.add("pattern", {"solid"})
    elif c == "EMBLEM":
        r.add("emblem", {m.val})
    elif c == "POSE":
        r.add("pose", {m.val})
    elif c == "TILT":
        r.add("pose", {"tilted left", "tilted right"})
    elif c == "CENTER":
        raise ReadingError(NO_CENTER)
    elif c == "ROW0":
        r.rows = (r.rows or {0, 1}) & {0}
    elif c == "ROW1":
        r.rows = (r.rows or {0, 1}) & {1}
    elif c == "COL0":
        r.cols = (r.cols or {0, 1}) & {0}
    elif c == "COL1":
        r.cols = (r.cols or {0, 1}) & {1}


def resolve(scene: Scene, r: Ref, topic: list[int] | None, excludes: list[Ref] = ()) -> list[int]:
    """The slots ``r`` names in ``scene``; ReadingError naming the candidates when it is ambiguous or names nothing."""
    objs = list(scene.objects)
    if r.pron and not r.cons and r.rows is None and r.cols is None and not r.cmp:
        if topic:
            return topic
        if r.plural:
            if r.count and len(objs) != r.count:
                raise ReadingError(f"'{r.text}' names {r.count} objects, but the image has {len(objs)}")
            return [o.slot for o in objs]
        if len(objs) == 1:
            return [objs[0].slot]
        raise ReadingError(f"'{r.text}' could be any of {len(objs)} objects: {', '.join(_tell_apart(objs))}; say which")
    cands = objs
    for attr, values in r.cons.items():
        if attr == "size":
            continue
        cands = [o for o in cands if getattr(o, attr) in values]
    if r.rows is not None:
        cands = [o for o in cands if o.slot // 2 in r.rows]
    if r.cols is not None:
        cands = [o for o in cands if o.slot % 2 in r.cols]
    if "size" in r.cons:
        sized = [o for o in cands if o.size in r.cons["size"]]
        if not sized and len(cands) >= 2 and r.cons["size"] <= {"small", "large"} and len(r.cons["size"]) == 1:
            # "the small one" among a medium and a large object: the smaller of them
            r.cmp = r.cmp or ("min" if "small" in r.cons["size"] else "max")
        else:
            cands = sized
    for ex in excludes:
        drop = set(resolve(scene, ex, None))
        cands = [o for o in cands if o.slot not in drop]
    if r.cmp and cands:
        key = [SIZES.index(o.size) for o in cands]
        best = max(key) if r.cmp == "max" else min(key)
        top = [o for o, k in zip(cands, key, strict=True) if k == best]
        if len(top) > 1 and not r.plural:
            raise ReadingError(f"{len(top)} objects match '{r.text}' (they are the same size): {', '.join(_tell_apart(top))}; say which")
        cands = top
    if not cands:
        raise ReadingError(f"no object matches '{r.text}'; the image holds: {_holds(scene)}")
    if r.count and len(cands) != r.count:
        raise ReadingError(f"'{r.text}' names {r.count} objects, but {len(cands)} match: {', '.join(_tell_apart(cands))}")
    if not r.plural and not r.every and len(cands) > 1:
        raise ReadingError(f"{len(cands)} objects match '{r.text}': {', '.join(_tell_apart(cands))}; say which")
    return [o.slot for o in cands]


# -- from frames to the target scene -------------------------------------------------------------------
@dataclass
class Reading:
    target: Scene
    changes: list[str]


@dataclass
class _Plan:
    attrs: dict[int, dict[str, str]] = field(default_factory=dict)
    deletes: set[int] = field(default_factory=set)
    adds: dict[int, WorldObject] = field(default_factory=dict)
    moves: dict[int, int] = field(default_factory=dict)
    background: str | None = None
    style: str | None = None
    said: list[str] = field(default_factory=list)

    def set_attr(self, slot: int, attr: str, value: str) -> None:
        cur = self.attrs.setdefault(slot, {})
        if cur.get(attr, value) != value:
            raise ReadingError(f"the instruction asks for two different {attr}s of the object at the {POSITIONS[slot]}")
        cur[attr] = value

    def set_global(self, kind: str, value: str) -> None:
        old = getattr(self, kind)
        if old is not None and old != value:
            raise ReadingError(f"the instruction asks for two different {kind}s ({old} and {value})")
        setattr(self, kind, value)


def _global(scene: Scene, f: Frame, plan: _Plan, kind: str) -> bool:
    items = f.bg if kind == "background" else f.style
    deleting = "delete" in f.verbs
    if kind == "background" and not items and f.attrs >= {"background"} and (deleting or any(t.cat == "PLAIN" for t in f.new)):
        items = [("plain", "new")]
        f.new = [t for t in f.new if t.cat != "PLAIN"]
    if kind == "background" and not items and "background" in f.attrs and any(t.cat == "BADCOLOR" and t.val == "white" for t in f.new):
        items = [("plain", "new")]
        f.new = [t for t in f.new if t.cat != "BADCOLOR"]
    if not items:
        return False
    current = getattr(scene, kind)
    default = "plain" if kind == "background" else "flat"
    wanted = {v for v, role in items if role == "new"}
    if deleting and (not wanted or wanted == {current}) and not any(n.is_object and n.det != "all" for n in f.refs if n.det != "pron"):
        if current == default:
            raise ReadingError(f"the {kind} is already {_name(kind, current)}: there is nothing to remove")
        plan.set_global(kind, default)
        plan.said.append(f"{kind} -> {default}")
        return True
    fresh = wanted - {current}
    if len(fresh) > 1:
        raise ReadingError(f"the instruction names several {kind}s ({', '.join(sorted(fresh))}); say one")
    if not fresh:
        if wanted:
            raise ReadingError(f"the {kind} is already {_name(kind, current)}")
        return True  # only the old value is named ("not pixel art"): nothing to do here
    if kind == "style" and any(n.det in ("def", "bare") and n.head == "shape" for n in f.refs):
        raise ReadingError("a style applies to the whole picture, not to one object")
    (value,) = fresh
    plan.set_global(kind, value)
    plan.said.append(f"{kind} -> {value}")
    return True


def _name(kind: str, value: str) -> str:
    return (BACKGROUND_PHRASE if kind == "background" else STYLE_PHRASE)[value]


def _asked(f: Frame, obj_values: bool = True) -> dict[str, object]:
    """The values a clause asks for: attr -> value (size may be '+'/'-'; pose may be a set)."""
    out: dict[str, object] = {}

    def put(attr: str, value: object) -> None:
        if attr in out and out[attr] != value:
            raise ReadingError(f"the clause {f.text!r} asks for two different {attr}s")
        out[attr] = value

    toks = list(f.new)
    for n in f.new_nps:
        toks += n.mods
        if n.shape:
            put("shape", n.shape)
    if any(t.cat == "CMP" for t in toks):  # "a little smaller": a degree, not a size
        toks = [t for t in toks if not (t.cat == "SIZE" and t.text in ("little", "tiny", "bit"))]
    if any(t.cat == "POSE" and t.val.startswith("tilted") for t in toks):  # "tilted clockwise"
        toks = [t for t in toks if t.cat != "TILT"]
    for t in toks:
        if t.cat == "COLOR":
            put("color", t.val)
        elif t.cat == "BADCOLOR":
            raise ReadingError(f"{t.val!r} is not a colour of this world (colours: blue, purple, red, green, orange, yellow)")
        elif t.cat == "SIZE":
            put("size", t.val)
        elif t.cat == "CMP":
            put("size", t.val)
        elif t.cat == "SUP":
            put("size", "large" if t.val == "max" else "small")
        elif t.cat == "PATTERN":
            put("pattern", t.val)
        elif t.cat == "PLAIN":
            put("pattern", "solid")
        elif t.cat == "EMBLEM":
            put("emblem", t.val)
        elif t.cat == "POSE":
            put("pose", t.val)
        elif t.cat == "TILT":
            put("pose", "tilted ?")
        elif t.cat in PLACE_CATS:
            pass
    for t in f.negated:
        if t.cat in ("PATTERN",) and t.val != "solid":
            put("pattern", "solid")
        elif t.cat == "EMBLEM":
            raise ReadingError("every object of this world carries an emblem: say which emblem it should have instead")
    if "flip" in f.verbs and "pose" not in out:
        out["pose"] = "upside down"
    if "straighten" in f.verbs and "pose" not in out:
        out["pose"] = "upright"
    if "grow" in f.verbs and "size" not in out:
        out["size"] = "+"
    if "shrink" in f.verbs and "size" not in out:
        out["size"] = "-"
    return out


def _place_slots(scene: Scene, places: list[NP], anchors: list[tuple[str, NP]], topic: list[int] | None) -> tuple[set[int], bool]:
    """Slots allowed by the place words and relative places; True when a place was named at all."""
    slots = set(range(4))
    named = False
    empty = False
    for p in places:
        for m in p.mods:
            named = True
            if m.cat == "ROW0":
                slots &= {0, 1}
            elif m.cat == "ROW1":
                slots &= {2, 3}
            elif m.cat == "COL0":
                slots &= {0, 2}
            elif m.cat == "COL1":
                slots &= {1, 3}
            elif m.cat == "EMPTY":
                empty = True
            elif m.cat == "CENTER":
                raise ReadingError(NO_CENTER)
    for kind, np in anchors:
        named = True
        (a,) = resolve(scene, _ref_from([np], [], []), topic)
        row, col = divmod(a, 2)
        near = {
            "LEFTOF": {row * 2} if col == 1 else set(),
            "RIGHTOF": {row * 2 + 1} if col == 0 else set(),
            "ABOVE": {col} if row == 1 else set(),
            "BELOW": {2 + col} if row == 0 else set(),
            "NEAR": {row * 2 + (1 - col)},
        }[kind]
        if not near:
            raise ReadingError(f"there is no place {kind.lower().replace('of', ' of')} '{np.text}' (it stands at the {POSITIONS[a]})")
        slots &= near
    return slots, named or empty


def _names(slots) -> str:
    return ", ".join(f"the {POSITIONS[s]}" for s in sorted(slots))


def _apply_frame(scene: Scene, f: Frame, plan: _Plan, topic: list[int] | None) -> list[int] | None:
    """Add ``f``'s changes to ``plan``; returns the slots it was about (the next clause's "it")."""
    did_global = _global(scene, f, plan, "background")
    did_global |= _global(scene, f, plan, "style")
    obj_refs = [n for n in f.refs if n.is_object and n.head != "image"]
    excludes = [_ref_from([n], [], []) for n in f.excludes]
    asked = _asked(f)
    verbs = set(f.verbs)
    new_shape_nps = [n for n in f.new_nps if n.head == "shape" or n.copy or (n.det == "another" and n.head == "one")]

    # adding: an add verb, a new object with a shape, and no existing object being changed
    if (verbs & {"add", "copy"}) and new_shape_nps and not f.replaced and not [n for n in obj_refs if n.det != "pron"]:
        return _add(scene, f, plan, asked, new_shape_nps, topic)
    if "copy" in verbs and obj_refs and (f.places or f.anchors):
        src = resolve(scene, _ref_from(obj_refs, f.ref_places, f.old), topic)
        return _add_object(scene, f, plan, dict(scene.object_at(src[0]).__dict__), asked, topic)
    if did_global and not obj_refs and not asked:
        return topic
    if did_global and not asked and "delete" not in verbs:
        return topic  # "put the heart in front of a brick wall": the objects are only where it happens
    if not (obj_refs or asked or verbs & {"delete", "move", "fix"}):
        if f.empty or not (f.unknown or f.verbs):
            return topic
        raise ReadingError(
            f"cannot map {f.text!r} to a change of this scene" + (f" (words it does not know: {', '.join(f.unknown)})" if f.unknown else "")
        )

    if not asked and f.unknown and all(n.det == "pron" for n in obj_refs) and not verbs & {"delete", "move", "fix", "rotate"}:
        raise ReadingError(f"cannot map {f.text!r} to a change of this scene (words it does not know: {', '.join(f.unknown)})")
    ref = _ref_from(obj_refs, f.ref_places, f.old)
    if not obj_refs:
        if topic:
            targets = topic
        elif len(scene.objects) == 1:
            targets = [scene.objects[0].slot]
        else:
            raise ReadingError(
                f"which object? {f.text!r} names none; the image has {len(scene.objects)}: {', '.join(_tell_apart(list(scene.objects)))}"
            )
    else:
        targets = resolve(scene, ref, topic, excludes)
    for n in f.negated:  # "no dots on the star": the star has dots now
        if n.cat == "PATTERN" and n.val != "solid":
            bad = [s for s in targets if scene.object_at(s).pattern != n.val]
            if bad:
                raise ReadingError(f"the {scene.object_at(bad[0]).shape} at the {POSITIONS[bad[0]]} has no {n.text}")

    pattern_head = any(n.head == "pattern" for n in obj_refs[:1])
    emblem_head = any(n.head == "emblem" for n in obj_refs[:1])
    if "delete" in verbs and not asked:
        if pattern_head:
            asked = {"pattern": "solid"}
        elif emblem_head:
            raise ReadingError("every object of this world carries an emblem: say which emblem it should have instead")
        else:
            for s in targets:
                if scene.object_at(s) is None:
                    raise ReadingError(f"there is no object at the {POSITIONS[s]} to remove")
                if s in plan.attrs:
                    raise ReadingError(f"the instruction both changes and removes the object at the {POSITIONS[s]}")
                plan.deletes.add(s)
                plan.said.append(f"delete the {scene.object_at(s).shape} at the {POSITIONS[s]}")
            return targets
    if "move" in verbs and (f.places or f.anchors) and not asked:
        if len(targets) != 1:
            raise ReadingError("move one object at a time")
        slots, _ = _place_slots(scene, f.places, f.anchors, topic)
        free = {s for s in slots if scene.object_at(s) is None}
        if len(free) != 1:
            raise ReadingError(f"where should it go? free places that fit: {_names(free) or 'none'}")
        (dest,) = free
        plan.moves[targets[0]] = dest
        plan.said.append(f"move the {scene.object_at(targets[0]).shape} to the {POSITIONS[dest]}")
        return [dest]
    if "fix" in verbs and not asked:
        if topic and f.statement is False:
            asked = {"pose": "upright"} if any(scene.object_at(s).pose != "upright" for s in targets) else {}
    if not asked:
        if f.statement or (not f.verbs and not f.modal):
            return targets  # a clause that only names or describes objects: the topic of the next one
        if "rotate" in verbs:
            raise ReadingError("say how it should stand: upright, upside down, tilted left or tilted right")
        raise ReadingError(f"cannot map {f.text!r} to a change: it names '{ref.text}' but not what should change about it")
    if f.statement and not f.modal and not f.verbs:
        same = all(_same(scene.object_at(s), asked) for s in targets)
        if same:
            return targets  # "the circle is leaning": a description, the topic of the next clause
    if asked.get("pose") == "tilted ?":
        raise ReadingError("say which way it should lean: tilted left or tilted right")
    for s in targets:
        o = scene.object_at(s)
        if o is None and s in plan.adds:  # "add a red star ... and make it striped": the new object
            new = dict(asked)
            if new.get("size") in ("+", "-"):
                k = SIZES.index(plan.adds[s].size) + (1 if new["size"] == "+" else -1)
                new["size"] = SIZES[min(max(k, 0), len(SIZES) - 1)]
            plan.adds[s] = replace(plan.adds[s], **new)
            plan.said.append(f"the new {plan.adds[s].shape}: " + ", ".join(f"{a} -> {v}" for a, v in new.items()))
            continue
        if o is None:
            raise ReadingError(f"there is no object at the {POSITIONS[s]} to change")
        for attr, value in asked.items():
            if attr == "size" and value in ("+", "-"):
                k = SIZES.index(o.size) + (1 if value == "+" else -1)
                if not 0 <= k < len(SIZES):
                    raise ReadingError(
                        f"the {o.shape} at the {o.position} is already as {'large' if value == '+' else 'small'} as objects get"
                    )
                value = SIZES[k]
            plan.set_attr(s, attr, value)
        plan.said.append(f"the {o.shape} at the {o.position}: " + ", ".join(f"{a} -> {v}" for a, v in plan.attrs[s].items()))
    return targets


def _same(o: WorldObject, asked: dict[str, object]) -> bool:
    for attr, v in asked.items():
        if attr == "pose" and v == "tilted ?":
            if not o.pose.startswith("tilted"):
                return False
        elif attr == "size" and v in ("+", "-"):
            return False
        elif getattr(o, attr) != v:
            return False
    return True


def _add(scene: Scene, f: Frame, plan: _Plan, asked: dict, nps: list[NP], topic: list[int] | None) -> list[int]:
    np = nps[0]
    base = dict(NEW_OBJECT_DEFAULTS)
    if f.copy_src is not None:
        (s,) = resolve(scene, _ref_from([f.copy_src], [], []), topic)
        base = {k: v for k, v in scene.object_at(s).__dict__.items() if k != "slot"}
    elif np.det == "another":
        shape = asked.get("shape") or np.shape
        same = [o for o in scene.objects if o.shape == shape] if shape else list(scene.objects)
        if len(same) > 1:
            raise ReadingError(f"'{np.text}' could copy any of {len(same)} objects: {', '.join(_tell_apart(same))}; say which")
        if same:
            base = {k: v for k, v in same[0].__dict__.items() if k != "slot"}
    if "shape" not in asked and not base.get("shape"):
        raise ReadingError(f"say which shape to add ({', '.join(sorted({'circle', 'square', 'triangle', 'star', 'heart', 'cross'}))})")
    return _add_object(scene, f, plan, base, asked, topic)


def _add_object(scene: Scene, f: Frame, plan: _Plan, base: dict, asked: dict, topic: list[int] | None) -> list[int]:
    attrs = {k: v for k, v in base.items() if k != "slot"}
    for attr, value in asked.items():
        if attr == "size" and value in ("+", "-"):
            raise ReadingError("say the new object's size: small, medium or large")
        attrs[attr] = value
    if "shape" not in attrs:
        raise ReadingError("say which shape to add")
    places = f.places + [NP(det="bare", mods=[m], text=m.text) for m in f.ref_places]
    slots, named = _place_slots(scene, places, f.anchors, topic)
    # the free places are those the user sees in the source image (a deleted object's place is not offered)
    taken = {o.slot for o in scene.objects} | set(plan.adds) | set(plan.moves.values())
    free = sorted(s for s in slots if s not in taken)
    if not free:
        if named and slots:
            raise ReadingError(
                f"{_names(slots)} {'is' if len(slots) == 1 else 'are'} taken; free places: {_names(set(range(4)) - taken) or 'none'}"
            )
        raise ReadingError("the image has no free place for another object (it holds four)")
    if len(free) > 1:
        raise ReadingError(f"where should the new {attrs['shape']} go? free places: {_names(free)}")
    obj = WorldObject(slot=free[0], **attrs)
    plan.adds[free[0]] = obj
    plan.said.append(f"add {describe(obj)}")
    return [free[0]]


def _combine(frames: list[Frame]) -> list[Frame]:
    """Values-only and place-only clauses join the clause before them ("..., and striped", "..., at the bottom right")."""
    out: list[Frame] = []
    for f in frames:
        obj_refs = [n for n in f.refs if n.is_object and n.head != "image"]
        joins = (
            out
            and not f.verbs
            and not obj_refs
            and not f.bg
            and not f.style
            and (f.has_values or f.places or f.ref_places or f.anchors)
            and not f.statement
        )
        if joins:
            p = out[-1]
            p.new += f.new
            p.new_nps += f.new_nps
            p.negated += f.negated
            p.anchors += f.anchors
            if p.verbs and p.verbs[-1] in ("add", "copy", "move"):
                p.places += f.places + [NP(det="bare", mods=[m], text=m.text) for m in f.ref_places]
            else:
                p.ref_places += f.ref_places
                p.places += f.places
            p.text += " , " + f.text
            continue
        out.append(f)
    return out


def read_instruction(scene: Scene, instruction: str) -> Reading:
    """The target scene of ``instruction`` on ``scene`` (see the module docstring); ReadingError when it refuses."""
    if not instruction or not instruction.strip():
        raise ReadingError("the instruction is empty")
    toks = tokenize(instruction)
    frames = _combine([_frame(seg) for seg in _split(toks)])
    plan = _Plan()
    topic: list[int] | None = None
    pending: list[int] | None = None  # objects named by a clause that had no edit of its own
    last_action: Frame | None = None
    unknown: list[str] = []
    for k, f in enumerate(frames):
        unknown += f.unknown
        obj_refs = [n for n in f.refs if n.is_object and n.head != "image"]
        only_names = obj_refs and not f.verbs and not f.has_values and not f.bg and not f.style and not f.statement
        if only_names and last_action is not None and pending is None:
            # "remove the red circle and the triangle": the same edit for this object
            inherited = replace(last_action, refs=f.refs, ref_places=f.ref_places, old=f.old, text=f.text)
            topic = _apply_frame(scene, inherited, plan, None)
            continue
        verb_without_values = obj_refs and f.verbs and set(f.verbs) <= {"change", "paint", "replace"} and not f.has_values
        if verb_without_values and not f.bg and not f.style and k + 1 < len(frames):
            nxt = frames[k + 1]
            if [n for n in nxt.refs if n.is_object] and nxt.has_values and not nxt.verbs:
                # "make the star and the heart blue": both objects get the next clause's values
                nxt.refs = f.refs + nxt.refs
                nxt.verbs = f.verbs
                continue
        before = len(plan.said)
        if pending is not None and not obj_refs:
            topic = pending
        only_pronouns = all(n.det == "pron" for n in obj_refs)
        topic = _apply_frame(scene, f, plan, topic if only_pronouns else None)
        pending = None
        if len(plan.said) == before and obj_refs:
            pending = topic
        elif len(plan.said) > before and (obj_refs or f.verbs):
            last_action = f
    return Reading(_build(scene, plan, instruction, unknown), plan.said)


def _build(scene: Scene, plan: _Plan, instruction: str, unknown: list[str]) -> Scene:
    if not plan.said:
        extra = f" (words it does not know: {', '.join(dict.fromkeys(unknown))})" if unknown else ""
        raise ReadingError(f"cannot map {instruction!r} to a change of this scene{extra}")
    objs = {o.slot: o for o in scene.objects}
    for s, attrs in plan.attrs.items():
        if s in plan.deletes:
            raise ReadingError(f"the instruction both changes and removes the object at the {POSITIONS[s]}")
        objs[s] = replace(objs[s], **attrs)
    for s in plan.deletes:
        objs.pop(s)
    for a, b in plan.moves.items():
        o = objs.pop(a)
        if b in objs:
            raise ReadingError(f"the {POSITIONS[b]} is taken")
        objs[b] = replace(o, slot=b)
    for s, o in plan.adds.items():
        if s in objs:
            raise ReadingError(f"the {POSITIONS[s]} is taken")
        objs[s] = o
    if not objs:
        raise ReadingError("that would leave the image empty: a scene keeps at least one object")
    target = Scene(
        objects=tuple(objs.values()),
        background=plan.background or scene.background,
        style=plan.style or scene.style,
        seed=scene.seed,
    )
    if target.same_content(scene):
        raise ReadingError(f"{instruction!r} changes nothing: the image already looks like that")
    for o in target.objects:
        if o.pose not in POSES:
            raise ReadingError(f"unknown pose {o.pose!r}")
    return target
