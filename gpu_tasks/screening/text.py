"""The embedded text screener: a linear classifier over hashed n-grams, numpy only, on CPU.

Features. A text is normalised (format characters such as zero-width spaces, combining marks and
the other characters Unicode defines as ignorable, such as the Hangul fillers, dropped, NFKC, lower
case, leetspeak folded inside words, letter runs squeezed to two, apostrophes dropped), split
into words, and each word, each pair of adjacent words and each character 3- to 5-gram of a word
(with a space at either end, from its first MAX_TOKEN characters) is hashed with CRC-32 into
N_BUCKETS buckets. Values are sublinear term frequencies (1 + log tf) times the
inverse document frequency of the training texts, L2-normalised per scored unit.

Heads. One logistic regression per category of the taxonomy, plus `minor_ref` (the text refers
to a minor) and `unsafe` (any category). A category is refused when its score reaches the
threshold picked for it on a validation split of the training data; when none does but `unsafe`
does, the category closest to its threshold is named. `sexual_minors` also fires where the sexual
score and the minor-reference score are both high in the same unit.

Units. A text of up to WINDOW characters is one unit; a longer one is cut into WINDOW-character
windows overlapping by OVERLAP. A text over SHORT_UNIT characters is also scored per sentence (a
sentence over PIECE characters in half-overlapping pieces), because the training lines are short
and a harmful sentence padded with neutral text inside one window is diluted by the normalisation.
A field's score per category is its highest over units.

Bounds. A text over MAX_CHARS characters raises ValueError before any work (the caller refuses it):
every text a job input screens is at most that long. The work is linear in the text's length: the
units hold at most about (4/3 + 2) x MAX_CHARS of its characters whatever its shape, and NFKC
expands a character 18-fold at most (U+FDFA), the slowest shape bench/screening.py measures. The
char n-gram cache keeps at most _CHAR_CACHE words of at most MAX_TOKEN characters.

Limits. English only, and trained on the repository's own lines (data/train.jsonl), so it knows
the phrasings written there; letters of other scripts that look Latin (the Cyrillic U+0456) are
not folded. Its figures on the tests' held-out set are in bench/RESULTS.md.

The model file (`data/text_head.npz`, no pickle) is what `scripts/train_screening.py` makes from
`data/train.jsonl`; it is loaded once per process, on first use.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import unicodedata
import zlib
from array import array
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import numpy as np

from gpu_tasks.screening.taxonomy import CATEGORIES

MODEL_PATH = Path(__file__).resolve().parent / "data" / "text_head.npz"

# The longest text a screened job input accepts (TTS text: gpu_tasks/engines/tts.py).
MAX_CHARS = 5000
N_BUCKETS = 2**18
WINDOW = 400
OVERLAP = 100
SHORT_UNIT = 150
PIECE = 100
PACK_MIN = 40  # a sentence shorter than this is scored together with the next
MAX_TOKEN = 40  # char n-grams come from at most this many characters of a word
# The length (with IDF weights) under which a unit's features are not scaled up to unit length:
# about the 5th percentile of the training lines' (a word is 7 to 19, a training line 37 to 66).
NORM_FLOOR = 40.0
_CHAR_CACHE = 20_000  # words whose char n-grams are kept: a few MB at most

CATEGORY_NAMES: tuple[str, ...] = tuple(CATEGORIES)
MINOR_REF = "minor_ref"
UNSAFE = "unsafe"
HEADS: tuple[str, ...] = (*CATEGORY_NAMES, MINOR_REF, UNSAFE)
SCORE_KEYS: tuple[str, ...] = (*CATEGORY_NAMES, UNSAFE)

_MASK = N_BUCKETS - 1
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_TOKENISH = re.compile(r"[\w@$]+")
_NUMBER_LIKE = re.compile(r"^[\d.,]+(?:[a-z]{0,3})$")  # 14, 14yo, 4k, 1080p, 18th
_HAS_LETTER = re.compile(r"[^\W\d_]")
_SQUEEZE = re.compile(r"([^\W\d_])\1{2,}")
_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
_WORD = re.compile(r"[^\W_]+")
_SENTENCE_END = re.compile(r"(?<=[.!?;:\n])\s+")
_LEETISH = re.compile(r"[013457@$]")
_INVISIBLE = frozenset({"Cf", "Mn", "Me"})  # format characters (U+200B-U+200D, U+2060, U+FEFF...) and marks
# The rest of Unicode's Default_Ignorable_Code_Point, characters that render as nothing but are
# neither of those categories: the Hangul fillers (letters, Lo: "t\u3164o\u3164r..." would be one
# unknown word) and the unassigned code points reserved for invisible characters (Cn).
_IGNORABLE = dict.fromkeys([0x115F, 0x1160, 0x3164, 0xFFA0, 0x2065, *range(0xFFF0, 0xFFF9),
                            *range(0xE0000, 0xE1000)])


def _fold(match: re.Match[str]) -> str:
    # Leetspeak is folded only inside words that have a letter and are not number-like, so "k1ll"
    # and "s3x" fold but "14 year old", "14yo" and "$100" keep their digits: ages matter here.
    token = match.group(0)
    if _HAS_LETTER.search(token) and not _NUMBER_LIKE.match(token):
        return token.translate(_LEET)
    return token


def normalize(text: str) -> str:
    if not text.isascii():
        # Invisible characters split a word for the tokenizer ("k\u200bill") without changing what a
        # reader or a model sees, so they go before anything else; accents go with them ("kíll").
        decomposed = unicodedata.normalize("NFKD", text).translate(_IGNORABLE)
        text = "".join(ch for ch in decomposed if unicodedata.category(ch) not in _INVISIBLE)
    text = unicodedata.normalize("NFKC", text).lower()
    if _LEETISH.search(text):  # only these characters fold
        text = _TOKENISH.sub(_fold, text)
    text = _SQUEEZE.sub(r"\1\1", text)
    return _APOSTROPHES.sub("", text)


def tokens(text: str) -> list[str]:
    return _WORD.findall(normalize(text))


def _bucket(feature: str) -> int:
    return zlib.crc32(feature.encode("utf-8")) & _MASK


@lru_cache(maxsize=_CHAR_CACHE)
def _word_bucket(word: str) -> int:
    return _bucket("w:" + word)


@lru_cache(maxsize=_CHAR_CACHE)
def _pair_bucket(first: str, second: str) -> int:
    return _bucket(f"b:{first} {second}")


@lru_cache(maxsize=_CHAR_CACHE)
def _char_buckets(word: str) -> bytes:
    """The buckets of a word's char 3- to 5-grams, packed as uint32 (the key is at most MAX_TOKEN long)."""
    padded = f" {word} "
    return array("I", (_bucket("c:" + padded[i:i + n]) for n in (3, 4, 5)
                       for i in range(len(padded) - n + 1))).tobytes()


def featurize(text: str, idf: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One unit -> (bucket indices, sorted uint32; float32 values, L2-normalised). `idf`: one float32
    weight per bucket."""
    words = tokens(text)
    # The caches keep words of at most MAX_TOKEN characters: a few MB, whatever the texts.
    plain = array("I", (_word_bucket(w) if len(w) <= MAX_TOKEN else _bucket("w:" + w) for w in words))
    plain.extend(_pair_bucket(a, b) if len(a) <= MAX_TOKEN >= len(b) else _bucket(f"b:{a} {b}")
                 for a, b in pairwise(words))
    packed = b"".join([plain.tobytes(), *(_char_buckets(w[:MAX_TOKEN]) for w in words)])
    if not packed:
        return np.zeros(0, np.uint32), np.zeros(0, np.float32)
    idx, count = np.unique(np.frombuffer(packed, dtype=np.uint32), return_counts=True)
    val = 1.0 + np.log(count.astype(np.float32))
    if idf is not None:
        val = val * idf[idx]
    # numpy's own sums, never BLAS (np.dot, @): OpenBLAS picks its kernels by CPU, and they add in
    # different orders, so the same data would train a model of other bytes on another machine.
    # Normalised to unit length, except that a unit with less weight than NORM_FLOOR keeps the
    # length it has over NORM_FLOOR: a word or two carry less evidence than a sentence, and scaled up
    # to a sentence's length a lone common word ("and", "two") would read as strongly as a request.
    val /= max(float(np.sqrt(np.sum(val * val))), NORM_FLOOR)
    return idx, val.astype(np.float32)


def windows(text: str) -> list[str]:
    if len(text) <= WINDOW:
        return [text]
    step = WINDOW - OVERLAP
    return [text[start:start + WINDOW] for start in range(0, len(text) - OVERLAP, step)]


def short_units(text: str) -> list[str]:
    """Sentence-sized units of a text over SHORT_UNIT characters (none for a shorter one): each
    sentence, a fragment under PACK_MIN characters joined to the next, a sentence over PIECE
    characters cut into PIECE-character pieces overlapping by half, cut at spaces where there are."""
    if len(text) <= SHORT_UNIT:
        return []
    pieces = []
    step = PIECE // 2
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= PIECE:
            pieces.append(sentence)
            continue
        start = 0
        while start < len(sentence):
            end = min(len(sentence), start + PIECE)
            if end < len(sentence):
                space = sentence.rfind(" ", start + step, end)
                end = space if space > start else end
            pieces.append(sentence[start:end])
            if end >= len(sentence):
                break
            space = sentence.find(" ", start + step, end)
            start = space + 1 if space > start else start + step
    units: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) >= PACK_MIN:
            units.append(current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    if current:
        units.append(current)
    return units


def units(text: str) -> list[str]:
    """What a text is scored on; ValueError past MAX_CHARS, so the work stays bounded."""
    if len(text) > MAX_CHARS:
        raise ValueError(f"a text of {len(text)} characters is over the screener's {MAX_CHARS}")
    return windows(text) + short_units(text)


def combine(heads: np.ndarray) -> np.ndarray:
    """Head probabilities (n, len(HEADS)) -> scores (n, len(SCORE_KEYS)). `sexual_minors` is at least
    min(sexual, minor_ref) in each unit: its own head has few examples, and sexual content that
    refers to a minor in the same unit is that category whatever its own head says."""
    scores = np.concatenate([heads[:, :len(CATEGORY_NAMES)], heads[:, [HEADS.index(UNSAFE)]]], 1)
    sexual, minors = CATEGORY_NAMES.index("sexual"), CATEGORY_NAMES.index("sexual_minors")
    scores[:, minors] = np.maximum(scores[:, minors], np.minimum(heads[:, sexual], heads[:, HEADS.index(MINOR_REF)]))
    return scores


@dataclass(frozen=True)
class Model:
    weights: np.ndarray  # (N_BUCKETS, len(HEADS)) float32
    intercepts: np.ndarray  # (len(HEADS),) float32
    idf: np.ndarray  # (N_BUCKETS,) float32
    thresholds: dict[str, float]  # SCORE_KEYS -> threshold
    version: str  # the model's name and the first 12 hex digits of its file's sha256

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> Model:
        raw = path.read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            heads = tuple(str(h) for h in z["heads"])
            keys = tuple(str(c) for c in z["categories"])
            if heads != HEADS or keys != SCORE_KEYS:
                raise ValueError(f"{path.name} has heads {heads} and scores {keys}, not the taxonomy's")
            indices = z["indices"].astype(np.int64)
            weights = np.zeros((N_BUCKETS, len(HEADS)), np.float32)
            weights[indices] = z["weights"].astype(np.float32)
            idf = np.full(N_BUCKETS, float(z["idf_default"]), np.float32)
            idf[indices] = z["idf"].astype(np.float32)
            thresholds = {key: float(t) for key, t in zip(keys, z["thresholds"].astype(np.float64), strict=True)}
            version = f"{z['version']}:{hashlib.sha256(raw).hexdigest()[:12]}"
            return cls(weights, z["intercepts"].astype(np.float32), idf, thresholds, version)

    def head_scores(self, texts: list[str]) -> np.ndarray:
        """Each head's probability for each unit, as it stands (no windows)."""
        z = np.tile(self.intercepts, (len(texts), 1))
        for row, text in enumerate(texts):
            idx, val = featurize(text, self.idf)
            if len(idx):
                z[row] += (val[:, None] * self.weights[idx]).sum(axis=0)  # not BLAS: see featurize
        return 1.0 / (1.0 + np.exp(-z))

    def scores(self, text: str) -> dict[str, float]:
        """SCORE_KEYS -> the highest score over the text's units."""
        best = combine(self.head_scores(units(text))).max(axis=0)
        return {key: float(best[k]) for k, key in enumerate(SCORE_KEYS)}

    def refused(self, scores: dict[str, float], scale: float = 1.0) -> tuple[str, ...]:
        """The categories refused for these scores, in the taxonomy's order (empty: the text passes),
        each at `scale` times its threshold (1.0: the platform's policy; less: a stricter one)."""
        named = tuple(c for c in CATEGORY_NAMES if scores[c] >= self.thresholds[c] * scale)
        if not named and scores[UNSAFE] >= self.thresholds[UNSAFE] * scale:
            named = (max(CATEGORY_NAMES, key=lambda c: scores[c] / self.thresholds[c]),)
        return named


_model: Model | None = None
_model_lock = threading.Lock()


def model() -> Model:
    """The model, loaded by the first caller of the process; the rest wait for it, never load twice."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                _model = Model.load()
    return _model


def refused_categories(text: str) -> tuple[str, ...]:
    """The taxonomy's categories this text is refused for (empty: it passes). ValueError past MAX_CHARS."""
    return refused_at(text, (1.0,))[0]


def refused_at(text: str, scales: tuple[float, ...]) -> list[tuple[str, ...]]:
    """The categories this text is refused for at each share of the thresholds (1.0: the platform's
    policy), the text scored once. ValueError past MAX_CHARS."""
    if not text.strip():
        units(text)  # the length bound holds for blank text too
        return [() for _ in scales]
    current = model()
    scores = current.scores(text)
    return [current.refused(scores, scale) for scale in scales]
