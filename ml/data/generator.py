"""A deterministic synthetic CRM: leads, their activities, their conversions and the history of
their attributes (what the web form said, corrected after a sales call).

The generative model is documented in data/README.md; the constants below are its parameters.
Everything is vectorised numpy (one array per column, no per-row Python), each random quantity
draws from its own seeded stream, and the CSV files are written by DuckDB, so a million leads
take well under a minute and the same arguments always give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ml import contract
from ml.config import Settings
from ml.errors import ConfigError

logger = logging.getLogger(__name__)

MODEL_VERSION = 2
DAY = 86_400
YEAR_DAYS = 365.25

# lead source: (share of leads, conversion log-odds effect, engagement multiplier, delay multiplier)
SOURCES: dict[str, tuple[float, float, float, float]] = dict(zip(contract.LEAD_SOURCES, [
    (0.27, 0.0, 1.00, 1.00),  # Web
    (0.11, 0.8, 1.10, 0.70),  # Referral
    (0.14, 0.5, 0.95, 0.80),  # Partner agent
    (0.06, 0.2, 1.10, 0.90),  # Event
    (0.15, -0.6, 0.90, 1.30),  # Social
    (0.12, -0.3, 1.15, 1.20),  # Email campaign
    (0.04, 0.7, 0.80, 0.60),  # Walk-in
    (0.11, -0.2, 0.95, 1.10),  # Call centre
], strict=True))
# industry: (share, log-odds effect)
INDUSTRIES: dict[str, tuple[float, float]] = dict(zip(contract.INDUSTRIES, [
    (0.16, 0.10),  # Trading
    (0.13, 0.20),  # Consulting
    (0.12, -0.10),  # E-commerce
    (0.05, 0.30),  # Manufacturing
    (0.06, -0.20),  # Media
    (0.11, 0.10),  # Technology
    (0.06, 0.20),  # Logistics
    (0.04, 0.00),  # Education
    (0.04, 0.25),  # Healthcare
    (0.07, -0.15),  # Food & beverage
    (0.08, 0.00),  # Real estate
    (0.08, -0.25),  # Tourism
], strict=True))
COUNTRIES: dict[str, tuple[float, float]] = {
    "United Arab Emirates": (0.22, 0.30),
    "India": (0.20, 0.00),
    "United Kingdom": (0.08, 0.20),
    "Pakistan": (0.09, -0.20),
    "Egypt": (0.07, -0.10),
    "Saudi Arabia": (0.06, 0.20),
    "Russia": (0.07, 0.10),
    "Germany": (0.04, 0.15),
    "United States": (0.04, 0.10),
    "China": (0.05, 0.00),
    "Nigeria": (0.04, -0.30),
    "Philippines": (0.04, -0.20),
}
# licence type: (log-odds effect, median package value in AED)
LICENSES: dict[str, tuple[float, float]] = dict(zip(contract.LICENSE_TYPES, [
    (0.0, 16_000.0),  # Commercial
    (0.2, 38_000.0),  # Industrial
    (0.0, 13_000.0),  # Service
    (-0.1, 15_000.0),  # Media
    (0.1, 22_000.0),  # Educational
    (-0.3, 7_500.0),  # Freelance
], strict=True))
# P(licence | industry), rows in INDUSTRIES order, columns in LICENSES order
_LICENSE_GIVEN_INDUSTRY = np.array([
    [0.80, 0.05, 0.10, 0.00, 0.00, 0.05],  # Trading
    [0.10, 0.00, 0.70, 0.00, 0.00, 0.20],  # Consulting
    [0.75, 0.00, 0.15, 0.00, 0.00, 0.10],  # E-commerce
    [0.15, 0.80, 0.05, 0.00, 0.00, 0.00],  # Manufacturing
    [0.10, 0.00, 0.10, 0.60, 0.00, 0.20],  # Media
    [0.30, 0.00, 0.50, 0.00, 0.00, 0.20],  # Technology
    [0.60, 0.20, 0.20, 0.00, 0.00, 0.00],  # Logistics
    [0.05, 0.00, 0.15, 0.00, 0.75, 0.05],  # Education
    [0.20, 0.05, 0.70, 0.00, 0.05, 0.00],  # Healthcare
    [0.75, 0.10, 0.15, 0.00, 0.00, 0.00],  # Food & beverage
    [0.60, 0.00, 0.35, 0.00, 0.00, 0.05],  # Real estate
    [0.55, 0.00, 0.40, 0.00, 0.00, 0.05],  # Tourism
])
# budget band: log-odds effect
BUDGET_BANDS: dict[str, float] = dict(zip(contract.BUDGET_BANDS, [
    -0.4,  # <25k
    0.0,  # 25k-50k
    0.3,  # 50k-100k
    0.5,  # 100k+
], strict=True))
# activity type: (share for a lead of average propensity, tilt per unit of propensity log-odds)
ACTIVITY_TYPES: dict[str, tuple[float, float]] = dict(zip(contract.ACTIVITY_TYPES, [
    (0.34, 0.00),  # website_visit
    (0.08, 0.45),  # pricing_page_view
    (0.25, -0.10),  # email_open
    (0.08, 0.15),  # email_click
    (0.05, 0.25),  # form_submit
    (0.03, 0.10),  # webinar
    (0.08, 0.35),  # call_connected
    (0.05, 0.60),  # meeting_booked
    (0.04, 0.60),  # document_upload
], strict=True))
WEEKDAY_WEIGHT = np.array([1.00, 1.05, 1.00, 0.95, 0.85, 0.45, 0.55])  # Mon..Sun (UAE weekend)
# Lead intake grows exponentially by this share a year: an exponential intake keeps the age
# distribution of the open leads the same at every date (a linear one would not), so undrifted
# data shows no drift in lead age once the CRM is older than the oldest lead scored.
INTAKE_GROWTH_PER_YEAR = 0.15

# Attribute history. A lead's web form is partly wrong; a sales conversation (the first
# call_connected or meeting_booked) reveals the true value and the CRM record is corrected.
# The generating model and the truth use the true value; leads.csv holds the CRM's current one.
# budget_band: share reported one band off (lower with probability REPORTED_BUDGET_LOWER)
REPORTED_WRONG_BUDGET = 0.30
REPORTED_BUDGET_LOWER = 0.6
# company_size: share reported as a rough estimate, true size x exp(Normal(0, this sd))
REPORTED_WRONG_SIZE = 0.25
REPORTED_SIZE_SIGMA = 0.6
# license_type: share of leads whose true licence is not Commercial that keep the form's default
REPORTED_DEFAULT_LICENSE = 0.15
# a wrong value is corrected after the first sales conversation with this probability, this
# many hours (exponential mean) after it
CORRECTION_PROBABILITY = 0.9
CORRECTION_DELAY_HOURS = 3.0
CONVERSATION_TYPES = ("call_connected", "meeting_booked")
# the fields of leads.csv a change may touch, in the order a change file lists them
TRACKED_FIELDS = ("company_size", "license_type", "budget_band")

INTERCEPT = -1.6  # log-odds of a lead with neutral profile and average engagement
ENGAGEMENT_SIGMA = 1.0  # sd of log engagement intensity
ENGAGEMENT_EFFECT = 1.5  # log-odds per unit of log engagement intensity
NOISE_SIGMA = 0.6  # sd of the log-odds term no profile column explains
PROPENSITY_CENTRE = -2.0  # log-odds at which the activity mix equals the base shares
DELAY_MEAN_DAYS = 32.0  # tau for a Web lead of ~10 employees, before multipliers
DELAY_BOUNDS = (20.0, 60.0)
ACTIVITY_DECAY_DAYS = 40.0  # engagement fades as exp(-age / this)
# share of the expected activities left after conversions stop some leads early (measured), so
# that `activities_per_lead` is the realised mean
ACTIVITY_KEPT = 0.8

DriftKind = Literal["lead_source_mix", "engagement_level", "industry_conversion"]
DRIFT_KINDS: tuple[str, ...] = get_args(DriftKind)


@dataclass(frozen=True)
class Drift:
    """One change to the generating process, in force for events from `start` (00:00 UTC) on.

    kind: lead_source_mix multiplies the share of source `target` among new leads;
    engagement_level multiplies the activity intensity of every lead (target None);
    industry_conversion multiplies the conversion odds of new leads of industry `target`.
    """

    kind: DriftKind
    start: date
    target: str | None = None
    factor: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in DRIFT_KINDS:
            kinds = ", ".join(DRIFT_KINDS)
            raise ConfigError(f"unknown drift kind {self.kind!r}; use one of {kinds}")
        if not self.factor > 0:
            raise ConfigError(f"drift {self.kind}: factor must be > 0, got {self.factor}")
        allowed = {"lead_source_mix": SOURCES, "industry_conversion": INDUSTRIES}.get(self.kind)
        if allowed is None and self.target:
            raise ConfigError(f"drift {self.kind} takes no target, got {self.target!r}")
        if allowed is not None and self.target not in allowed:
            raise ConfigError(
                f"drift {self.kind}: target {self.target!r} is not one of {', '.join(allowed)}"
            )

    @property
    def name(self) -> str:
        target = f":{self.target}" if self.target else ""
        return f"{self.kind}{target}@{self.start.isoformat()}"

    @property
    def start_ts(self) -> int:
        return _epoch(self.start)


def parse_drift(spec: str) -> Drift:
    """Parse `KIND:TARGET:START[:FACTOR]`, e.g. `industry_conversion:Tourism:2026-09-01:3`.

    TARGET is empty for engagement_level (`engagement_level::2026-09-01:1.5`).
    """
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise ConfigError(f"bad --drift {spec!r}: expected KIND:TARGET:START[:FACTOR]")
    kind, target, start = parts[:3]
    try:
        start_date = date.fromisoformat(start)
    except ValueError:
        raise ConfigError(f"bad --drift {spec!r}: START {start!r} is not YYYY-MM-DD") from None
    try:
        factor = float(parts[3]) if len(parts) == 4 else 2.0
    except ValueError:
        raise ConfigError(f"bad --drift {spec!r}: FACTOR {parts[3]!r} is not a number") from None
    return Drift(kind=kind, start=start_date, target=target or None, factor=factor)  # type: ignore[arg-type]


@dataclass
class GenerationSummary:
    """What a generator run wrote."""

    n_leads: int
    n_activities: int
    n_conversions: int
    start: date
    end: date
    n_attribute_changes: int = 0
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def _epoch(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _rng(seed: int, stream: str) -> np.random.Generator:
    # One independent stream per quantity: a change to one draw never shifts another, so the
    # leads created before a drift starts come out identical with and without it.
    key = int.from_bytes(hashlib.sha256(stream.encode()).digest()[:4], "little")
    return np.random.default_rng([seed, key])


def _categorical(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: row i of `probs` (or the one vector) for uniform u[i]."""
    cum = np.cumsum(probs, axis=-1)
    cum = cum / cum[..., -1:]
    if cum.ndim == 1:
        return np.searchsorted(cum[:-1], u, side="right")
    return (u[:, None] >= cum[:, :-1]).sum(axis=1)


def _values(table: dict, column: int) -> np.ndarray:
    return np.array([v[column] for v in table.values()], dtype=float)


@dataclass
class _Leads:
    """The latent state of every lead (arrays indexed by lead, in created order)."""

    created: np.ndarray
    source: np.ndarray
    industry: np.ndarray
    country: np.ndarray
    license: np.ndarray
    budget: np.ndarray
    size: np.ndarray
    visas: np.ndarray
    intensity: np.ndarray
    noise: np.ndarray
    logit_base: np.ndarray
    logit: np.ndarray
    tau: np.ndarray
    converts: np.ndarray
    converted: np.ndarray  # epoch seconds of the (possibly future) conversion, -1 if never
    value: np.ndarray
    drift_masks: dict[str, np.ndarray]
    # what the web form put in the CRM (the generating model uses the true values above)
    reported_license: np.ndarray
    reported_budget: np.ndarray
    reported_size: np.ndarray


def _draw_created(n: int, start: int, days: int, seed: int) -> np.ndarray:
    day = np.arange(days)
    weekday = (np.arange(days) + datetime.fromtimestamp(start, UTC).weekday()) % 7
    weights = WEEKDAY_WEIGHT[weekday] * np.exp(np.log1p(INTAKE_GROWTH_PER_YEAR) * day / YEAR_DAYS)
    d = _categorical(_rng(seed, "created_day").random(n), weights)
    # office hours around 12:30 UTC (16:30 in Dubai, morning in the Americas)
    hours = _rng(seed, "created_time").normal(12.5, 3.5, n)
    secs = (hours * 3600).clip(0, DAY - 1).astype(np.int64)
    return np.sort(start + d * DAY + secs, kind="stable")


def _draw_leads(
    n: int, start: int, days: int, seed: int, drifts: Sequence[Drift]
) -> _Leads:
    created = _draw_created(n, start, days, seed)
    masks: dict[str, np.ndarray] = {}

    # lead source: the share of each drift's target is multiplied for leads created after it
    src_drifts = sorted((d for d in drifts if d.kind == "lead_source_mix"), key=lambda d: d.start)
    base_share = _values(SOURCES, 0)
    state = np.searchsorted([d.start_ts for d in src_drifts], created, side="right")
    shares = [base_share.copy()]
    for d in src_drifts:
        nxt = shares[-1].copy()
        nxt[list(SOURCES).index(d.target)] *= d.factor
        shares.append(nxt)
        masks[d.name] = created >= d.start_ts
    source = _categorical(_rng(seed, "source").random(n), np.array(shares)[state])

    industry = _categorical(_rng(seed, "industry").random(n), _values(INDUSTRIES, 0))
    country = _categorical(_rng(seed, "country").random(n), _values(COUNTRIES, 0))
    log_size = _rng(seed, "size").normal(np.log(8.0), 1.4, n)
    size = np.exp(log_size).round().clip(1, 5000).astype(np.int64)
    license_ = _categorical(_rng(seed, "license").random(n), _LICENSE_GIVEN_INDUSTRY[industry])
    solo = (size <= 2) & (_rng(seed, "freelance").random(n) < 0.5)
    license_[solo] = list(LICENSES).index("Freelance")
    visas = np.exp(0.85 * np.log(size) + _rng(seed, "visas").normal(-0.2, 0.45, n))
    visas = visas.round().clip(0, 5000).astype(np.int64)
    budget_score = 0.6 * np.log(size) + _rng(seed, "budget").normal(0.0, 0.8, n)
    budget = np.searchsorted([0.8, 1.8, 2.8], budget_score)

    log_intensity = (_rng(seed, "intensity").normal(0.0, ENGAGEMENT_SIGMA, n)
                     - ENGAGEMENT_SIGMA**2 / 2 + np.log(_values(SOURCES, 2)[source]))
    noise = _rng(seed, "noise").normal(0.0, NOISE_SIGMA, n)
    logit_base = (INTERCEPT + _values(SOURCES, 1)[source] + _values(INDUSTRIES, 1)[industry]
                  + _values(COUNTRIES, 1)[country] + _values(LICENSES, 0)[license_]
                  + np.array(list(BUDGET_BANDS.values()))[budget]
                  + ENGAGEMENT_EFFECT * log_intensity + noise)
    logit = logit_base.copy()
    for d in drifts:
        if d.kind == "industry_conversion":
            hit = (industry == list(INDUSTRIES).index(d.target)) & (created >= d.start_ts)
            logit[hit] += np.log(d.factor)
            masks[d.name] = hit

    p = 1.0 / (1.0 + np.exp(-logit))
    tau = (DELAY_MEAN_DAYS * _values(SOURCES, 3)[source] * (0.8 + 0.09 * np.log(size)))
    tau = tau.clip(*DELAY_BOUNDS)
    converts = _rng(seed, "converts").random(n) < p
    delay = _rng(seed, "delay").exponential(1.0, n) * tau
    converted = np.where(converts, created + (delay * DAY).astype(np.int64), -1)
    value = (_values(LICENSES, 1)[license_] * size ** 0.12
             * np.exp(_rng(seed, "value").normal(0.0, 0.35, n))).round(2)
    reported_license, reported_budget, reported_size = _draw_reported(
        license_, budget, size, seed
    )
    return _Leads(created, source, industry, country, license_, budget, size, visas,
                  np.exp(log_intensity), noise, logit_base, logit, tau, converts, converted,
                  value, masks, reported_license, reported_budget, reported_size)


def _draw_reported(
    license_: np.ndarray, budget: np.ndarray, size: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The values the web form put in the CRM: licence, budget band and size, partly wrong."""
    n = size.size
    commercial = list(LICENSES).index("Commercial")
    keeps_default = _rng(seed, "reported_license").random(n) < REPORTED_DEFAULT_LICENSE
    reported_license = np.where(keeps_default, commercial, license_)

    off = _rng(seed, "reported_budget").random(n) < REPORTED_WRONG_BUDGET
    step = np.where(_rng(seed, "reported_budget_side").random(n) < REPORTED_BUDGET_LOWER, -1, 1)
    # at the lowest (highest) band the only wrong neighbour is above (below)
    step = np.where(budget + step < 0, 1, np.where(budget + step >= len(BUDGET_BANDS), -1, step))
    reported_budget = np.where(off, budget + step, budget)

    rough = _rng(seed, "reported_size").random(n) < REPORTED_WRONG_SIZE
    estimate = size * np.exp(_rng(seed, "reported_size_error").normal(0, REPORTED_SIZE_SIGMA, n))
    estimate = estimate.round().clip(1, 5000).astype(np.int64)
    reported_size = np.where(rough, estimate, size)
    return reported_license, reported_budget, reported_size


def _events(seed: int, stream: str, rate: np.ndarray, s: np.ndarray, e: np.ndarray):
    """A Poisson process per (lead, type) on lead ages [s, e] days with intensity
    rate[i, k] * exp(-age / decay): counts first, then times by inverse CDF."""
    decay = ACTIVITY_DECAY_DAYS
    es, ee = np.exp(-s / decay), np.exp(-np.maximum(e, s) / decay)
    lam = rate * (decay * (es - ee))[:, None]
    counts = _rng(seed, f"{stream}_counts").poisson(lam).ravel()
    flat = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    lead = (flat // rate.shape[1]).astype(np.int32)
    kind = (flat % rate.shape[1]).astype(np.int8)
    del flat
    u = _rng(seed, f"{stream}_times").random(lead.size)
    age = -decay * np.log(es[lead] - u * (es[lead] - ee[lead]))
    return lead, kind, age


def _draw_activities(
    leads: _Leads, end: int, days: int, seed: int, per_lead: float,
    drifts: Sequence[Drift],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activities as (lead index, epoch seconds, type code), sorted by time."""
    decay = ACTIVITY_DECAY_DAYS
    # scale so that a lead created uniformly in the period has `per_lead` expected activities
    # by the end date (before conversions cut some short)
    scale = per_lead / ACTIVITY_KEPT / (decay - decay**2 / days * (1 - np.exp(-days / decay)))
    base_share, tilt = _values(ACTIVITY_TYPES, 0), _values(ACTIVITY_TYPES, 1)
    # the mix follows the pre-drift propensity: an industry_conversion drift changes outcomes only
    mix = base_share * np.exp(np.outer(leads.logit_base - PROPENSITY_CENTRE, tilt))
    rate = (scale * leads.intensity)[:, None] * mix / mix.sum(axis=1, keepdims=True)
    stop = np.where((leads.converted >= 0) & (leads.converted < end), leads.converted, end)
    lifetime = (stop - leads.created) / DAY
    lead, kind, age = _events(seed, "activity", rate, np.zeros_like(lifetime), lifetime)
    ts = leads.created[lead] + (age * DAY).astype(np.int64)

    # engagement_level: piecewise factor g over calendar time; where g > 1 add an independent
    # process with (g - 1) x the rate, where g < 1 thin the base events (superposition/thinning
    # keep every activity before the first start identical to a run without the drift)
    eng = sorted((d for d in drifts if d.kind == "engagement_level"), key=lambda d: d.start)
    if eng:
        keep = np.ones(ts.size, dtype=bool)
        thin_u = _rng(seed, "engagement_thin").random(ts.size)
        bounds = [d.start_ts for d in eng] + [end]
        parts = [(lead, kind, ts)]
        g = 1.0
        for j, d in enumerate(eng):
            g *= d.factor
            lo, hi = bounds[j], bounds[j + 1]
            if g < 1:
                keep &= ~((ts >= lo) & (ts < hi) & (thin_u >= g))
            elif g > 1 and hi > lo:
                s = (np.clip(lo, leads.created, stop) - leads.created) / DAY
                e = (np.clip(hi, leads.created, stop) - leads.created) / DAY
                x_lead, x_kind, x_age = _events(seed, f"engagement_{j}", rate * (g - 1), s, e)
                x_ts = leads.created[x_lead] + (x_age * DAY).astype(np.int64)
                parts.append((x_lead, x_kind, x_ts))
        parts[0] = (lead[keep], kind[keep], ts[keep])
        lead, kind, ts = (np.concatenate(cols) for cols in zip(*parts, strict=True))
        for d in eng:
            leads.drift_masks[d.name] = stop > d.start_ts

    ts = np.minimum(ts, stop[lead] - 1)  # truncating to seconds must not reach the stop instant
    order = np.argsort(ts, kind="stable")
    return lead[order], ts[order], kind[order]


@dataclass
class _Changes:
    """Attribute corrections as parallel arrays (one row per lead and field), in time order."""

    lead: np.ndarray
    ts: np.ndarray
    field: np.ndarray  # index into TRACKED_FIELDS
    old: list[str]
    new: list[str]
    current: dict[str, np.ndarray]  # per tracked field, the CRM's value at the end (leads.csv)


def _draw_changes(
    leads: _Leads, lead: np.ndarray, ts: np.ndarray, kind: np.ndarray, end: int, seed: int
) -> _Changes:
    """Correct the wrong reported values after each lead's first sales conversation.

    A change at t depends only on the conversation at t and the lead's true attributes (which the
    conversation reveals), never on the outcome; leads of higher propensity talk to sales more
    often and so are corrected more often and sooner.
    """
    n = leads.created.size
    codes = [list(ACTIVITY_TYPES).index(t) for t in CONVERSATION_TYPES]
    talk = np.flatnonzero(np.isin(kind, codes))  # activities are in time order
    talked, first = np.unique(lead[talk], return_index=True)
    conversation = np.full(n, -1, dtype=np.int64)
    conversation[talked] = ts[talk[first]]
    delay = _rng(seed, "correction_delay").exponential(CORRECTION_DELAY_HOURS, n) * 3600
    changed_at = conversation + delay.astype(np.int64)
    happens = (conversation >= 0) & (changed_at < end)

    truth_and_reported = {
        "company_size": (leads.size, leads.reported_size),
        "license_type": (leads.license, leads.reported_license),
        "budget_band": (leads.budget, leads.reported_budget),
    }
    # codes -> the text leads.csv would hold (sizes are numbers already)
    labels = {"license_type": np.array(list(LICENSES)), "budget_band": np.array(list(BUDGET_BANDS))}

    def as_text(name: str, values: np.ndarray) -> np.ndarray:
        return labels[name][values] if name in labels else values.astype(str)

    parts, current = [], {}
    for code, name in enumerate(TRACKED_FIELDS):
        true, reported = truth_and_reported[name]
        current[name] = reported.copy()
        kept = _rng(seed, f"correction_{name}").random(n) < CORRECTION_PROBABILITY
        idx = np.flatnonzero(happens & kept & (true != reported))
        parts.append((idx, np.full(idx.size, code, dtype=np.int8),
                      as_text(name, reported[idx]), as_text(name, true[idx])))
        current[name][idx] = true[idx]
    idx = np.concatenate([p[0] for p in parts])
    field_code = np.concatenate([p[1] for p in parts])
    old = np.concatenate([p[2] for p in parts])
    new = np.concatenate([p[3] for p in parts])
    order = np.lexsort((field_code, idx, changed_at[idx]))
    return _Changes(idx[order], changed_at[idx][order], field_code[order],
                    old[order].tolist(), new[order].tolist(), current)


def _replace_atomically(write: Callable[[Path], None], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _dict_array(codes: np.ndarray, names: Sequence[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8)), pa.array(list(names)))


def _copy_csv(table: pa.Table, sql: str, path: Path) -> None:
    con = duckdb.connect()
    try:
        con.register("t", table)
        con.execute(f"copy ({sql}) to '{path}' (format csv, header true, delimiter ',')")
    finally:
        con.close()


_TS = "strftime(make_timestamp({} * 1000000), '%Y-%m-%dT%H:%M:%SZ')"


def _write_leads(leads: _Leads, current: dict[str, np.ndarray], path: Path) -> None:
    """leads.csv as a CRM exports it: the attributes' current values (`current` per tracked
    field), the others as created."""
    table = pa.table({
        "i": np.arange(1, leads.created.size + 1, dtype=np.int64),
        "created": leads.created,
        "source": _dict_array(leads.source, list(SOURCES)),
        "industry": _dict_array(leads.industry, list(INDUSTRIES)),
        "size": current["company_size"],
        "country": _dict_array(leads.country, list(COUNTRIES)),
        "license": _dict_array(current["license_type"], list(LICENSES)),
        "visas": leads.visas,
        "budget": _dict_array(current["budget_band"], list(BUDGET_BANDS)),
    })
    sql = (f"select printf('L%07d', i) as lead_id, {_TS.format('created')} as created_at, "
           "source as lead_source, industry, size as company_size, country, "
           "license as license_type, visas as visa_quota, budget as budget_band from t")
    _replace_atomically(lambda tmp: _copy_csv(table, sql, tmp), path)


def _write_changes(changes: _Changes, path: Path) -> None:
    """lead_attribute_changes.csv: one row per edit of a tracked field (header only if none)."""
    table = pa.table({
        "lead": pa.array(changes.lead.astype(np.int64) + 1, pa.int64()),
        "ts": pa.array(changes.ts, pa.int64()),
        "field": _dict_array(changes.field, TRACKED_FIELDS),
        "old": pa.array(changes.old, pa.string()),
        "new": pa.array(changes.new, pa.string()),
    })
    sql = (f"select printf('L%07d', lead) as lead_id, {_TS.format('ts')} as changed_at, "
           "field, old as old_value, new as new_value from t")
    _replace_atomically(lambda tmp: _copy_csv(table, sql, tmp), path)


def _write_activities(lead: np.ndarray, ts: np.ndarray, kind: np.ndarray, path: Path) -> None:
    table = pa.table({
        "i": np.arange(1, lead.size + 1, dtype=np.int64), "lead": lead.astype(np.int64) + 1,
        "ts": ts, "kind": _dict_array(kind, list(ACTIVITY_TYPES)),
    })
    sql = (f"select printf('A%09d', i) as activity_id, printf('L%07d', lead) as lead_id, "
           f"{_TS.format('ts')} as occurred_at, kind as activity_type from t")
    _replace_atomically(lambda tmp: _copy_csv(table, sql, tmp), path)


def _write_conversions(leads: _Leads, end: int, path: Path) -> int:
    idx = np.flatnonzero((leads.converted >= 0) & (leads.converted < end))
    idx = idx[np.argsort(leads.converted[idx], kind="stable")]
    table = pa.table({"lead": idx + 1, "ts": leads.converted[idx], "value": leads.value[idx]})
    sql = (f"select printf('L%07d', lead) as lead_id, {_TS.format('ts')} as converted_at, "
           "value::decimal(12, 2) as package_value from t")
    _replace_atomically(lambda tmp: _copy_csv(table, sql, tmp), path)
    return idx.size


def _drift_labels(n: int, drifts: Sequence[Drift], masks: dict[str, np.ndarray]) -> pa.Array:
    """Per lead, the comma-joined names of the drifts applied to it ('' when none)."""
    code = np.zeros(n, dtype=np.int64)
    for bit, d in enumerate(drifts):
        code |= masks.get(d.name, np.zeros(n, dtype=bool)).astype(np.int64) << bit
    uniq, inverse = np.unique(code, return_inverse=True)
    labels = [",".join(d.name for b, d in enumerate(drifts) if c >> b & 1) for c in uniq]
    return pa.array(labels).take(pa.array(inverse.ravel()))


def _write_truth(leads: _Leads, drifts: Sequence[Drift], path: Path) -> None:
    n = leads.created.size
    ids = pa.array(np.char.add("L", np.char.zfill(np.arange(1, n + 1).astype(str), 7)))
    ts = pa.timestamp("s", tz="UTC")
    table = pa.table({
        "lead_id": ids,
        "created_at": pa.array(leads.created, ts),
        "p_convert": 1.0 / (1.0 + np.exp(-leads.logit)),
        "conversion_delay_mean_days": leads.tau,
        "engagement_intensity": leads.intensity,
        "propensity_logit": leads.logit,
        "logit_noise": leads.noise,
        # the true attributes the generating model used (leads.csv holds the CRM's values)
        "true_company_size": leads.size,
        "true_license_type": _dict_array(leads.license, list(LICENSES)).cast(pa.string()),
        "true_budget_band": _dict_array(leads.budget, list(BUDGET_BANDS)).cast(pa.string()),
        "will_convert": leads.converts,
        "latent_converted_at": pa.array(leads.converted, ts, mask=leads.converted < 0),
        "drifts": _drift_labels(n, drifts, leads.drift_masks),
    })
    _replace_atomically(lambda tmp: pq.write_table(table, tmp, compression="zstd"), path)


def _file_facts(path: Path) -> dict[str, object]:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 24):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def generate(
    raw_dir: Path,
    truth_dir: Path,
    *,
    n_leads: int = 18_000,
    days: int = 540,
    end_date: date = date(2026, 11, 1),
    seed: int = 42,
    activities_per_lead: float = 30.0,
    drifts: Sequence[Drift] = (),
    progress: Callable[[str], None] | None = None,
) -> GenerationSummary:
    """Generate leads.csv, activities.csv, conversions.csv and lead_attribute_changes.csv in
    `raw_dir` and the latent truth (lead_truth.parquet, manifest.json) in `truth_dir`; leads are
    created in [end_date - days, end_date) and nothing at or after end_date is written.

    `progress` is called with the name of each step as it starts. Same arguments, same bytes.
    """
    if n_leads <= 0 or days <= 0 or activities_per_lead <= 0:
        raise ConfigError("generator: n_leads, days and activities_per_lead must be > 0")
    if seed < 0:
        raise ConfigError(f"generator: seed must be >= 0, got {seed}")
    names = [d.name for d in drifts]
    if len(set(names)) != len(names):
        raise ConfigError(f"generator: the same drift is given twice: {names}")
    t0 = time.perf_counter()
    end = _epoch(end_date)
    start = end - days * DAY
    start_date = end_date - timedelta(days=days)
    raw_dir, truth_dir = Path(raw_dir), Path(truth_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)

    def step(name: str) -> None:
        logger.info("generator: %s", name)
        if progress:
            progress(name)

    step(f"drawing {n_leads:,} leads")
    leads = _draw_leads(n_leads, start, days, seed, drifts)
    step("drawing activities")
    lead, ts, kind = _draw_activities(leads, end, days, seed, activities_per_lead, drifts)
    step("drawing attribute changes")
    changes = _draw_changes(leads, lead, ts, kind, end, seed)
    files = {name: raw_dir / f"{name}.csv" for name in contract.RAW_COLUMNS}
    files["lead_truth"] = truth_dir / "lead_truth.parquet"
    files["manifest"] = truth_dir / "manifest.json"
    # part files of nightly increments landed into this folder describe other leads
    contract.remove_raw_parts(raw_dir)
    step("writing leads.csv")
    _write_leads(leads, changes.current, files["leads"])
    step(f"writing activities.csv ({lead.size:,} rows)")
    _write_activities(lead, ts, kind, files["activities"])
    n_activities = int(lead.size)
    del lead, ts, kind
    step("writing conversions.csv")
    n_conversions = _write_conversions(leads, end, files["conversions"])
    step(f"writing lead_attribute_changes.csv ({changes.lead.size:,} rows)")
    _write_changes(changes, files["lead_attribute_changes"])
    step("writing the truth")
    _write_truth(leads, drifts, files["lead_truth"])

    step("writing the manifest")
    manifest = {
        "generator": "ml.data.generator",
        "model_version": MODEL_VERSION,
        "args": {"n_leads": n_leads, "days": days, "start_date": start_date.isoformat(),
                 "end_date": end_date.isoformat(), "seed": seed,
                 "activities_per_lead": activities_per_lead},
        "drifts": [{**asdict(d), "start": d.start.isoformat(), "name": d.name} for d in drifts],
        "counts": {"leads": n_leads, "activities": n_activities, "conversions": n_conversions,
                   "attribute_changes": int(changes.lead.size),
                   "eventual_conversions": int(leads.converts.sum())},
        "files": {f"{p.parent.name}/{p.name}": _file_facts(p)
                  for k, p in files.items() if k != "manifest"},
    }
    _replace_atomically(
        lambda tmp: tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n"),
        files["manifest"],
    )
    summary = GenerationSummary(n_leads, n_activities, n_conversions, start_date, end_date,
                                int(changes.lead.size), files, round(time.perf_counter() - t0, 2))
    logger.info("generator: %s leads, %s activities, %s conversions in %.1fs", n_leads,
                n_activities, n_conversions, summary.seconds)
    return summary


def generate_from_settings(
    settings: Settings,
    drifts: Sequence[Drift] = (),
    progress: Callable[[str], None] | None = None,
) -> GenerationSummary:
    """`generate` with the sizes of `settings.generator`, into `settings.paths` raw/truth dirs."""
    g = settings.generator
    return generate(
        settings.paths.raw_dir, settings.paths.truth_dir, n_leads=g.n_leads, days=g.days,
        end_date=g.end_date, seed=g.seed, activities_per_lead=g.activities_per_lead,
        drifts=drifts, progress=progress,
    )
