"""Raw CRM data: the deterministic generator and its latent truth (see data/README.md)."""

from ml.data.generator import (
    Drift,
    GenerationSummary,
    generate,
    generate_from_settings,
    parse_drift,
)
from ml.data.truth import load_truth, oracle_probability

__all__ = [
    "Drift",
    "GenerationSummary",
    "generate",
    "generate_from_settings",
    "load_truth",
    "oracle_probability",
    "parse_drift",
]
