"""Reasons for and against a lead's score, in words a sales agent understands.

Input: the per-feature margin contributions of the model (`LeadScorer.contributions`) and the
lead's feature values. Contributions are additive, so an activity's windowed counts (`n_X_7d`,
`n_X_30d`, `n_X_90d`) are summed into one reason: the model's whole view of that activity, never
"clicked no links in 7 days" for and "clicked 3 links in 90 days" against in one list. The top N
reasons with the largest positive contributions are the reasons *for*, the N most negative the
reasons *against*; each is phrased from a feature's value ("visited the pricing page 4 times in
the last 7 days"); for a windowed activity, from the window that contributes most in that
direction.

An absence ("clicked no email links", "no activity for 60 days", 0 % click-through) is never a
reason *for*: a model can give it a small positive weight against the average lead (window
counts are correlated), but no sales agent accepts "has not booked a meeting" as a reason to
call. Such a contribution is dropped from the reasons for, and the next one is shown.

How a value is phrased, and whether it says that nothing happened (an absence) or something
good did, is ml/wording.py's (one template per feature, from the settings' vocabulary).

Vectorised for a million leads: `argpartition` picks the 2N features per lead, and phrases are
built once per distinct (feature, value) pair and then gathered, never per row.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

from ml.config import VocabularySettings
from ml.model import FEW_ROWS
from ml.wording import Template, by_identity, phrases, template_of, templates

# A contribution smaller than this (in log-odds) is no reason either way.
MIN_CONTRIBUTION = 1e-6

# Up to this many leads, `explain` phrases each lead alone (`_explain_one`): the vectorised path's
# set-up costs ~1 ms per call. `tests/benchmarks/bench_reasons.py` (41 features, load ~2.5): 4
# leads 0.41 ms one by one against 1.72 ms vectorised, 64: 2.3 / 3.3 ms, 128: 4.4 / 5.6 ms, 256:
# 10.2 / 8.2 ms. So every micro-batch of the service (`serving.micro_batch`, 64) goes one by one.
ONE_BY_ONE_ROWS = 128


def top_features(
    contributions: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Column indices of the n largest positive and n most negative contributions per row.

    Returns:
        (idx_for, valid_for, idx_against, valid_against), each of shape (rows, n), sorted by
        strength; `valid_*` is False where a lead has fewer than n such features.
    """
    rows, f = contributions.shape
    k = min(n, f)
    if k == 0 or rows == 0:
        empty = np.zeros((rows, k), dtype=np.int64)
        return empty, empty.astype(bool), empty, empty.astype(bool)
    if 2 * k <= f:
        # One partition finds both ends: columns [:k] hold the k smallest, [f-k:] the k largest
        # (O(f) per row, no sort of the whole row, no negated copy of the matrix).
        part = np.argpartition(contributions, [k - 1, f - k], axis=1)
        low, high = part[:, :k], part[:, f - k :]
    else:  # few features: a full sort per row is as cheap
        order = np.argsort(contributions, axis=1)
        low, high = order[:, :k], order[:, f - k :]
    out = []
    at = np.arange(rows)[:, None]  # fancy indexing = take_along_axis, without its set-up
    for idx, sign in ((high, 1.0), (low, -1.0)):
        vals = contributions[at, idx] * sign
        order = np.argsort(-vals, axis=1, kind="stable")
        idx = idx[at, order]
        vals = vals[at, order]
        out += [idx, vals > MIN_CONTRIBUTION]
    return out[0], out[1], out[2], out[3]


def _phrases_for(
    feature: str, values: np.ndarray, wording: dict[str, Template]
) -> tuple[np.ndarray, list[str]]:
    """Codes into a list of JSON-quoted phrases for one feature's values; each distinct bucket
    is phrased once."""
    return phrases(template_of(wording, feature), values)


_WINDOWED = re.compile(r"^n_(?P<activity>.+)_(?P<days>\d+)d$")


def reason_groups(feature_names: Sequence[str]) -> list[tuple[int, ...]]:
    """Column indices that make one reason, in order of first appearance: an activity's windowed
    counts (`n_X_7d`, `n_X_30d`, …) together, every other feature alone."""
    return list(_reason_groups(tuple(feature_names)))


@lru_cache(maxsize=32)
def _reason_groups(feature_names: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(feature_names):
        match = _WINDOWED.match(name)
        groups.setdefault(f"n_{match['activity']}" if match else name, []).append(j)
    return tuple(tuple(g) for g in groups.values())


# The leads' feature values: a frame, or a mapping of column arrays (the service's records).
Features = pd.DataFrame | Mapping[str, np.ndarray]


def _values(features: Features, name: str, rows: np.ndarray | slice) -> np.ndarray:
    if isinstance(features, pd.DataFrame):
        if name in features.columns:
            return features[name].to_numpy()[rows]
    elif name in features:
        return np.asarray(features[name])[rows]
    if not isinstance(rows, slice):
        n = len(rows)
    elif isinstance(features, pd.DataFrame):
        n = len(features)
    else:
        n = len(next(iter(features.values()), ()))
    return np.full(n, None, dtype=object)


@dataclass(frozen=True)
class _Says:
    """Per lead and feature, what its (bucketed) value says by its template: `absent` (nothing
    happened: never a reason for) and `favourable` (something good happened: never a reason
    against). Computed once per call, one column per feature."""

    absent: np.ndarray  # (rows, features) bool
    favourable: np.ndarray  # (rows, features) bool

    @classmethod
    def of(cls, features: Features, feature_names: Sequence[str], rows: int,
           wording: dict[str, Template]) -> _Says:
        absent = np.zeros((rows, len(feature_names)), dtype=bool)
        favourable = np.zeros_like(absent)
        # Features phrased alike (every windowed activity count: round, then "none") are
        # tested together, one (rows, features) block per kind: for the service's one lead
        # that is a few numpy calls instead of a few per feature.
        for (bucket, is_absent, is_favourable), columns in _test_plan(
            wording, tuple(feature_names)
        ):
            values = np.stack(  # column_stack of 1-d arrays, with less set-up per array
                [_values(features, feature_names[j], slice(None)) for j in columns], axis=1
            )
            if bucket is not None:
                values = bucket(values)
            if is_absent is not None:
                absent[:, columns] = is_absent(values)
            if is_favourable is not None:
                favourable[:, columns] = is_favourable(values)
        return cls(absent, favourable)


_Test = Callable[[np.ndarray], np.ndarray] | None
_Plan = list[tuple[tuple[_Test, _Test, _Test], list[int]]]


def _test_plan(wording: dict[str, Template], feature_names: tuple[str, ...]) -> _Plan:
    """The features with an absent or favourable test, grouped by (bucket, absent, favourable)."""

    def build() -> _Plan:
        plan: dict[tuple[_Test, _Test, _Test], list[int]] = {}
        for j, name in enumerate(feature_names):
            template = template_of(wording, name)
            if template.absent is not None or template.favourable is not None:
                key = (template.bucket, template.absent, template.favourable)
                plan.setdefault(key, []).append(j)
        return list(plan.items())

    return by_identity("test_plan", wording, feature_names, build)


@lru_cache(maxsize=32)
def _group_layout(groups: tuple[tuple[int, ...], ...]) -> tuple[np.ndarray, np.ndarray]:
    """The columns in group order and where each group starts (for `ufunc.reduceat`)."""
    order = np.fromiter((j for g in groups for j in g), dtype=np.int64)
    starts = np.cumsum([0] + [len(g) for g in groups[:-1]], dtype=np.int64)
    return order, starts


def _grouped(contributions: np.ndarray, groups: list[tuple[int, ...]], says: _Says
             ) -> np.ndarray:
    if not groups:
        return np.empty((contributions.shape[0], 0), dtype=np.float64)
    order, starts = _group_layout(tuple(groups))
    grouped = np.add.reduceat(contributions[:, order], starts, axis=1)
    # a group says it when every member does (e.g. no such activity in any window)
    absent = np.logical_and.reduceat(says.absent[:, order], starts, axis=1)
    favourable = np.logical_and.reduceat(says.favourable[:, order], starts, axis=1)
    grouped[((grouped > 0) & absent) | ((grouped < 0) & favourable)] = 0.0
    return grouped


def grouped_contributions(
    contributions: np.ndarray,
    feature_names: Sequence[str],
    features: Features,
    vocabulary: VocabularySettings | None = None,
) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """(rows, reasons) contributions, one column per `reason_groups` entry, with an absence's
    positive contribution set to 0 (it can be no reason for), and a favourable value's negative
    one (no reason against)."""
    groups = reason_groups(feature_names)
    says = _Says.of(features, feature_names, contributions.shape[0], templates(vocabulary))
    return _grouped(contributions, groups, says), groups


def _representatives(
    contributions: np.ndarray,
    group: tuple[int, ...],
    rows: np.ndarray,
    favourable: np.ndarray,
    says: _Says,
) -> np.ndarray:
    """Per picked row, the member column that phrases the group's reason: the one contributing
    most in the reason's direction, for a reason *for* one that records some activity, and for
    a reason *against* none that states something favourable."""
    if len(group) == 1:
        return np.full(len(rows), group[0], dtype=np.int64)
    members = list(group)
    sub = contributions[np.ix_(rows, members)] * np.where(favourable, 1.0, -1.0)[:, None]
    sub[favourable[:, None] & says.absent[np.ix_(rows, members)]] = -np.inf
    sub[~favourable[:, None] & says.favourable[np.ix_(rows, members)]] = -np.inf
    return np.asarray(group, dtype=np.int64)[np.argmax(sub, axis=1)]


def explain(
    contributions: np.ndarray,
    feature_names: Sequence[str],
    features: Features,
    n: int,
    vocabulary: VocabularySettings | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reasons for and against each lead as JSON strings of lists of phrases.

    Args:
        contributions: (rows, features) margin contributions, columns in `feature_names` order.
        features: the leads' feature values (row-aligned with `contributions`); a feature the
            frame lacks is phrased by name only.
        n: reasons per side.
        vocabulary: the settings' vocabulary, whose wording phrases activity counts and
            categorical values (default: the default vocabulary).

    Returns:
        Two object arrays of JSON strings like '["booked a meeting in the last 30 days", ...]'.
    """
    rows = contributions.shape[0]
    if n <= 0 or rows == 0:
        empty = np.full(rows, "[]", dtype=object)
        return empty, empty.copy()
    wording = templates(vocabulary)
    groups = reason_groups(feature_names)
    if rows <= ONE_BY_ONE_ROWS:  # the service's few leads: each alone, in plain Python
        return _explain_few(contributions, feature_names, features, n, wording, groups)
    return _explain_all(contributions, feature_names, features, n, wording, groups)


def _explain_few(
    contributions: np.ndarray,
    feature_names: Sequence[str],
    features: Features,
    n: int,
    wording: dict[str, Template],
    groups: list[tuple[int, ...]],
) -> tuple[np.ndarray, np.ndarray]:
    """`explain`, one lead at a time (`_explain_one`); the leads whose order of reasons is not
    fixed by the values go to the vectorised path together."""
    rows = contributions.shape[0]
    reasons_for = np.empty(rows, dtype=object)
    reasons_against = np.empty(rows, dtype=object)
    if groups:  # each reason's contribution, summed as the vectorised path sums it
        order, starts = _group_layout(tuple(groups))
        sums = np.add.reduceat(contributions[:, order], starts, axis=1).tolist()
    else:
        sums = [[] for _ in range(rows)]
    members = _members(wording, feature_names, groups)
    columns = _Columns(features)
    left = []
    for r, row in enumerate(contributions.tolist()):
        one = _explain_one(row, sums[r], members, columns, r, n)
        if one is None:
            left.append(r)
        else:
            reasons_for[r], reasons_against[r] = one
    if left:
        rest = np.asarray(left)
        reasons_for[rest], reasons_against[rest] = _explain_all(
            contributions[rest], feature_names, _take(features, rest), n, wording, groups)
    return reasons_for, reasons_against


def _take(features: Features, rows: np.ndarray) -> Features:
    """The leads `rows` of a frame or of a mapping of columns."""
    if isinstance(features, pd.DataFrame):
        return features.iloc[rows]
    return {name: _values(features, name, rows) for name in features}


def _explain_all(
    contributions: np.ndarray,
    feature_names: Sequence[str],
    features: Features,
    n: int,
    wording: dict[str, Template],
    groups: list[tuple[int, ...]],
) -> tuple[np.ndarray, np.ndarray]:
    """`explain`, vectorised over the leads."""
    rows = contributions.shape[0]
    says = _Says.of(features, feature_names, rows, wording)
    grouped = _grouped(contributions, groups, says)
    idx_for, ok_for, idx_against, ok_against = top_features(grouped, n)
    k = idx_for.shape[1]
    idx = np.concatenate([idx_for, idx_against], axis=1)  # (rows, 2k) group indices
    ok = np.concatenate([ok_for, ok_against], axis=1)
    # Phrase ids instead of strings: table[0] is "no reason", the rest are JSON-quoted phrases.
    table: list[str] = [""]
    ids = np.zeros(idx.shape, dtype=np.int64)
    row_pos, slot = np.nonzero(ok)
    group_of = idx[row_pos, slot]
    # Radix sort (numpy's stable sort on 16-bit ints) groups the picks by reason in O(n).
    order = np.argsort(
        group_of.astype(np.int16 if len(groups) < 2**15 else np.int64), kind="stable"
    )
    row_pos, slot, group_of = row_pos[order], slot[order], group_of[order]
    feat = np.empty_like(group_of)
    bounds = np.flatnonzero(np.diff(group_of)) + 1
    for start, stop in zip([0, *bounds.tolist()], [*bounds.tolist(), len(group_of)],
                           strict=True):
        if start < stop:
            feat[start:stop] = _representatives(
                contributions, groups[group_of[start]], row_pos[start:stop],
                slot[start:stop] < k, says,
            )
    order = np.argsort(feat.astype(np.int16 if len(feature_names) < 2**15 else np.int64),
                       kind="stable")
    row_pos, slot, feat = row_pos[order], slot[order], feat[order]
    bounds = np.flatnonzero(np.diff(feat)) + 1
    for start, stop in zip([0, *bounds.tolist()], [*bounds.tolist(), len(feat)], strict=True):
        if start == stop:
            continue
        name = feature_names[feat[start]]
        codes, words = _phrases_for(name, _values(features, name, row_pos[start:stop]), wording)
        ids[row_pos[start:stop], slot[start:stop]] = codes + len(table)
        table.extend(words)
    return _join(ids[:, :k], table), _join(ids[:, k:], table)


_Member = tuple[int, str, Template]  # (column, feature name, its template)


def _members(wording: dict[str, Template], feature_names: Sequence[str],
             groups: list[tuple[int, ...]]) -> list[tuple[_Member, ...]]:
    """Per reason group, its members with their names and templates (looked up once)."""
    def build() -> list[tuple[_Member, ...]]:
        return [tuple((j, feature_names[j], template_of(wording, feature_names[j]))
                      for j in group) for group in groups]

    return by_identity("members", wording, tuple(feature_names), build)


class _Columns:
    """The leads' feature values read as the vectorised path reads them (`_values`: a frame's
    `to_numpy()`, a mapping's `np.asarray`, positional), each feature once per call."""

    def __init__(self, features: Features) -> None:
        self._features = features
        self._arrays: dict[str, np.ndarray] = {}

    def value(self, name: str, row: int) -> object:
        array = self._arrays.get(name)
        if array is None:
            array = self._arrays[name] = _values(self._features, name, slice(None))
        return array[row]


def _explain_one(
    contributions: list[float],
    sums: list[float],
    members: list[tuple[_Member, ...]],
    columns: _Columns,
    row: int,
    n: int,
) -> tuple[str, str] | None:
    """`explain` of lead `row` in plain Python: the same reasons, from the same templates.
    `contributions` are the lead's per feature, `sums` per reason group (`np.add.reduceat`'s,
    as the vectorised path sums them), `members` the groups' (`_members`).

    The vectorised path tests every feature's value (absent? favourable?) before it ranks the
    reasons; one lead needs the tests of the few reasons it is about to quote, each answered by
    its template's memo of values (`Template.says`, `Template.phrase_of`). Groups are ranked by
    strength and a candidate is dropped when its tests say so (`explain` sets its contribution
    to 0, below MIN_CONTRIBUTION). Where `top_features`' order is not fixed by the values (equal
    strengths among the quoted ones or at the cut), or a contribution is NaN, it returns None
    and `explain` takes the vectorised path.
    """
    k = min(n, len(members))
    if any(v != v for v in sums):
        return None
    texts = []
    sides: tuple[tuple[float, Literal["absent", "favourable"]], ...] = (
        (1.0, "absent"), (-1.0, "favourable"))
    for sign, blocked in sides:
        ranked = sorted((i for i, v in enumerate(sums) if v * sign > MIN_CONTRIBUTION),
                        key=lambda i: -sums[i] * sign)
        picked: list[tuple[int, list[bool]]] = []  # (group, which members are ruled out)
        for i in ranked:
            if len(picked) > k:
                break
            ruled_out = [template.says(columns.value(name, row), blocked)
                         for _, name, template in members[i]]
            if not all(ruled_out):
                picked.append((i, ruled_out))
        strengths = [sums[i] for i, _ in picked]
        if len(set(strengths)) < len(strengths):
            return None
        phrases = []
        for i, ruled_out in picked[:k]:
            group = members[i]
            _, name, template = group[0]
            if len(group) > 1:  # `_representatives`: the first strongest member not ruled out
                best = -np.inf
                for (j, member, member_template), out in zip(group, ruled_out, strict=True):
                    value = -np.inf if out else contributions[j] * sign
                    if value > best:
                        best, name, template = value, member, member_template
            phrases.append(template.phrase_of(columns.value(name, row)))
        texts.append("[" + ", ".join(phrases) + "]")
    return texts[0], texts[1]


def _join(ids: np.ndarray, table: list[str]) -> np.ndarray:
    """'[a, b, c]' per row from phrase ids (0 = none; valid ids come first in a row).

    Leads share reason lists far more often than not, so each distinct combination of ids is
    assembled once and gathered back: string work scales with the distinct lists, not the rows.
    """
    rows, k = ids.shape
    if k == 0:
        return np.full(rows, "[]", dtype=object)
    if rows <= FEW_ROWS:  # a few leads (the service): join each row directly
        texts = np.empty(rows, dtype=object)
        texts[:] = ["[" + ", ".join(filter(None, (table[i] for i in row))) + "]"
                    for row in ids.tolist()]
        return texts
    base = len(table)
    if base**k < 2**62:
        key = ids[:, 0].copy()
        for j in range(1, k):
            key = key * base + ids[:, j]
        uniq, inverse = np.unique(key, return_inverse=True)
        digits = np.empty((len(uniq), k), dtype=np.int64)
        rest = uniq
        for j in range(k - 1, -1, -1):
            rest, digits[:, j] = np.divmod(rest, base)
    else:  # too many phrases to pack k ids in 64 bits: assemble per row
        inverse, digits = np.arange(rows), ids
    # Column lists zipped (not a list of row lists): no million small containers for the GC.
    columns = [[table[i] for i in digits[:, j].tolist()] for j in range(k)]
    texts = np.empty(len(digits), dtype=object)
    texts[:] = ["[" + ", ".join(filter(None, combo)) + "]" for combo in zip(*columns, strict=True)]
    return texts[inverse]
