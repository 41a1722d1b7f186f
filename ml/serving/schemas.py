"""Request and response bodies of the service (they make the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ORIGINAL_EXAMPLE = {
    "lead_id": "lead-123",
    "lead_source": "Web",
    "industry": "Technology",
    "company_size": 150,
    "engagement_score": 75.0,
    "website_visits": 10,
    "email_opens": 5,
}

# Request fields that are also model features: when given, they win over the online store.
OVERRIDE_FIELDS = (
    "lead_source", "industry", "country", "license_type", "budget_band",
    "company_size", "visa_quota", "engagement_score", "website_visits", "email_opens",
)


class PredictRequest(BaseModel):
    """A lead to score: its id, and optionally feature values that win over the online store
    (the payload of the original design, plus the CRM form's other fields). Send only
    `lead_id` to score a lead the online store knows."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [ORIGINAL_EXAMPLE, {"lead_id": "L0017024"}]},
    )

    lead_id: str = Field(min_length=1, max_length=64, description="CRM lead id.")
    lead_source: str | None = Field(None, max_length=64, description="e.g. Web, Referral.")
    industry: str | None = Field(None, max_length=64, description="e.g. Technology.")
    country: str | None = Field(None, max_length=64)
    license_type: str | None = Field(None, max_length=64, description="e.g. Commercial.")
    budget_band: str | None = Field(None, max_length=16, description="<25k, 25k-50k, ...")
    company_size: int | None = Field(None, ge=0, le=10_000_000, description="Employees.")
    visa_quota: int | None = Field(None, ge=0, le=100_000)
    engagement_score: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    website_visits: int | None = Field(None, ge=0, le=10_000_000)
    email_opens: int | None = Field(None, ge=0, le=10_000_000)

    def overrides(self) -> dict[str, object]:
        """The feature values this request gives."""
        return {k: v for k in OVERRIDE_FIELDS if (v := getattr(self, k)) is not None}


class BatchRequest(BaseModel):
    """Many leads in one call (at most `serving.batch_limit`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"leads": [ORIGINAL_EXAMPLE, {"lead_id": "L0017024"}]}]},
    )

    leads: list[PredictRequest] = Field(min_length=1)


class FeatureSources(BaseModel):
    """Where each model feature came from."""

    in_online_store: bool = Field(description="Whether the Feast online store knows the lead.")
    from_request: list[str]
    from_online_store: list[str]
    assumed: list[str] = Field(
        default_factory=list,
        description="Not given, and what a new lead has by definition: no activity.")
    missing: list[str] = Field(description="Neither given, stored nor assumed: scored as not "
                               "given (never a reason).")


class PredictResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "lead_id": "lead-123", "score": 37.5, "probability": 0.375, "tier": "B",
        "reasons": ["booked a meeting in the last 30 days", "company in the Technology sector"],
        "reasons_against": ["no website visits in the last 7 days"],
        "model_name": "lead_scoring", "model_version": "3", "variant": "champion",
        "feature_sources": {"in_online_store": True, "from_request": ["industry"],
                            "from_online_store": ["country"], "missing": []},
        "scored_by": "full", "warnings": [],
    }]})

    lead_id: str
    score: float = Field(ge=0, le=100, description="round(probability × 100, 1).")
    probability: float = Field(ge=0, le=1)
    tier: str = Field(description="A–D, cut-offs in scoring.tiers.")
    reasons: list[str] = Field(description="Top reasons for the score.")
    reasons_against: list[str]
    model_name: str
    model_version: str
    variant: str = Field(description="champion or challenger (canary / A-B).")
    feature_sources: FeatureSources
    scored_by: Literal["full", "request"] = Field(
        description="full: the lead's stored features (request fields winning) were used; "
                    "request: scored from the request's fields only (a lead the online store "
                    "does not know, or the store is unavailable).")
    warnings: list[str] = Field(
        default_factory=list,
        description="What the client should know about this score, e.g. that the online "
                    "store was unavailable and only the request's fields were used.")


class BatchResponse(BaseModel):
    predictions: list[PredictResponse]
    not_found: list[str] = Field(description="Id-only leads the online store does not know.")
    unavailable: list[str] = Field(
        default_factory=list,
        description="Id-only leads not scored because the online store cannot be read now "
                    "(send their fields, or retry).")


class ModelInfo(BaseModel):
    name: str
    version: str
    loaded_at: str


class ReadyResponse(BaseModel):
    status: Literal["ready", "degraded"]
    champion: str
    reasons: list[str] = Field(
        default_factory=list, description="Why the service is degraded (empty when ready).")


class ModelsResponse(BaseModel):
    mode: str
    champion: ModelInfo | None
    challenger: ModelInfo | None
    challenger_share: float
    canary: dict[str, object] | None = None
    checked_at: str | None
    last_error: str | None = Field(description="Why the last registry poll failed, if it did.")
    degraded: bool = False
    swaps: int


class ErrorResponse(BaseModel):
    detail: str
