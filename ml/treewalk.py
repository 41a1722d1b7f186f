"""XGBoost's approximate (Saabas) contributions, computed by a compiled walk of the trees.

Why: the reasons of a nightly run need every lead's per-feature contributions. XGBoost computes
approximate contributions per row and per tree over a vector of *all* features (zeroed, filled,
added), so 1M leads × 500 trees cost about four bare predictions. Yet a tree's contribution to
a row depends only on the leaf the row reaches: the deltas of node means along the path, at most
one per level. `TreeWalk` precomputes those per leaf once per model and walks each row down each
tree (numba, all cores), adding a few numbers per tree instead of a vector of all features.

Exactness: the values are bit-identical to `Booster.predict(pred_contribs=True,
approx_contribs=True)` (without the bias column), because every float32 operation is the same
one in the same order: node means as XGBoost fills them (children's means weighted by their
hessian sums), a tree's deltas summed per feature from zero in path order, then added tree by
tree. tests/ml/test_treewalk.py compares them bit for bit on trained models with numeric and
categorical splits, missing values and unseen levels.

Only plain gbtree models with one output are walked (what training produces); `TreeWalk.of`
returns None for anything else and the caller asks XGBoost.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import xgboost as xgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TreeWalk:
    """The trees of a booster as flat arrays (node ids global across trees) and, per leaf, the
    (feature, contribution) pairs its path adds."""

    roots: np.ndarray  # int32 (trees,): global id of each tree's root
    left: np.ndarray  # int32 (nodes,): left child, -1 for a leaf
    right: np.ndarray  # int32
    feature: np.ndarray  # int32: split feature
    threshold: np.ndarray  # float32: numeric split goes left when value < threshold
    default_left: np.ndarray  # bool: where a missing value goes
    cat_start: np.ndarray  # int32: categorical split's categories in `cats`; -1 numeric split
    cat_stop: np.ndarray  # int32
    cats: np.ndarray  # float32: categories going right (XGBoost's bit set, as a sorted list)
    leaf_start: np.ndarray  # int32 (nodes + 1,): a leaf's pairs in leaf_feature / leaf_value
    leaf_feature: np.ndarray  # int32
    leaf_value: np.ndarray  # float32
    n_features: int

    @classmethod
    def of(cls, booster: xgb.Booster) -> TreeWalk | None:
        """The walk of a booster, or None when it is not a single-output gbtree model."""
        model = json.loads(bytes(booster.save_raw("json")))
        learner = model["learner"]
        gbm = learner["gradient_booster"]
        params = learner["learner_model_param"]
        if gbm.get("name") != "gbtree" or int(params.get("num_target", "1")) != 1 or int(
            params.get("num_class", "0")
        ) > 1:
            return None
        trees = gbm["model"]["trees"]
        if any(t != 0 for t in gbm["model"]["tree_info"]):
            return None
        return cls._build(trees, int(params["num_feature"]))

    @classmethod
    def _build(cls, trees: list[dict[str, Any]], n_features: int) -> TreeWalk:
        f32 = np.float32
        roots, left, right, feature, threshold, default_left = [], [], [], [], [], []
        cat_start, cat_stop, cats = [], [], []
        leaf_pairs: list[list[tuple[int, np.float32]]] = []
        offset = 0
        for tree in trees:
            lc, rc = tree["left_children"], tree["right_children"]
            n = len(lc)
            hess = np.asarray(tree["sum_hessian"], dtype=f32)
            cond = np.asarray(tree["split_conditions"], dtype=f32)
            split_type = tree["split_type"]
            node_cats = {
                node: tree["categories"][seg : seg + size]
                for node, seg, size in zip(
                    tree["categories_nodes"],
                    tree["categories_segments"],
                    tree["categories_sizes"],
                    strict=True,
                )
            }
            mean = _node_means(lc, rc, hess, cond)
            roots.append(offset)
            for i in range(n):
                leaf = lc[i] == -1
                left.append(-1 if leaf else lc[i] + offset)
                right.append(-1 if leaf else rc[i] + offset)
                feature.append(tree["split_indices"][i])
                threshold.append(cond[i])
                default_left.append(bool(tree["default_left"][i]))
                if not leaf and split_type[i] == 1:
                    cat_start.append(len(cats))
                    cats.extend(sorted(node_cats.get(i, [])))
                    cat_stop.append(len(cats))
                else:
                    cat_start.append(-1)
                    cat_stop.append(-1)
            leaf_pairs.extend(_leaf_contributions(lc, rc, tree["split_indices"], mean))
            offset += n
        leaf_start = np.zeros(offset + 1, dtype=np.int32)
        leaf_start[1:] = np.cumsum([len(p) for p in leaf_pairs])
        flat = [pair for pairs in leaf_pairs for pair in pairs]
        return cls(
            roots=np.asarray(roots, dtype=np.int32),
            left=np.asarray(left, dtype=np.int32),
            right=np.asarray(right, dtype=np.int32),
            feature=np.asarray(feature, dtype=np.int32),
            threshold=np.asarray(threshold, dtype=f32),
            default_left=np.asarray(default_left, dtype=np.bool_),
            cat_start=np.asarray(cat_start, dtype=np.int32),
            cat_stop=np.asarray(cat_stop, dtype=np.int32),
            cats=np.asarray(cats, dtype=f32),
            leaf_start=leaf_start,
            leaf_feature=np.asarray([f for f, _ in flat], dtype=np.int32),
            leaf_value=np.asarray([v for _, v in flat], dtype=f32),
            n_features=n_features,
        )

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature contributions (rows, n_features), float32, as XGBoost's approximate
        `pred_contribs` without its bias column. `x`: the model's float32 input matrix (NaN
        for missing)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"input has shape {x.shape}; the model reads {self.n_features} features"
            )
        out = np.zeros((x.shape[0], self.n_features), dtype=np.float32)
        _walk(
            x, self.roots, self.left, self.right, self.feature, self.threshold,
            self.default_left, self.cat_start, self.cat_stop, self.cats, self.leaf_start,
            self.leaf_feature, self.leaf_value, out,
        )
        return out


def _node_means(lc: list[int], rc: list[int], hess: np.ndarray, cond: np.ndarray) -> np.ndarray:
    """XGBoost's FillNodeMeanValues: a leaf's value; an inner node's children's means weighted
    by their hessian sums, in float32 (left product, plus right product, divided)."""
    mean = np.zeros(len(lc), dtype=np.float32)

    def fill(node: int) -> np.float32:
        if lc[node] == -1:
            mean[node] = cond[node]
        else:
            a, b = lc[node], rc[node]
            result = np.float32(fill(a) * hess[a])
            result = np.float32(result + np.float32(fill(b) * hess[b]))
            mean[node] = np.float32(result / hess[node])
        return mean[node]

    fill(0)
    return mean


def _leaf_contributions(
    lc: list[int], rc: list[int], split: list[int], mean: np.ndarray
) -> list[list[tuple[int, np.float32]]]:
    """Per node of one tree (empty for inner nodes): the (feature, contribution) pairs of the
    path to that leaf, summed per feature from zero in path order as XGBoost's
    CalculateContributionsApprox does (the final leaf-minus-own-mean term is exactly 0)."""
    pairs: list[list[tuple[int, np.float32]]] = [[] for _ in lc]
    stack: list[tuple[int, dict[int, np.float32]]] = [(0, {})]
    while stack:
        node, sums = stack.pop()
        if lc[node] == -1:
            pairs[node] = list(sums.items())
            continue
        f = split[node]
        for child in (lc[node], rc[node]):
            delta = np.float32(mean[child] - mean[node])
            branch = dict(sums)
            branch[f] = np.float32(branch.get(f, np.float32(0)) + delta)
            stack.append((child, branch))
    return pairs


@numba.njit(parallel=True, cache=True, nogil=True)
def _walk(x, roots, left, right, feature, threshold, default_left, cat_start,  # noqa: ANN001, ANN202
          cat_stop, cats, leaf_start, leaf_feature, leaf_value, out):
    for i in numba.prange(x.shape[0]):
        for t in range(roots.shape[0]):
            node = roots[t]
            while left[node] != -1:
                v = x[i, feature[node]]
                if np.isnan(v):
                    go_left = default_left[node]
                elif cat_start[node] >= 0:
                    # XGBoost: a category in the node's set goes right, any other left.
                    go_left = True
                    for k in range(cat_start[node], cat_stop[node]):
                        if cats[k] == v:
                            go_left = False
                            break
                else:
                    go_left = v < threshold[node]
                node = left[node] if go_left else right[node]
            for k in range(leaf_start[node], leaf_start[node + 1]):
                out[i, leaf_feature[k]] += leaf_value[k]
