"""Settings of the small generated dataset the pipeline tests share (imported by conftest and
by tests that build a pipeline of their own)."""

from pathlib import Path

from ml.config import Settings, load_settings

# Small, but long enough for the backtest: labels mature 60 days after a snapshot, a fold
# validates on the 3 weeks before its embargo and needs months of training history before that.
TEST_GENERATOR = {"generator.n_leads": 6000, "generator.days": 330, "generator.seed": 7}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings whose every generated file lives under `data_dir`."""
    return load_settings(overrides={"paths.data_dir": str(data_dir), **TEST_GENERATOR, **overrides})
