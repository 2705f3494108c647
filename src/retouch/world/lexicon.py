"""Words people use for the Shapes world's values, edits and places: the lexicon of the instruction reader.

Each entry maps a phrase (lower case, hyphens read as spaces, "colour" read as "color", "grey" as "gray")
to a token category and its value.  Phrases are matched longest first, so "black and white" is a
style before "white" is anything, and "red brick wall" a background before "red" is a colour.

The entries were written from the world's vocabularies and ordinary English synonyms, not copied from
the hand-written fixture, though by its author, who had its first part in mind (docs/editing.md,
"Reading instructions in everyday words", says how the fixture and the lexicon were made).
"""

from __future__ import annotations

from .scene import BACKGROUNDS, COLORS, EMBLEMS, PATTERNS, SHAPES, STYLES

# -- values ------------------------------------------------------------------------------------------
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "disk", "ring", "dot shape", "round shape", "round one", "ball", "oval"),
    "square": ("square", "box", "block", "cube", "rectangle", "tile"),
    "triangle": ("triangle", "pyramid", "triangular shape", "triangular one"),
    "star": ("star", "starfish"),
    "heart": ("heart",),
    "cross": ("cross", "plus sign", "plus", "x shape", "cross shape"),
}
PLURAL_SHAPES = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars", "heart": "hearts", "cross": "crosses"}
PLURAL_SHAPES |= {
    "disc": "discs",
    "disk": "disks",
    "ring": "rings",
    "box": "boxes",
    "block": "blocks",
    "pyramid": "pyramids",
    "plus": "pluses",
}
PLURAL_SHAPES |= {"cube": "cubes", "rectangle": "rectangles", "ball": "balls", "tile": "tiles"}

COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet", "ruby", "cherry", "reddish"),
    "blue": ("blue", "navy", "navy blue", "royal blue", "dark blue", "cobalt", "bluish", "sapphire"),
    "green": ("green", "lime", "emerald", "grass green", "greenish", "leaf green"),
    "yellow": ("yellow", "gold", "golden", "lemon", "canary", "yellowish"),
    "orange": ("orange", "amber", "tangerine", "orangey", "orangish"),
    "purple": ("purple", "violet", "lilac", "lavender", "mauve", "plum", "purplish", "magenta"),
}
# colours people ask for that the world does not have: refused by name, never mapped to a neighbour
UNKNOWN_COLORS = ("white", "black", "pink", "brown", "silver", "cyan", "teal", "turquoise", "beige", "gray", "maroon", "transparent")

SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny", "smallish", "wee", "mini", "teeny"),
    "medium": ("medium", "medium sized", "mid sized", "middle sized", "average sized", "normal sized", "regular sized", "medium size"),
    "large": ("large", "big", "huge", "giant", "enormous", "massive", "largish", "biggish", "great big"),
}
COMPARATIVES = {"+": ("bigger", "larger", "greater", "taller", "wider"), "-": ("smaller", "tinier", "littler", "shorter")}
SUPERLATIVES = {"max": ("biggest", "largest", "greatest", "tallest"), "min": ("smallest", "tiniest", "littlest")}

PATTERN_WORDS: dict[str, tuple[str, ...]] = {
    "solid": ("solid", "solid color", "single color", "one color", "flat color", "uniform", "unpatterned", "plain color", "filled in"),
    "striped": ("striped", "stripes", "stripe", "stripy", "stripey", "stripe pattern", "lines", "lined", "banded", "bands", "pinstripes"),
    "dotted": (
        "dotted",
        "dots",
        "dot",
        "spots",
        "spotted",
        "spotty",
        "dotty",
        "polka dots",
        "polka dot",
        "polka dotted",
        "speckled",
    ),
    "checkered": (
        "checkered",
        "checked",
        "checks",
        "check",
        "checker",
        "checkers",
        "checkerboard",
        "checker board",
        "chessboard",
        "chess board",
        "plaid",
        "tartan",
        "squares pattern",
        "gingham",
    ),
}
EMBLEM_WORDS: dict[str, tuple[str, ...]] = {
    "arrow": ("arrow", "arrows", "pointer", "arrowhead"),
    "moon": ("moon", "moons", "crescent", "crescent moon", "half moon", "moon shape"),
    "bolt": ("bolt", "bolts", "lightning bolt", "lightning", "thunderbolt", "lightning strike", "zap", "flash", "thunder"),
    "drop": ("drop", "drops", "droplet", "raindrop", "rain drop", "water drop", "water droplet", "teardrop", "tear drop", "tear"),
    "smile": ("smile", "smiley", "smiley face", "smiling face", "happy face", "smile face", "smilie", "smiley symbol", "grin", "face"),
}
POSE_WORDS: dict[str, tuple[str, ...]] = {
    "upright": (
        "upright",
        "straight up",
        "up straight",
        "right side up",
        "the right way up",
        "right way up",
        "the right way round",
        "right way round",
        "the right way around",
        "the correct way up",
        "level",
        "vertical",
        "standing up",
        "up right",
        "straight",
        "not tilted",
        "unrotated",
    ),
    "upside down": ("upside down", "on its head", "on their heads", "inverted", "head over heels", "flipped", "the wrong way up"),
    "tilted left": ("counterclockwise", "counter clockwise", "anticlockwise", "anti clockwise"),
    "tilted right": ("clockwise",),
}

BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {
    "plain": (
        "plain white background",
        "plain background",
        "white background",
        "plain white",
        "blank background",
        "empty background",
        "white backdrop",
        "plain backdrop",
        "blank backdrop",
        "no background",
        "nothing behind",
        "white wall",
        "white paper",
        "blank white",
        "plain white one",
        "white void",
    ),
    "sky": (
        "blue sky with clouds",
        "blue sky",
        "sky with clouds",
        "cloudy sky",
        "cloudy blue sky",
        "daytime sky",
        "day sky",
        "sky",
        "clouds",
        "cloudy",
        "daylight sky",
        "clear sky",
        "skies",
        "heavens",
        "sunny sky",
        "the air",
    ),
    "night": (
        "starry night sky",
        "starry night",
        "starry sky",
        "night sky",
        "nighttime sky",
        "night time sky",
        "nighttime",
        "night time",
        "night",
        "stars at night",
        "full of stars",
        "starry",
        "outer space",
        "starfield",
        "star field",
        "galaxy",
        "cosmos",
        "midnight sky",
        "dark sky",
    ),
    "grass": (
        "grassy field",
        "field of grass",
        "green grass",
        "grassy meadow",
        "grassy",
        "grass",
        "lawn",
        "meadow",
        "field",
        "green field",
        "grassland",
        "pasture",
        "turf",
    ),
    "brick": ("red brick wall", "brick wall", "bricks", "brick", "wall of bricks", "brickwork", "wall", "masonry"),
    "sand": ("sandy desert", "desert sand", "desert", "sand", "sandy", "dunes", "sand dunes", "beach", "sahara", "sandy beach"),
}
STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "flat": (
        "flat illustration",
        "flat design",
        "flat",
        "vector",
        "vector art",
        "vector graphic",
        "clean illustration",
        "normal",
        "regular",
        "colorful",
        "in color",
        "full color",
        "clip art",
        "cartoon",
        "flat picture",
    ),
    "sketch": (
        "pencil sketch",
        "pencil drawing",
        "pencil drawn",
        "pencil",
        "sketch",
        "sketched",
        "sketchy",
        "hand drawn",
        "drawn by hand",
        "line drawing",
        "charcoal",
        "graphite",
        "doodle",
        "sketchbook",
    ),
    "pixel": (
        "pixel art",
        "pixel",
        "pixels",
        "pixelated",
        "pixellated",
        "pixelized",
        "8 bit",
        "16 bit",
        "retro game",
        "video game",
        "retro video game",
        "low res",
        "pixely",
        "pixel art picture",
    ),
    "watercolor": ("watercolor", "watercolors", "watercolor painting", "water color", "water colors", "aquarelle", "painting", "painted"),
    "grayscale": (
        "grayscale",
        "gray scale",
        "black and white",
        "black white",
        "b and w",
        "monochrome",
        "monochromatic",
        "desaturated",
        "gray",
        "shades of gray",
        "colorless",
        "no color",
        "without color",
        "without colors",
        "no colors",
        "greyscale",
    ),
    "sepia": (
        "sepia",
        "sepia toned",
        "sepia tone",
        "old photo",
        "old photos",
        "old photograph",
        "old photographs",
        "vintage",
        "antique",
        "old timey",
        "old fashioned",
        "aged photo",
        "brownish",
        "brown tones",
        "old picture",
        "old pictures",
        "faded photo",
    ),
}

# -- the rest of the grammar --------------------------------------------------------------------------
FUNCTION_WORDS: dict[str, tuple[str, ...]] = {
    "DEF": ("the", "these", "those", "its", "their", "my", "your"),
    "DEMO": ("this", "that"),  # a determiner before a noun, a pronoun otherwise
    "INDEF": ("a", "an", "some", "a new"),
    "ANOTHER": (
        "another",
        "one more",
        "a second",
        "an extra",
        "extra",
        "a copy of",
        "copy of",
        "a duplicate of",
        "a clone of",
        "a twin of",
    ),
    "ALL": ("all", "every", "everything", "each", "both", "all of them", "all of the", "everything else", "all objects", "all shapes"),
    "NUM": ("two", "three", "four"),
    "PRON": ("it", "them", "they", "him", "her", "one of them"),
    "HEAD": ("one", "ones", "object", "objects", "shape", "shapes", "thing", "things", "item", "items", "figure", "figures", "guy", "guys"),
    "IMAGE": (
        "image",
        "picture",
        "photo",
        "photograph",
        "pic",
        "scene",
        "whole thing",
        "whole image",
        "whole picture",
        "drawing",
        "illustration",
    ),
    "ATTR_color": ("color", "colors", "hue", "tint", "shade"),
    "ATTR_pattern": ("pattern", "patterns", "texture", "print", "design", "fill pattern", "surface"),
    "ATTR_emblem": (
        "emblem",
        "emblems",
        "symbol",
        "symbols",
        "icon",
        "icons",
        "sign",
        "logo",
        "badge",
        "mark",
        "marking",
        "sticker",
        "decal",
        "motif",
    ),
    "ATTR_pose": ("pose", "orientation", "angle", "rotation", "direction", "position"),
    "ATTR_size": ("size",),
    "ATTR_background": (
        "background",
        "backdrop",
        "backgrounds",
        "setting",
        "scenery",
        "surroundings",
        "behind it",
        "behind them",
        "behind",
    ),
    "ATTR_style": ("style", "look", "version", "rendering", "art style", "effect", "filter", "aesthetic", "vibe"),
    "ROW0": ("top", "upper", "up top", "on top", "uppermost", "topmost", "top row", "higher", "highest"),
    "ROW1": ("bottom", "lower", "bottom row", "down below", "lowest", "lowermost", "bottommost"),
    "COL0": ("left", "leftmost", "left hand", "left side", "lefthand"),
    "COL1": ("right", "rightmost", "right hand", "right side", "righthand"),
    "CENTER": ("center", "middle", "centre"),
    "CORNER": ("corner", "corners", "spot", "slot", "cell", "quadrant", "side", "part", "area", "position"),
    "EMPTY": ("empty", "free", "remaining", "vacant", "open", "unused", "blank", "missing", "last", "other empty", "spare", "gap"),
    "LEFTOF": ("to the left of", "left of", "on the left of", "at the left of"),
    "RIGHTOF": ("to the right of", "right of", "on the right of", "at the right of"),
    "ABOVE": ("above", "over", "on top of", "atop", "higher than"),
    "BELOW": ("below", "under", "underneath", "beneath", "lower than"),
    "NEAR": ("next to", "beside", "besides", "alongside", "by the side of", "near", "adjacent to"),
    "AT": ("at", "in", "on", "onto", "into the", "against", "in front of", "inside"),
    "TO": ("to", "into", "for", "as", "become", "becomes", "turn into", "turned into", "to be", "towards", "toward"),
    "WITH": ("with", "having", "carrying", "showing", "bearing", "wearing", "featuring", "that has", "which has", "that have"),
    "FROM": ("from", "off", "out of"),
    "INSTEAD": ("instead of", "rather than", "in place of"),
    "NOT": ("not", "no", "non", "without", "no more", "no longer", "nothing but"),
    "BUT": ("but", "except", "except for", "apart from", "other than", "save for", "excluding", "but not"),
    "COPULA": ("is", "are", "was", "is now", "looks", "appears", "seems", "has", "have"),
    "MODAL": (
        "should be",
        "should",
        "must",
        "must be",
        "needs",
        "need",
        "needs to be",
        "need to be",
        "has to be",
        "have to be",
        "could be",
        "can be",
        "would be",
        "will be",
        "be",
        "wants",
        "want",
        "ought to be",
        "should have",
        "needs to",
        "needs to have",
        "to have",
        "should get",
        "gets",
        "get",
        "should become",
        "could",
        "can",
        "would",
        "will",
    ),
    "SEP": (",", ";", ".", "!", "?", ":", "and", "then", "also", "plus", "and then", "as well as", "after that", "and also", "too"),
    "POSS": ("'s", "s'"),
}
VERBS: dict[str, tuple[str, ...]] = {
    "delete": (
        "remove",
        "delete",
        "erase",
        "get rid of",
        "take away",
        "take out",
        "lose",
        "nix",
        "ditch",
        "scrap",
        "eliminate",
        "do away with",
        "kill",
        "throw away",
        "throw out",
        "wipe out",
        "rub out",
        "cut out",
        "clear away",
        "omit",
        "take off",
        "strip",
        "strip off",
        "removed",
        "deleted",
        "erased",
        "gone",
        "disappear",
        "vanish",
        "go away",
        "has to go",
        "have to go",
        "must go",
        "should go",
        "can go",
        "needs to go",
        "away",
        "should not be there",
        "not be there",
        "should not be here",
        "do not want",
        "dont want",
        "no need for",
        "banish",
        "cut",
    ),
    "add": (
        "add",
        "insert",
        "include",
        "put in",
        "stick",
        "throw in",
        "pop",
        "place",
        "put",
        "draw",
        "there should be",
        "there should also be",
        "create",
        "give me",
        "i want",
        "we need",
        "let us have",
        "new",
        "make a",
        "plant",
        "paste",
    ),
    "move": ("move", "shift", "slide", "drag", "relocate", "push", "moved", "shifted"),
    "copy": ("duplicate", "copy", "clone", "repeat"),
    "flip": ("flip", "invert", "turn over", "flip over", "upend", "turn upside down"),
    "straighten": ("straighten", "straighten up", "stand up", "set upright", "stand", "right", "level out", "unrotate", "untilt"),
    "rotate": ("rotate", "spin", "twist", "turn around", "rotated"),
    "grow": ("grow", "enlarge", "scale up", "blow up", "magnify", "increase", "embiggen", "upsize", "expand"),
    "shrink": ("shrink", "reduce", "scale down", "minimize", "downsize", "decrease", "make smaller"),
    "paint": ("paint", "color", "recolor", "dye", "tint", "shade", "color in", "repaint", "colored", "painted"),
    "replace": ("replace", "swap", "exchange", "switch", "substitute", "trade", "swap out", "change out", "replaced", "swapped"),
    "fix": ("fix", "correct", "repair", "sort out"),
    "fill": ("fill", "cover", "decorate", "pattern", "coat", "fill in", "cover in", "fill up"),
    "change": (
        "make",
        "turn",
        "change",
        "set",
        "convert",
        "transform",
        "give",
        "render",
        "redraw",
        "redo",
        "use",
        "style",
        "mark",
        "stamp",
        "show",
        "shows",
        "let",
        "modify",
        "alter",
        "adjust",
        "update",
        "edit",
        "apply",
        "go",
        "do",
        "have",
        "put on",
        "go for",
        "changed",
        "made",
        "turned",
    ),
}
TILT_WORDS = (
    "tilt",
    "tilted",
    "tilts",
    "tilting",
    "lean",
    "leans",
    "leaning",
    "leaned",
    "slant",
    "slanted",
    "slanting",
    "tip",
    "tipped",
    "angled",
    "crooked",
    "askew",
    "tipping",
    "tilted over",
    "leaning over",
    "on a slant",
    "at an angle",
    "sideways",
)
VERBS["change"] += ("resize", "rescale", "recolor it", "reshape")
# words whose meaning the reader does not model: a clause with one of them is refused, never read around
UNSAFE_WORDS = frozenset(
    {
        "less",
        "other",
        "opposite",
        "undo",
        "revert",
        "original",
        "previous",
        "same",
        "similar",
        "back",
        "keep",
        "leave",
        "stay",
        "only",
        "again",
        "half",
        "slightly",
        "partly",
        "partially",
        "more",
        "most",
        "least",
        "semi",
        "lighter",
        "darker",
        "brighter",
        "dimmer",
        "glow",
        "transparent",
        "zoom",
        "crop",
        "blur",
        "shadow",
        "outline",
        "except",
    }
)
# "again" and "more" appear in natural requests ("colorful again", "one more"): those phrases are matched first
FILLER = frozenset(
    {
        "please",
        "pls",
        "plz",
        "kindly",
        "could",
        "you",
        "can",
        "would",
        "will",
        "just",
        "maybe",
        "perhaps",
        "really",
        "hey",
        "hi",
        "ok",
        "okay",
        "thanks",
        "thank",
        "so",
        "i",
        "we",
        "me",
        "us",
        "like",
        "love",
        "of",
        "a bit",
        "a little bit",
        "bit",
        "now",
        "here",
        "there",
        "if",
        "possible",
        "mind",
        "let",
        "lets",
        "want",
        "wanna",
        "id",
        "ill",
        "im",
        "do",
        "does",
        "is",
        "it is",
        "looks like",
        "look like",
        "look",
        "looking",
        "appear",
        "quite",
        "very",
        "rather",
        "bright",
        "nice",
        "nicely",
        "pretty",
        "kind of",
        "sort of",
        "some",
        "too",
        "also",
        "instead",
        "as well",
        "real",
        "clear",
        "whole",
        "entire",
        "full",
        "every one",
        "version",
        "which",
        "who",
        "that is",
        "which is",
        "that are",
        "thing",
        "for me",
        "well",
        "actually",
        "wait",
        "hmm",
        "oh",
        "um",
        "cute",
        "cool",
        "lovely",
        "version of",
        "style of",
        "in the style of",
        "kind",
        "sort",
        "type",
        "make sure",
        "yes",
        "yeah",
        "okay so",
        "totally",
        "completely",
        "fully",
        "entirely",
        "little bit",
        "bit more",
        "different",
        "new one",
        "way",
        "up",
        "down",
        "about",
        "around",
        "over there",
        "right now",
        "again please",
        "one",
        "sure",
        "think",
        "feel",
        "prefer",
        "rather have",
        "better",
        "would be",
        "nicer",
        "should",
        "imagine",
        "try",
        "go ahead",
        "and",
        "all over",
        "colour",
    }
)


def _expand() -> dict[tuple[str, ...], tuple[str, object]]:
    lex: dict[tuple[str, ...], tuple[str, object]] = {}

    def put(phrase: str, cat: str, value: object = None, overwrite: bool = False) -> None:
        key = tuple(phrase.split())
        if overwrite or key not in lex:
            lex[key] = (cat, value)

    for shape, words in SHAPE_WORDS.items():
        for w in words:
            put(w, "SHAPE", (shape, False))
            if w in PLURAL_SHAPES:
                put(PLURAL_SHAPES[w], "SHAPE", (shape, True))
            elif " " in w:
                put(w + "s", "SHAPE", (shape, True))
    for table, cat in (
        (COLOR_WORDS, "COLOR"),
        (SIZE_WORDS, "SIZE"),
        (PATTERN_WORDS, "PATTERN"),
        (EMBLEM_WORDS, "EMBLEM"),
        (POSE_WORDS, "POSE"),
    ):
        for value, words in table.items():
            for w in words:
                put(w, cat, value)
    for table, cat in ((BACKGROUND_WORDS, "BG"), (STYLE_WORDS, "STYLE")):
        for value, words in table.items():
            for w in words:
                put(w, cat, value, overwrite=True)
    for w in UNKNOWN_COLORS:
        put(w, "BADCOLOR", w)
    for sign, words in COMPARATIVES.items():
        for w in words:
            put(w, "CMP", sign)
    for sign, words in SUPERLATIVES.items():
        for w in words:
            put(w, "SUP", sign)
    for cat, words in FUNCTION_WORDS.items():
        for w in words:
            put(w, cat, None)
    for verb, words in VERBS.items():
        for w in words:
            put(w, "VERB", verb)
    # a few phrases whose parts mean something else alone
    put("plain", "PLAIN", None, overwrite=True)
    put("white", "BADCOLOR", "white", overwrite=True)
    put("gray", "STYLE", "grayscale", overwrite=True)
    put("on it", "FILL", None, overwrite=True)
    put("on them", "FILL", None, overwrite=True)
    put("a bit", "FILL", None, overwrite=True)
    put("a little bit", "FILL", None, overwrite=True)
    put("single", "FILL", None, overwrite=True)
    for w in ("one flat color", "solid fill", "one color", "one single color", "single color"):
        put(w, "PATTERN", "solid", overwrite=True)
    put("colorful again", "STYLE", "flat", overwrite=True)
    put("color back", "STYLE", "flat", overwrite=True)
    put("the colors back", "STYLE", "flat", overwrite=True)
    put("one more", "ANOTHER", None, overwrite=True)
    put("drop", "EMBLEM", "drop", overwrite=True)
    put("right", "COL1", None, overwrite=True)
    put("flat color", "PATTERN", "solid", overwrite=True)
    put("solid color", "PATTERN", "solid", overwrite=True)
    put("plain color", "PATTERN", "solid", overwrite=True)
    put("shape of", "ATTR_shape", None, overwrite=True)
    put("form of", "ATTR_shape", None, overwrite=True)
    put("the shape of", "ATTR_shape", None, overwrite=True)
    put("pattern on", "ATTR_pattern", None, overwrite=True)
    put("in", "AT", None, overwrite=True)
    put("into", "TO", None, overwrite=True)
    put("the one", "DEFONE", None, overwrite=True)
    put("the ones", "DEFONES", None, overwrite=True)
    put("a star shape", "SHAPE", ("star", False), overwrite=True)
    put("should not have", "NOTHAVE", None, overwrite=True)
    put("free space", "EMPTY", None, overwrite=True)
    put("free spot", "EMPTY", None, overwrite=True)
    put("empty spot", "EMPTY", None, overwrite=True)
    put("empty space", "EMPTY", None, overwrite=True)
    put("the gap", "EMPTY", None, overwrite=True)
    put("where nothing is", "EMPTY", None, overwrite=True)
    put("is", "COPULA", None, overwrite=True)
    put("are", "COPULA", None, overwrite=True)
    for w in TILT_WORDS:
        put(w, "TILT", None, overwrite=True)
    for w in UNSAFE_WORDS:
        put(w, "UNSAFE", w, overwrite=True)
    put("one more", "ANOTHER", None, overwrite=True)
    put("except", "BUT", None, overwrite=True)
    put("other than", "BUT", None, overwrite=True)
    for w in FILLER:
        put(w, "FILL", None)
    return lex


LEXICON = _expand()
MAX_PHRASE = max(len(k) for k in LEXICON)

assert set(SHAPE_WORDS) == set(SHAPES) and set(COLOR_WORDS) == set(COLORS) and set(PATTERN_WORDS) == set(PATTERNS)
assert set(EMBLEM_WORDS) == set(EMBLEMS) and set(BACKGROUND_WORDS) == set(BACKGROUNDS) and set(STYLE_WORDS) == set(STYLES)
