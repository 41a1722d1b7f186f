"""How one feature value is put into words a sales agent understands: the phrase templates.

Each feature has a `Template`: how its values are bucketed (counts rounded down, rates as whole
percentages), which values say that nothing happened (`absent`: never a reason *for*) or that
something good happened (`favourable`: never a reason *against*), and how a bucket is phrased
("visited the website 3 times in total", "wants a commercial licence"). The wording of activity
counts and categorical values comes from the settings' vocabulary
(`vocabulary.activity_types.*.phrases`, `vocabulary.categoricals`); an activity type without
phrases, or a feature without a template, is phrased from its name.

ml/reasons.py picks which features to quote; this module only phrases and tests their values:
vectorised for a million leads (`phrases`: each distinct bucket phrased once), and per value for
the service's few leads (`Template.phrase_of`, `Template.says`, remembered per value).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd

from ml.config import VocabularySettings
from ml.model import FEW_ROWS, numbers_of


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _count(none: str, one: str, many: str, suffix: str = "") -> Callable[[object], str]:
    def phrase(value: object) -> str:
        if _missing(value):
            return none + suffix
        n = int(value)
        text = none if n <= 0 else one if n == 1 else many.format(n=n)
        return text + suffix

    return phrase


def _days_since_last_activity(value: object) -> str:
    if _missing(value):
        return "no activity recorded yet"
    days = int(value)
    if days <= 0:
        return "active today"
    if days == 1:
        return "last active yesterday"
    return f"no activity for {days} days" if days >= 14 else f"last active {days} days ago"


def _licence(value: object) -> str:
    if _missing(value):
        return "licence type not given"
    word = str(value).lower()
    article = "an" if word[:1] in "aeiou" else "a"
    return f"wants {article} {word} licence"


def _rate(template: str, missing: str) -> Callable[[object], str]:
    def phrase(value: object) -> str:
        return missing if _missing(value) else template.format(pct=int(value))

    return phrase


def _whole(missing: str, zero: str, many: str, word: str) -> Callable[[object], str]:
    """A whole number: `missing` when not given, `zero` at 0 or below, else `many` with the
    number and its word ("needs {n}", "visa" -> "needs 3 visas")."""
    def phrase(value: object) -> str:
        if _missing(value):
            return missing
        n = int(value)
        return zero if n <= 0 else many.format(n=_plural(n, word))

    return phrase


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class Template:
    """How to phrase one feature: `bucket` rounds values (vectorised) so that only distinct
    buckets are phrased; `phrase` turns one bucket value into words."""

    phrase: Callable[[object], str]
    bucket: Callable[[np.ndarray], np.ndarray] | None = None
    # Where a (bucketed) value says that nothing happened: never a reason *for*.
    absent: Callable[[np.ndarray], np.ndarray] | None = None
    # Where it says something good happened ("active today"): never a reason *against*. A
    # linear model's missing-value indicator can pull such a lead below the average one, but
    # "active today" is no reason a sales agent would accept for a low score.
    favourable: Callable[[np.ndarray], np.ndarray] | None = None
    # One lead's answers by value (`phrase_of`, `says`): counts, categories and rounded numbers
    # repeat across leads, so the service phrases and tests each distinct value once.
    _memo: dict[tuple[object, ...], object] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def phrase_of(self, value: object) -> str:
        """The JSON-quoted phrase of one raw value, as the vectorised code phrases a one-value
        column (remembered per distinct value, see `_remembered`)."""
        return str(self._remembered(value, "phrase"))

    def says(self, value: object, test: Literal["absent", "favourable"]) -> bool:
        """Whether one raw value is `absent` / `favourable` by this template's test (False
        without one), as the vectorised code tests a one-value column."""
        return bool(self._remembered(value, test))

    def _remembered(self, value: object, what: str) -> object:
        # Only values whose answer cannot depend on how an equal value is spelled: any value
        # of a bucketed template (the bucket is numeric: 3, 3.0 and True are all 3.0) and
        # strings; a categorical 0.0 and -0.0 compare equal but print differently.
        if self.bucket is None and not isinstance(value, str):
            return self._answer(value, what)
        key = (what, type(value), value)
        try:
            return self._memo[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable value: answered, not remembered
            return self._answer(value, what)
        if value is not None and _missing_or_nan(value):  # NaN is no key: NaN != NaN
            key = (what, type(value), _MISSING)
            if key in self._memo:
                return self._memo[key]
        answer = self._answer(value, what)
        if len(self._memo) >= ONE_MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = answer
        return answer

    def _answer(self, value: object, what: str) -> object:
        values = np.empty(1, dtype=object)
        values[0] = value
        if what == "phrase":
            return phrases(self, values)[1][0]
        test = self.absent if what == "absent" else self.favourable
        if test is None:
            return False
        return bool(test(values if self.bucket is None else self.bucket(values))[0])


def _missing_or_nan(value: object) -> bool:
    """`_missing`, or any other value unequal to itself (np.float32 NaN, NaT, Decimal NaN)."""
    if _missing(value):
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        return False


# Distinct values remembered per template by `Template._remembered` (then all forgotten).
ONE_MEMO_SIZE = 4096
_MISSING = object()  # every NaN (NA, NaT) of a type is one key


def _numbers(values: np.ndarray) -> np.ndarray:
    """`values` (any shape) as float64, as pd.to_numeric(errors="coerce") gives them.

    Numeric arrays pass through; a few leads' object values (the service) go through the
    model's own conversion of a few values, since building a Series costs more than the whole
    row's reasons.
    """
    values = np.asarray(values)
    if values.dtype.kind in "fiu":
        return values.astype(np.float64, copy=False)
    flat = values.ravel()
    if len(flat) <= FEW_ROWS:
        out = numbers_of(flat.tolist())
    else:
        out = pd.to_numeric(pd.Series(flat), errors="coerce").to_numpy(np.float64)
    return out.reshape(values.shape)


def _none_or_zero(values: np.ndarray) -> np.ndarray:
    return ~(_numbers(values) > 0)  # NaN (not recorded) counts as none


def _long_idle(values: np.ndarray) -> np.ndarray:
    return ~(_numbers(values) < 14)  # "no activity for N days" (N >= 14) or none recorded yet


def _recently_active(values: np.ndarray) -> np.ndarray:
    # "active today", "last active yesterday", "last active N days ago"
    return _numbers(values) < 14


def _round(values: np.ndarray) -> np.ndarray:
    return np.floor(_numbers(values))


def _percent(values: np.ndarray) -> np.ndarray:
    # A rate is a share: the CRM can record more clicks than opens (a click from a preview
    # pane registers no open), but "clicked 150 % of opened emails" reads wrong to a person.
    return np.round(np.clip(_numbers(values), 0.0, 1.0) * 100)


def _activity_phrases(name: str, phrases: tuple[str, str, str] | None) -> tuple[str, str, str]:
    if phrases is not None:
        return phrases
    label = name.replace("_", " ")
    return f"no {label}", f"1 {label}", f"{{n}} × {label}"


def _templates(vocabulary: VocabularySettings) -> dict[str, Template]:
    lead_source = vocabulary.categoricals["lead_source"]
    budget = vocabulary.categoricals["budget_band"]
    t: dict[str, Template] = {
        "lead_source": Template(
            lambda v: (
                "lead source not given"
                if _missing(v)
                else lead_source.get(str(v)) or f"came in through {v}"
            )
        ),
        "industry": Template(
            lambda v: "industry not given" if _missing(v) else f"company in the {v} sector"
        ),
        "country": Template(
            lambda v: "country not given" if _missing(v) else f"applicant from {v}"
        ),
        "license_type": Template(_licence),
        "budget_band": Template(
            lambda v: "budget not given" if _missing(v) else budget.get(str(v)) or f"budget {v}"
        ),
        "company_size": Template(
            lambda v: (
                "company size not given"
                if _missing(v)
                else f"company of {_plural(int(v), 'employee')}"
            ),
            _round,
        ),
        "visa_quota": Template(
            _whole("visa needs not given", "needs no visas", "needs {n}", "visa"), _round
        ),
        "days_since_created": Template(
            _whole("lead age unknown", "lead created today", "lead created {n} ago", "day"),
            _round,
        ),
        "website_visits": Template(
            _count(
                "never visited the website",
                "visited the website once",
                "visited the website {n} times",
                " in total",
            ),
            _round,
            _none_or_zero,
        ),
        "email_opens": Template(
            _count("never opened an email", "opened 1 email", "opened {n} emails", " in total"),
            _round,
            _none_or_zero,
        ),
        "days_since_last_activity": Template(
            _days_since_last_activity, _round, _long_idle, _recently_active
        ),
        "email_click_rate_90d": Template(
            _rate(
                "clicked through {pct}% of opened emails in the last 90 days",
                "opened no emails in the last 90 days",
            ),
            _percent,
            _none_or_zero,
        ),
        "pricing_view_rate_90d": Template(
            _rate(
                "{pct}% of website visits in the last 90 days were to the pricing page",
                "no website visits in the last 90 days",
            ),
            _percent,
            _none_or_zero,
        ),
        "engagement_score": Template(
            lambda v: (
                "engagement score unknown" if _missing(v) else f"engagement score {int(v)} of 100"
            ),
            _round,
            _none_or_zero,
        ),
    }
    for activity, spec in vocabulary.activity_types.items():
        none, one, many = _activity_phrases(activity, spec.phrases)
        for w in vocabulary.activity_windows_days:
            t[f"n_{activity}_{w}d"] = Template(
                _count(none, one, many, f" in the last {w} days"), _round, _none_or_zero
            )
    return t


@lru_cache(maxsize=8)
def _templates_of(vocabulary_json: str) -> dict[str, Template]:
    return _templates(VocabularySettings.model_validate_json(vocabulary_json))


_T = TypeVar("_T")
# Per-call lookups keyed by a long-lived object's identity (hashing or serialising it would
# cost more than the reasons of one lead); the object is kept with its entry, so a recycled id
# is never mistaken for it.
_BY_IDENTITY: dict[tuple[str, int, Hashable], tuple[object, Any]] = {}


def by_identity(kind: str, owner: object, key: Hashable, build: Callable[[], _T]) -> _T:
    hit = _BY_IDENTITY.get((kind, id(owner), key))
    if hit is not None and hit[0] is owner:
        return hit[1]
    value = build()
    if len(_BY_IDENTITY) > 128:
        _BY_IDENTITY.clear()
    _BY_IDENTITY[(kind, id(owner), key)] = (owner, value)
    return value


def templates(vocabulary: VocabularySettings | None = None) -> dict[str, Template]:
    """The phrase templates of every feature of a vocabulary (default: the default one)."""
    if vocabulary is None:
        return _templates_of(VocabularySettings().model_dump_json())
    # the service asks per request: the same settings object is found by identity
    return by_identity("templates", vocabulary, None,
                        lambda: _templates_of(vocabulary.model_dump_json()))


TEMPLATES: dict[str, Template] = templates()


@lru_cache(maxsize=1024)  # one long-lived template per name: its memo is kept
def generic_template(feature: str) -> Template:
    label = feature.replace("_", " ")
    return Template(lambda v: f"{label} unknown" if _missing(v) else f"{label}: {v}")


def template_of(wording: dict[str, Template], feature: str) -> Template:
    """The feature's template in `wording`, or a generic one phrased from its name."""
    return wording.get(feature) or generic_template(feature)


def phrase(feature: str, value: object, vocabulary: VocabularySettings | None = None) -> str:
    """The words for one feature value (e.g. for a single explanation in the API)."""
    template = templates(vocabulary).get(feature) or generic_template(feature)
    if template.bucket is not None:
        value = template.bucket(np.asarray([value], dtype=object))[0]
    return template.phrase(value)


def phrases(template: Template, values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Codes into a list of JSON-quoted phrases for one feature's values (bucketed first); each
    distinct bucket is phrased once."""
    if template.bucket is not None:
        values = template.bucket(values)
    if len(values) <= FEW_ROWS:  # a few leads (the service): no hash table per call
        first: dict[object, int] = {}
        uniques = []
        codes_list = []
        for v in values:
            code = first.setdefault(_key(v), len(first))
            if code == len(uniques):
                uniques.append(v)
            codes_list.append(code)
        codes = np.array(codes_list, dtype=np.int64)
    else:
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
    words = [
        _quoted(template.phrase(None if _missing(u) else u)) for u in uniques
    ]
    return codes, words


# json.dumps(text, ensure_ascii=False) of a str, without building an encoder per call.
_quoted: Callable[[str], str] = json.encoder.encode_basestring  # type: ignore[attr-defined]

def _key(value: object) -> object:
    # Every missing value (None, NaN, NA) is one bucket, as pd.factorize counts them.
    return None if _missing(value) else value
