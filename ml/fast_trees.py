"""A compiled tree walker for nightly batch scoring: margin and approximate contributions of an
XGBoost booster in one pass over the rows, bit-identical to XGBoost's own.

Why: XGBoost computes the margin (`predict`) and the Saabas-style contributions behind the
reasons (`pred_contribs=True, approx_contribs=True`) in two passes, and the second one zeroes and
re-adds a whole (features + 1) vector per tree per row; for a million leads and 500 trees that
was most of a nightly run. A tree's approximate contributions depend only on the leaf a row
reaches, so this module precomputes, per leaf, the few (feature, contribution) pairs of its
path once per model, and one walk per row and tree then adds the leaf's value to the margin and
its pairs to the row's contributions.

Exactness: every number is computed in float32 in XGBoost's order (its `FillNodeMeanValues` and
`CalculateApproxContributions`, the margin starting from the base score and adding one tree
after the other), so the margin and contributions equal XGBoost's bit for bit; batch scores and
reasons are therefore exactly those of the XGBoost path (tests/ml/test_fast_trees.py compares
them). Models this walker does not cover (several outputs, vector leaves, DART tree weights,
linear boosters) are refused with `Unsupported`, and the caller uses XGBoost.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import json
import math
import threading
import types
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb


class Unsupported(Exception):
    """The booster has a shape the walker does not reproduce exactly; use XGBoost."""


@dataclass(frozen=True)
class CompiledTrees:
    """One booster's trees, each laid out as a perfect binary tree of `depth` levels.

    Internal node k of a tree has children 2k+1 and 2k+2, so a walk needs no child pointers; a
    leaf shallower than `depth` becomes a chain of splits that always go left (feature 0 below
    +inf, missing to the left) ending in its leftmost descendant, which carries its value.
    """

    depth: int
    feature: np.ndarray  # int32 (trees, 2^depth - 1)
    threshold: np.ndarray  # float32 (trees, 2^depth - 1): numeric split, left if value < it
    default_left: np.ndarray  # uint8 (trees, 2^depth - 1): where a missing value goes
    categorical: np.ndarray  # uint8 (trees, 2^depth - 1): a categorical split
    categories: np.ndarray  # uint64 (trees, 2^depth - 1): bit c set = category c goes right
    leaf_value: np.ndarray  # float32 (trees, 2^depth)
    # Per leaf, its path's contributions as (feature, value) pairs, `depth` of them; unused
    # pairs name the extra column n_features with value 0.
    entry_feature: np.ndarray  # int32 (trees, 2^depth, depth)
    entry_value: np.ndarray  # float32 (trees, 2^depth, depth)
    base_margin: np.float32
    n_features: int
    # uint32 (trees, 2^depth - 1): feature | categorical << 30 | missing goes right << 31, what
    # the walker reads of a node in one load besides its threshold or category set
    node_word: np.ndarray | None = None


# Feature indices a node word holds (see CompiledTrees.node_words).
_FEATURE_BITS = 2**30
# The deepest tree laid out in full (2^depth leaves per tree); deeper models use XGBoost.
MAX_DEPTH = 10
# Category codes the bitset of one word holds; a model with more levels uses XGBoost.
MAX_CATEGORIES = 64

_F32 = np.float32


def _base_margin(booster: xgb.Booster, objective: str, base_score: float) -> np.float32:
    """The margin every prediction starts from, as XGBoost computes it from the stored
    base_score (float32 arithmetic; the logistic objectives' ProbToMargin uses the C logf)."""
    p = _F32(base_score)
    if objective in ("binary:logistic", "binary:logitraw", "reg:logistic"):
        if objective == "binary:logitraw":
            return p
        return _F32(-_logf(_F32(_F32(1.0) / p - _F32(1.0))))
    if objective.startswith("reg:squarederror") or objective in ("reg:absoluteerror",
                                                                  "binary:hinge"):
        return p
    raise Unsupported(f"objective {objective!r}")


_libm = None


def _logf(value: np.float32) -> np.float32:
    global _libm
    if _libm is None:
        _libm = ctypes.CDLL(ctypes.util.find_library("m"))
        _libm.logf.restype = ctypes.c_float
        _libm.logf.argtypes = [ctypes.c_float]
    return _F32(_libm.logf(float(value)))


def compile_trees(booster: xgb.Booster) -> CompiledTrees:
    """Lay a booster's trees out for the walker and precompute each leaf's path contributions.

    Raises:
        Unsupported: a model the walker does not reproduce exactly.
    """
    model = json.loads(booster.save_raw("json"))
    learner = model["learner"]
    gbm = learner["gradient_booster"]
    if gbm.get("name") != "gbtree":
        raise Unsupported(f"booster {gbm.get('name')!r}")
    param = learner["learner_model_param"]
    if int(param.get("num_class", 0)) > 1 or int(param.get("num_target", 1)) != 1:
        raise Unsupported("several outputs")
    raw_base = param["base_score"]
    base = json.loads(raw_base) if raw_base.startswith("[") else [float(raw_base)]
    if len(base) != 1:
        raise Unsupported("several base scores")
    trees = gbm["model"]["trees"]
    if any(int(t["tree_param"].get("size_leaf_vector", 1)) > 1 for t in trees):
        raise Unsupported("vector leaves")
    base_margin = _base_margin(booster, learner["objective"]["name"], base[0])
    n_features = int(param["num_feature"])
    paths = [_tree_paths(tree) for tree in trees]
    depth = max((len(p) for tree_paths in paths for p, _ in tree_paths), default=0)
    depth = max(depth, 1)
    if depth > MAX_DEPTH:
        raise Unsupported(f"trees of depth {depth}")
    n_int, n_leaf = 2**depth - 1, 2**depth
    t_count = len(trees)
    out = CompiledTrees(
        depth=depth,
        feature=np.zeros((t_count, n_int), dtype=np.int32),
        threshold=np.full((t_count, n_int), np.inf, dtype=np.float32),
        default_left=np.ones((t_count, n_int), dtype=np.uint8),
        categorical=np.zeros((t_count, n_int), dtype=np.uint8),
        categories=np.zeros((t_count, n_int), dtype=np.uint64),
        leaf_value=np.zeros((t_count, n_leaf), dtype=np.float32),
        entry_feature=np.full((t_count, n_leaf, depth), n_features, dtype=np.int32),
        entry_value=np.zeros((t_count, n_leaf, depth), dtype=np.float32),
        base_margin=base_margin,
        n_features=n_features,
    )
    for t, (tree, tree_paths) in enumerate(zip(trees, paths, strict=True)):
        _lay_out(tree, tree_paths, t, out)
    if out.feature.max(initial=0) >= n_features:
        raise Unsupported("a split on a feature beyond num_feature")
    if n_features >= _FEATURE_BITS:
        raise Unsupported(f"{n_features} features")
    words = (out.feature.astype(np.uint32)
             | (out.categorical.astype(np.uint32) << np.uint32(30))
             | ((out.default_left == 0).astype(np.uint32) << np.uint32(31)))
    return dataclasses.replace(out, node_word=words)


def _tree_paths(tree: dict) -> list[tuple[list[tuple[int, bool]], int]]:
    """Every leaf of a tree with its path from the root: ([(node, went_right), ...], leaf)."""
    left, right = tree["left_children"], tree["right_children"]
    out, stack = [], [(0, [])]
    while stack:
        node, path = stack.pop()
        if left[node] < 0:
            out.append((path, node))
        else:
            stack.append((right[node], [*path, (node, True)]))
            stack.append((left[node], [*path, (node, False)]))
    return out


def _lay_out(tree: dict, tree_paths: list, t: int, out: CompiledTrees) -> None:
    """Tree `t` into `out`'s arrays, with each leaf's approximate contributions computed in
    float32 as XGBoost computes them."""
    left = tree["left_children"]
    right = tree["right_children"]
    cond = np.asarray(tree["split_conditions"], dtype=np.float32)
    hess = np.asarray(tree["sum_hessian"], dtype=np.float32)
    split = tree["split_indices"]
    n = len(left)
    # FillNodeMeanValues: a node's mean is its children's means weighted by their hessian
    # sums, in float32; a leaf's mean is its value.
    mean = np.zeros(n, dtype=np.float32)
    for node in _post_order(left, right):
        if left[node] < 0:
            mean[node] = cond[node]
        else:
            lo, hi = left[node], right[node]
            result = _F32(mean[lo] * hess[lo])
            result = _F32(result + _F32(mean[hi] * hess[hi]))
            mean[node] = _F32(result / hess[node])
    cats: dict[int, int] = {}
    values = tree.get("categories", [])
    for node, seg, size in zip(tree.get("categories_nodes", []),
                               tree.get("categories_segments", []),
                               tree.get("categories_sizes", []), strict=True):
        word = 0
        for c in values[seg: seg + size]:
            if not 0 <= c < MAX_CATEGORIES:
                raise Unsupported(f"category code {c}")
            word |= 1 << int(c)
        cats[node] = word
    split_type = tree.get("split_type", [0] * n)
    d = out.depth
    for path, leaf in tree_paths:
        k = 0
        contrib: dict[int, np.float32] = {}
        node_value = mean[0]
        for node, went_right in path:
            f = int(split[node])
            if split_type[node] == 1 and node not in cats:
                raise Unsupported("a categorical split without categories")
            out.feature[t, k] = f
            out.threshold[t, k] = cond[node]
            out.default_left[t, k] = tree["default_left"][node]
            out.categorical[t, k] = 1 if node in cats else 0
            out.categories[t, k] = np.uint64(cats.get(node, 0))
            child = right[node] if went_right else left[node]
            # CalculateApproxContributions: each edge adds the change of the node mean to the
            # split's feature
            contrib[f] = _F32(contrib.get(f, _F32(0.0)) + _F32(mean[child] - node_value))
            node_value = mean[child]
            k = 2 * k + (2 if went_right else 1)
        if path:  # and the leaf's value minus its own mean (0) to the last split's feature
            last = int(split[path[-1][0]])
            contrib[last] = _F32(contrib[last] + _F32(cond[leaf] - node_value))
        while k < 2**d - 1:  # a shallow leaf: always left down to the last level
            k = 2 * k + 1
        slot = k - (2**d - 1)
        out.leaf_value[t, slot] = cond[leaf]
        pairs = [(f, v) for f, v in contrib.items() if v != 0]  # adding 0 changes nothing
        for e, (f, v) in enumerate(pairs):
            out.entry_feature[t, slot, e] = f
            out.entry_value[t, slot, e] = v


def _post_order(left: list[int], right: list[int]) -> list[int]:
    order, stack = [], [0]
    while stack:
        node = stack.pop()
        order.append(node)
        if left[node] >= 0:
            stack += [left[node], right[node]]
    return order[::-1]


_compiled: weakref.WeakKeyDictionary[xgb.Booster, CompiledTrees] = weakref.WeakKeyDictionary()
_compiled_lock = threading.Lock()


def compiled(booster: xgb.Booster) -> CompiledTrees:
    """`compile_trees` of a booster, kept while the booster lives (boosters never change once
    trained and loaded)."""
    with _compiled_lock:
        trees = _compiled.get(booster)
        if trees is None:
            trees = _compiled[booster] = compile_trees(booster)
        return trees


def available() -> bool:
    """Whether the compiled walker can run here: numba (the `pipeline` extra) is installed.
    Imported when a batch needs it, or by the service's model loader (`warm_up`)."""
    return _numba() is not None


_NUMBA: object = False  # not looked for yet
numba = None  # the module once `_kernel` compiled the walker (its `prange` is read from here)


def _numba():  # noqa: ANN202 - the numba module or None
    global _NUMBA
    if _NUMBA is False:
        try:
            import numba
        except ImportError:  # the service's image has no numba: XGBoost scores
            numba = None
        _NUMBA = numba
    return _NUMBA


def margin_and_contributions(
    booster: xgb.Booster, x: np.ndarray, *, mask_missing: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(margin float64 (rows,), contributions float32 (rows, features)) of input matrix `x`
    (float32, NaN = missing, categoricals as level codes), equal to XGBoost's
    `predict(output_margin=True)` and `predict(pred_contribs=True, approx_contribs=True)[:, :-1]`.

    `mask_missing` zeroes the contribution of every missing input (as
    `LeadScorer.margin_and_contributions_of` does).

    Raises:
        Unsupported: numba is missing, the model is of a kind the walker does not cover, or
            the input holds infinities (XGBoost's own handling then decides).
    """
    nb = _numba()
    if nb is None:
        raise Unsupported("numba is not installed")
    trees = compiled(booster)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != trees.n_features:
        raise Unsupported(f"input of shape {x.shape} for {trees.n_features} features")
    if np.isinf(x).any():
        raise Unsupported("infinite inputs")
    margin = np.empty(len(x), dtype=np.float32)
    contribs = np.empty(x.shape, dtype=np.float32)
    args = (x, trees.depth, trees.node_word, trees.threshold, trees.categories,
            trees.leaf_value, trees.entry_feature, trees.entry_value, trees.base_margin,
            bool(mask_missing), margin, contribs)
    if len(x) <= SERIAL_ROWS:  # a few leads (the service): no thread pool to wake
        _kernel(serial=True)(*args)
    else:
        # Blocks handed out a few at a time, not split in halves up front: on a shared machine
        # one descheduled thread would otherwise hold the whole run back.
        with nb.parallel_chunksize(_CHUNK):
            _kernel()(*args)
    return margin.astype(np.float64), contribs


def serial_ready() -> bool:
    """Whether the few-leads walker is compiled in this process (`warm_up` did it): the
    service then walks its requests' trees with it, and never compiles on a request."""
    return _SERIAL_WARM[0]


def warm_up(booster: xgb.Booster, n_features: int) -> bool:
    """Compile (or load from numba's cache) the few-leads walker for a model, off the request
    path (the service's model loader); False when the walker does not cover the model here."""
    try:
        margin_and_contributions(booster, np.full((1, n_features), np.nan, dtype=np.float32),
                                 mask_missing=True)
    except Unsupported:
        return False
    _SERIAL_WARM[0] = True
    return True


# The walker of more than SERIAL_ROWS leads runs on every core; up to it, on the caller's.
SERIAL_ROWS = 64
_KERNELS: dict[bool, Any] = {}  # serial? -> numba dispatcher
_SERIAL_WARM = [False]  # set by warm_up (read per request: no look into numba's dispatcher)
# Rows walked together: a tree's nodes, the rows' inputs and their contributions stay in L1.
_BLOCK = 64
_CHUNK = 8  # blocks per scheduling chunk


def _kernel(serial: bool = False):  # noqa: ANN202 - a numba dispatcher
    """The compiled walker (built on first use; numba caches the machine code on disk);
    `serial`: without `parallel` (its prange a plain range), the same code on one thread."""
    global numba
    kernel = _KERNELS.get(serial)
    if kernel is None:
        numba = _numba()
        kernel = _KERNELS[serial] = numba.njit(parallel=not serial, cache=True,
                                               nogil=True)(_walk_named(serial))
    return kernel


def _walk_named(serial: bool):  # noqa: ANN202 - a function
    """`_walk` under a name of its own per kernel: numba's on-disk cache is keyed by the
    function's name, line and signature, not by `parallel`, so two kernels of one function share
    their cache entries and the second loads the first's machine code (the batch's 1M leads
    walked on one thread after the service's one-thread kernel was cached)."""
    name = "_walk_serial" if serial else "_walk_parallel"
    func = types.FunctionType(_walk.__code__, _walk.__globals__, name, _walk.__defaults__,
                              _walk.__closure__)
    func.__qualname__ = name
    return func


def _walk(x, depth, node_word, threshold, categories, leaf_value, entry_feature, entry_value,
          base_margin, mask_missing, margin, contribs):  # pragma: no cover - runs compiled
    n, n_features = x.shape
    n_trees, n_internal = node_word.shape
    # Flat arrays and unsigned offsets: numba adds a negative-index wraparound to every signed
    # 2-D index, and the walk's indices come from loads LLVM cannot prove non-negative. With
    # one word per node (feature and flags) and the branch-free decision below, the walk takes
    # a third of the CPU time it took with one array per node field and branches (same values,
    # bit for bit).
    xs = x.ravel()
    words, thr, cats = node_word.ravel(), threshold.ravel(), categories.ravel()
    leaves, entry_f, entry_v = leaf_value.ravel(), entry_feature.ravel(), entry_value.ravel()
    one, width, steps = np.uint64(1), np.uint64(n_features + 1), np.uint64(depth)
    feature_mask = np.uint64(_FEATURE_BITS - 1)
    for b in numba.prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        rows = min(n, lo + _BLOCK) - lo
        node = np.zeros(_BLOCK, dtype=np.uint64)
        row_at = np.empty(_BLOCK, dtype=np.uint64)
        for r in range(rows):
            row_at[r] = np.uint64(lo + r) * np.uint64(n_features)
        m = np.full(_BLOCK, base_margin, dtype=np.float32)
        acc = np.zeros(_BLOCK * (n_features + 1), dtype=np.float32)  # + the unused-pair column
        # Tree after tree over the block (each row's sums in XGBoost's tree order), level
        # after level over the rows (independent walks the CPU overlaps), without branches.
        for t in range(n_trees):
            tree_at = np.uint64(t * n_internal)
            for r in range(rows):
                node[r] = 0
            for _ in range(depth):
                for r in range(rows):
                    k = node[r]
                    i = tree_at + k
                    word = np.uint64(words[i])
                    v = xs[row_at[r] + (word & feature_mask)]
                    is_cat = (word >> np.uint64(30)) & one
                    numeric_right = np.uint64(v >= thr[i])
                    # XGBoost's categorical Decision: listed codes go right, others (a code
                    # outside 0..63 included) left; the clamp keeps the conversion defined
                    c = v if v < 64.0 else np.float32(64.0)
                    c = c if c >= 0.0 else np.float32(64.0)
                    code = np.uint64(np.int32(c))
                    category_right = ((cats[i] >> (code & np.uint64(63))) & one) & np.uint64(
                        code < 64)
                    right = (category_right & is_cat) | (numeric_right & (is_cat ^ one))
                    right = (word >> np.uint64(31)) if v != v else right  # missing: default
                    node[r] = 2 * k + one + right
            leaf_at = np.uint64(t * (n_internal + 1)) - np.uint64(n_internal)
            for r in range(rows):
                leaf = leaf_at + node[r]
                m[r] += leaves[leaf]
                pairs, row_acc = leaf * steps, np.uint64(r) * width
                for e in range(depth):
                    at = pairs + np.uint64(e)
                    acc[row_acc + np.uint64(entry_f[at])] += entry_v[at]
        for r in range(rows):
            margin[lo + r] = m[r]
            for j in range(n_features):
                v = x[lo + r, j]
                contribs[lo + r, j] = 0 if (mask_missing and math.isnan(v)) else acc[
                    r * (n_features + 1) + j]
