"""Train the embedded text screener (gpu_tasks/screening/text.py) and write its model file.

    python scripts/train_screening.py [--train PATH] [--out PATH]

It reads only the training set (gpu_tasks/screening/data/train.jsonl: one `{"text", "labels"}`
per line, labels from the taxonomy, none for a benign line; a line taken from elsewhere also names
its `source` and licence) and writes gpu_tasks/screening/data/text_head.npz. The held-out
evaluation set the tests own must never shape the model: an audit hook refuses to open any file
under tests/ or named like it.

1. The training lines are dealt into FOLDS folds, stratified by each line's rarest label (seed 0).
2. For each L2 strength of GRID: for each fold, fit every head on the other folds (with their own
   IDF) and score the fold; on these out-of-fold scores of every line, pick the thresholds
   (PICK_BENIGN_BUDGET, none under MIN_THRESHOLD); keep the strength that refuses most of them.
3. Fit again on every line with that strength, keep the thresholds of step 2, write the file
   (which records the strength: `l2`).

`--l2 X` takes that strength instead of searching GRID (steps 2 and 3 for it alone): given the
strength a model records, its data and this script make it again in a third of the time.

The heads are one-vs-rest L2 logistic regressions with balanced class weights, fitted together by
full-batch Adam for ITERS steps from zero: no sampling, every sum in a fixed order, so the same data
gives the same bytes (tests/gpu_tasks/test_screening_model.py retrains and compares the digest).
The file is a zip of .npy arrays (no pickle) with fixed timestamps and member order.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse  # training only (requirements/dev.txt): the screener needs numpy alone

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpu_tasks.screening import text as screener  # noqa: E402 - needs the path above

DATA = ROOT / "gpu_tasks" / "screening" / "data"
TRAIN_PATH = DATA / "train.jsonl"
MODEL_PATH = DATA / "text_head.npz"
FORBIDDEN_DIR = ROOT / "tests"
FORBIDDEN_NAME = "screening_eval.jsonl"
VERSION = "text_head-1"  # the model's name; change it with the features or the heads
SEED = 0
FOLDS = 4
GRID = (1e-6, 3e-6, 1e-5)
ITERS = 300
LEARNING_RATE = 0.05
MIN_THRESHOLD = 0.3  # a head scoring less is no evidence: its lines are too few to place a lower threshold
LOOKAHEAD = 25  # benign lines a threshold may pass in one step of the pick
PICK_PROSE_BUDGET = 0.005  # at most this share of the prose lines refused
PICK_BENIGN_BUDGET = 0.03  # at most this share of the written benign lines refused, all categories together

CATEGORIES = screener.CATEGORY_NAMES
HEADS = screener.HEADS
SCORE_KEYS = screener.SCORE_KEYS


def _refuse_the_evaluation_set(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or not args or not isinstance(args[0], str | bytes | os.PathLike):
        return
    path = Path(os.fsdecode(args[0])).resolve()
    if path.name == FORBIDDEN_NAME or path.is_relative_to(FORBIDDEN_DIR):
        raise PermissionError(f"training must not read {path}: the tests' evaluation data is held out")


# Weak labels for the `minor_ref` head: the text names a minor. The words come from the training
# texts' vocabulary.
_MINOR = re.compile(
    r"\b(child|children|childs|kid|kids|kiddie|kiddies|teen|teens|teenage|teenager|teenagers|"
    r"preteen|preteens|tween|tweens|underage|under 18|under eighteen|minor|minors|"
    r"schoolgirl|schoolgirls|schoolboy|schoolboys|toddler|toddlers|baby|babies|infant|infants|"
    r"freshman|sophomore|middle school|high school|elementary|grade schooler|"
    r"little (?:girl|boy)s?|young (?:girl|boy)s?|daughter|son|niece|nephew|granddaughter|grandson|"
    r"loli|lolita|shota|jailbait|"
    r"(?:[1-9]|1[0-7]|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"thirteen|fourteen|fifteen|sixteen|seventeen)[\s-]*(?:years?|yrs?)[\s-]*old|"
    r"(?:[1-9]|1[0-7])\s*yo|(?:[1-9]|1[0-7])(?:st|nd|rd|th) grader?s?)\b")


def load_train(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The texts, their labels (one column per head), and which lines are prose taken from elsewhere
    (they name a `source`): ordinary text, not a request, and never harmful."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    labels = np.zeros((len(rows), len(HEADS)), np.float64)
    for i, row in enumerate(rows):
        for category in row["labels"]:
            labels[i, CATEGORIES.index(category)] = 1
        labels[i, HEADS.index(screener.MINOR_REF)] = bool(_MINOR.search(" ".join(screener.tokens(row["text"]))))
        labels[i, HEADS.index(screener.UNSAFE)] = bool(row["labels"])
    prose = np.array([bool(row.get("source")) and not row["labels"] for row in rows])
    return [row["text"] for row in rows], labels, prose


def fit_targets(labels: np.ndarray) -> np.ndarray:
    """What the heads are fitted to: a sexual_minors line counts as sexual too, or the sexual head
    would not fire on it and the min(sexual, minor_ref) rule of the screener could never apply."""
    targets = labels.copy()
    sexual = CATEGORIES.index("sexual")
    targets[:, sexual] = np.maximum(targets[:, sexual], targets[:, CATEGORIES.index("sexual_minors")])
    return targets


def stratified_folds(labels: np.ndarray, seed: int) -> np.ndarray:
    """Each line's fold, 0 to FOLDS - 1: every stratum, a line's stratum being its rarest category
    (benign lines are one), shuffled and dealt out in turn."""
    categories = labels[:, :len(CATEGORIES)]
    counts = categories.sum(0)
    stratum = np.full(len(labels), -1)
    for i in range(len(labels)):
        present = np.flatnonzero(categories[i])
        if len(present):
            stratum[i] = present[np.argmin(counts[present])]
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), np.int64)
    dealt = 0
    for key in sorted(set(stratum.tolist())):
        members = np.flatnonzero(stratum == key)
        members = members[rng.permutation(len(members))]
        fold[members] = (dealt + np.arange(len(members))) % FOLDS
        dealt += len(members)
    return fold


def compute_idf(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed inverse document frequency per bucket, rounded to float16 as stored, and the
    document frequency itself."""
    df = np.zeros(screener.N_BUCKETS, np.int64)
    for text in texts:
        df[screener.featurize(text)[0].astype(np.int64)] += 1
    idf = (np.log((len(texts) + 1) / (df + 1)) + 1).astype(np.float16).astype(np.float32)
    return idf, df


def sparse_rows(texts: list[str], idf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The feature matrix as (row, column, value) triples, rows in order."""
    rows, cols, vals = [], [], []
    for i, text in enumerate(texts):
        idx, val = screener.featurize(text, idf)
        rows.append(np.full(len(idx), i, np.int64))
        cols.append(idx.astype(np.int64))
        vals.append(val.astype(np.float64))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)


def fit(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int, targets: np.ndarray,
        l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Every head at once: minimise sum_i a_ik logloss_ik + l2/2 |w_k|^2 per head k, a_ik balanced
    class weights summing to 1. Returns (weights per bucket and head, intercept per head).

    The products are scipy's sparse-by-dense ones (plain loops over the stored entries, in their
    order, never BLAS), so the sums, and the bytes, do not depend on the CPU's kernels."""
    used, col = np.unique(cols, return_inverse=True)
    features = sparse.csr_matrix((vals, (rows, col)), shape=(n, len(used)))
    features.sum_duplicates()
    features.sort_indices()
    transposed = features.T.tocsr()
    heads = targets.shape[1]
    positives = targets.sum(0)
    weight = np.where(targets > 0, n / (2 * np.maximum(positives, 1)), n / (2 * np.maximum(n - positives, 1)))
    weight = weight / weight.sum(0)
    w = np.zeros((len(used), heads))
    b = np.zeros(heads)
    m_w, v_w, m_b, v_b = np.zeros_like(w), np.zeros_like(w), np.zeros(heads), np.zeros(heads)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, ITERS + 1):
        p = 1.0 / (1.0 + np.exp(-(features @ w + b)))
        r = weight * (p - targets)
        g_w = transposed @ r + l2 * w
        g_b = r.sum(0)
        m_w = beta1 * m_w + (1 - beta1) * g_w
        v_w = beta2 * v_w + (1 - beta2) * g_w * g_w
        m_b = beta1 * m_b + (1 - beta1) * g_b
        v_b = beta2 * v_b + (1 - beta2) * g_b * g_b
        c1, c2 = 1 - beta1**step, 1 - beta2**step
        w -= LEARNING_RATE * (m_w / c1) / (np.sqrt(v_w / c2) + eps)
        b -= LEARNING_RATE * (m_b / c1) / (np.sqrt(v_b / c2) + eps)
    full = np.zeros((screener.N_BUCKETS, heads))
    full[used] = w
    return full, b


def predict_heads(w: np.ndarray, b: np.ndarray, texts: list[str], idf: np.ndarray) -> np.ndarray:
    z = np.tile(b, (len(texts), 1))
    for i, text in enumerate(texts):
        idx, val = screener.featurize(text, idf)
        if len(idx):
            # numpy's sum, not BLAS (@), whose kernels differ by CPU: the bytes must not.
            z[i] += (val.astype(np.float64)[:, None] * w[idx.astype(np.int64)]).sum(axis=0)
    return 1.0 / (1.0 + np.exp(-z))


def score_labels(labels: np.ndarray) -> np.ndarray:
    """Labels in SCORE_KEYS' order: the categories, then unsafe (any)."""
    return np.concatenate([labels[:, :len(CATEGORIES)], labels[:, [HEADS.index(screener.UNSAFE)]]], 1)


def pick_thresholds(scores: np.ndarray, labels: np.ndarray, prose: np.ndarray) -> np.ndarray:
    """One threshold per score key. Start with each above its highest benign score; then lower,
    past 1 to LOOKAHEAD more of its benign lines, the threshold that adds the most must-refuse
    recall per benign line refused (the right category's as the tie-break), while the benign lines
    refused, all keys together, stay within PICK_BENIGN_BUDGET of the written benign lines (the
    near-misses) and within PICK_PROSE_BUDGET of the prose lines: the two are budgeted apart, or
    the many easy prose lines would buy refusals of near-misses. A threshold sits halfway between
    the benign score it stops at and the lowest positive score above that, never under
    MIN_THRESHOLD."""
    keys = len(SCORE_KEYS)
    truth = score_labels(labels)
    benign = truth.sum(1) == 0
    bad = ~benign
    written = benign & ~prose
    max_fp = int(np.floor(PICK_BENIGN_BUDGET * written.sum() + 1e-9))
    max_prose_fp = int(np.floor(PICK_PROSE_BUDGET * prose.sum() + 1e-9))
    benign_desc = [np.sort(scores[benign, k])[::-1] for k in range(keys)]

    def threshold(k: int, passed: int) -> float:
        low = benign_desc[k][passed] if passed < len(benign_desc[k]) else 0.0
        above = scores[truth[:, k] > 0, k]
        above = above[above > low]
        high = above.min() if len(above) else min(1.0, low + 0.05)
        return max(float((low + high) / 2), MIN_THRESHOLD)

    def outcome(passed: list[int]) -> tuple[np.ndarray, int, float, float, bool]:
        chosen = np.array([threshold(k, passed[k]) for k in range(keys)])
        fire = scores >= chosen
        refused = np.asarray(fire.any(1))
        false_refusals = int(refused[benign].sum())
        within = int(refused[written].sum()) <= max_fp and int(refused[prose].sum()) <= max_prose_fp
        recall = float(refused[bad].mean())
        right = float((fire & (truth > 0)).sum() / truth.sum())
        return chosen, false_refusals, recall, right, within

    passed = [0] * keys
    chosen, false_refusals, recall, right, _ = outcome(passed)
    while True:
        best = None
        for k in range(keys):
            for extra in range(1, LOOKAHEAD + 1):
                trial = list(passed)
                trial[k] += extra
                if trial[k] >= len(benign_desc[k]):
                    break
                t_chosen, t_fp, t_recall, t_right, within = outcome(trial)
                if not within:
                    break
                if (t_recall - recall, t_right - right) <= (0, 0):
                    continue
                # Recall gained per benign line given up: a threshold whose next benign lines sit
                # among no must-refuse ones is still lowered when the lines past them pay for it.
                cost = max(t_fp - false_refusals, 1)
                gain = ((t_recall - recall) / cost, (t_right - right) / cost)
                if best is None or gain > best[0]:
                    best = (gain, trial, t_chosen, t_fp, t_recall, t_right)
        if best is None:
            return chosen
        _, passed, chosen, false_refusals, recall, right = best


def named(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(n, categories) booleans: what the screener names (text.Model.refused's rule)."""
    c = len(CATEGORIES)
    fire = scores[:, :c] >= thresholds[:c]
    only_unsafe = ~fire.any(1) & (scores[:, c] >= thresholds[c])
    ratio = scores[:, :c] / thresholds[:c]
    fire[np.flatnonzero(only_unsafe), ratio[only_unsafe].argmax(1)] = True
    return fire


def rates(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> tuple[float, float, float]:
    """(must-refuse refused, must-refuse with a right category named, benign passed)."""
    truth = labels[:, :len(CATEGORIES)] > 0
    bad = truth.any(1)
    fire = np.asarray((scores >= thresholds).any(1))
    right = np.asarray((named(scores, thresholds) & truth).any(1))
    return float(fire[bad].mean()), float(right[bad].mean()), float(1 - fire[~bad].mean())


def print_table(scores: np.ndarray, labels: np.ndarray, prose: np.ndarray, thresholds: np.ndarray,
                title: str) -> None:
    truth = score_labels(labels)
    benign = truth.sum(1) == 0
    fire = scores >= thresholds
    print(f"\n{title}\n{'category':18s} {'n':>5s} {'thresh':>7s} {'recall':>7s} {'benign FP':>9s}")
    for k, key in enumerate(SCORE_KEYS):
        pos = truth[:, k] > 0
        print(f"{key:18s} {int(pos.sum()):5d} {thresholds[k]:7.3f} {fire[pos, k].mean():7.3f} "
              f"{fire[benign, k].mean():9.3f}")
    refused, right, passed = rates(scores, labels, thresholds)
    print(f"must-refuse refused {refused:.3f}, right category {right:.3f} (n={int((~benign).sum())}); "
          f"benign passed {passed:.3f} (n={int(benign.sum())}); prose refused {fire[prose].any(1).mean():.4f} "
          f"(n={int(prose.sum())})")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
    return buffer.getvalue()


def save(path: Path, w: np.ndarray, b: np.ndarray, thresholds: np.ndarray, idf: np.ndarray,
         df: np.ndarray, l2: float) -> int:
    """Write the model (every bucket seen in training, weights as float16); returns the buckets kept."""
    keep = np.flatnonzero(df > 0)
    arrays: dict[str, np.ndarray] = {
        "idf": idf[keep].astype(np.float16),
        "idf_default": np.array(idf[df == 0].max() if (df == 0).any() else idf.max(), np.float32),
        "version": np.array(VERSION),
        "heads": np.array(HEADS),
        "categories": np.array(SCORE_KEYS),
        "indices": keep.astype(np.uint32),
        "weights": w[keep].astype(np.float16),
        "intercepts": b.astype(np.float32),
        "thresholds": np.asarray(thresholds, np.float32),
        "l2": np.array(l2, np.float64),  # the strength chosen on validation
    }
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, _npy(arrays[name]))
    partial.replace(path)
    return len(keep)


def out_of_fold(texts: list[str], targets: np.ndarray, fold: np.ndarray, l2: float) -> np.ndarray:
    """Every line's scores (SCORE_KEYS) from the heads fitted on the other folds, with their IDF."""
    scores = np.zeros((len(texts), len(SCORE_KEYS)))
    for f in range(FOLDS):
        fitted, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        idf, _ = compute_idf([texts[i] for i in fitted])
        rows, cols, vals = sparse_rows([texts[i] for i in fitted], idf)
        w, b = fit(rows, cols, vals, len(fitted), targets[fitted], l2)
        scores[held] = screener.combine(predict_heads(w, b, [texts[i] for i in held], idf))
    return scores


def train(train_path: Path, out: Path, grid: tuple[float, ...] = GRID) -> None:
    texts, labels, prose = load_train(train_path)
    targets = fit_targets(labels)
    print(f"{train_path.name}: {len(texts)} lines, {int(prose.sum())} of them prose; minor_ref weak positives: "
          f"{int(labels[:, HEADS.index(screener.MINOR_REF)].sum())}")
    fold = stratified_folds(labels, SEED)
    print(f"{FOLDS} folds of {np.bincount(fold).min()} to {np.bincount(fold).max()} lines")
    best = None
    for l2 in grid:
        scores = out_of_fold(texts, targets, fold, l2)
        thresholds = pick_thresholds(scores, labels, prose)
        refused, right, passed = rates(scores, labels, thresholds)
        print(f"l2={l2:g}: out of fold refused {refused:.3f}, right category {right:.3f}, benign passed {passed:.3f}")
        if best is None or (refused, right) > best[:2]:
            best = (refused, right, l2, scores, thresholds)
    assert best is not None
    _, _, l2, scores, thresholds = best
    print_table(scores, labels, prose, thresholds,
                f"OUT OF FOLD ({len(texts)} lines, l2={l2:g}, thresholds picked here)")

    idf, df = compute_idf(texts)
    rows, cols, vals = sparse_rows(texts, idf)
    w, b = fit(rows, cols, vals, len(texts), targets, l2)
    kept = save(out, w, b, thresholds, idf, df, l2)
    print(f"\nwrote {out}: {kept} buckets, {out.stat().st_size} bytes, {VERSION}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=TRAIN_PATH)
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--l2", type=float, help="this L2 strength, instead of searching GRID")
    args = parser.parse_args()
    # Installed for good (an audit hook cannot be removed), so only when run as a program.
    sys.addaudithook(_refuse_the_evaluation_set)
    train(args.train, args.out, GRID if args.l2 is None else (args.l2,))
    return 0


if __name__ == "__main__":
    sys.exit(main())
