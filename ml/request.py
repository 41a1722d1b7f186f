"""What a request says about a lead the online store does not know, as the request model's input.

A web form or an agent gives some of the original payload's fields. What follows from "new" is
assumed, and said so in the response: the lead has no recorded activity, so counts and the
engagement score not given are 0 (and its age is 0 if a configured request model takes age).
Attributes not given (country, licence, budget, size …) stay missing: the request model learned
from rows with those fields blanked what "not given" means (`training.request_mask_share`).

A categorical value the model never saw (`lead_source: "Carrier pigeon"`) is scored as not given
and named in a warning; it is never quoted as a reason (reasons skip missing inputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ml.model import LeadScorer

# What a brand-new lead has by definition, when the request does not say otherwise.
ASSUMED_FOR_NEW: dict[str, float] = {
    "days_since_created": 0.0,
    "website_visits": 0.0,
    "email_opens": 0.0,
    "engagement_score": 0.0,
}


def unknown_categories(scorer: LeadScorer, values: Mapping[str, Any]) -> list[str]:
    """Warnings for given categorical values the model has no level for (scored as missing)."""
    out = []
    for name, levels in scorer.categories.items():
        value = values.get(name)
        if value is not None and value not in levels:
            out.append(f"{name} {str(value)[:64]!r} is not a known value: scored as not given")
    return out


def request_frame(
    scorer: LeadScorer, payloads: Sequence[Mapping[str, Any]]
) -> tuple[pd.DataFrame, list[list[str]]]:
    """The request model's input for new leads, and per lead the features that were assumed.

    Args:
        scorer: the request model (its `feature_names` are the columns built).
        payloads: per lead, the feature values the request gave (None = not given).

    Returns:
        (frame with `lead_id` when given plus the scorer's features, assumed feature names).
    """
    rows, assumed = request_records(scorer, payloads)
    return pd.DataFrame(rows, columns=[*(["lead_id"] if rows and "lead_id" in rows[0] else []),
                                       *scorer.feature_names]), assumed


def request_records(
    scorer: LeadScorer, payloads: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """`request_frame` as one mapping per lead (the service's path, no DataFrame)."""
    rows: list[dict[str, Any]] = []
    assumed: list[list[str]] = []
    for payload in payloads:
        row: dict[str, Any] = {}
        guessed: list[str] = []
        for name in scorer.feature_names:
            value = payload.get(name)
            if value is None and name in ASSUMED_FOR_NEW:
                value = ASSUMED_FOR_NEW[name]
                guessed.append(name)
            row[name] = value
        if "lead_id" in payload:
            row["lead_id"] = payload["lead_id"]
        rows.append(row)
        assumed.append(guessed)
    return rows, assumed
