"""The generator's latent truth and the oracle score it implies.

A lead ever converts with probability p (`p_convert`); if it does, the delay from its creation is
exponential with mean tau (`conversion_delay_mean_days`), so F(d) = 1 - exp(-d / tau) is the
chance of having converted within d days given that it converts. For a snapshot at t of a lead
created at c that has not converted by t, the chance that it converts in (t, t + W] is

    P = p * (F(t + W - c) - F(t - c)) / (1 - p * F(t - c)).

Activities depend only on the latent variables, never on the realised outcome, so P is the best
score any model can give (the Bayes-optimal "oracle"); model quality is judged against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ml.errors import DataError

TRUTH_FILE = "lead_truth.parquet"
TRUTH_COLUMNS = ("lead_id", "created_at", "p_convert", "conversion_delay_mean_days")


def load_truth(truth_dir: Path) -> pd.DataFrame:
    """Read lead_truth.parquet (one row per lead), indexed by nothing, lead_id as a column.

    Raises:
        DataError: the file is missing (run `lead-scoring generate`) or lacks a column.
    """
    path = Path(truth_dir) / TRUTH_FILE
    if not path.is_file():
        raise DataError(f"truth file not found: {path} (run `lead-scoring generate` first)")
    truth = pd.read_parquet(path)
    missing = [c for c in TRUTH_COLUMNS if c not in truth.columns]
    if missing:
        raise DataError(f"truth file {path} lacks columns {missing}; regenerate the data")
    return truth


def _epoch_seconds(values: Sequence | np.ndarray | pd.Series) -> np.ndarray:
    ts = pd.to_datetime(pd.Series(np.asarray(values)), utc=True)
    return (ts - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()


def oracle_probability(
    truth: pd.DataFrame,
    lead_ids: Sequence[str] | np.ndarray | pd.Series,
    created_at: Sequence | np.ndarray | pd.Series | None,
    snapshot_ts: Sequence | np.ndarray | pd.Series,
    window_days: float,
) -> np.ndarray:
    """P(the lead converts in (t, t + window] | its latent p and tau, not converted by t).

    Args:
        truth: the frame of `load_truth`.
        lead_ids, snapshot_ts: one (lead, t) pair per output row; timestamps naive UTC or aware.
        created_at: the leads' creation times, aligned with lead_ids; None takes them from truth.
        window_days: the label window W in days.

    Raises:
        DataError: a lead id is not in the truth file.
    """
    indexed = truth.set_index("lead_id")
    ids = pd.Index(np.asarray(lead_ids))
    pos = indexed.index.get_indexer(ids)
    if (pos < 0).any():
        unknown = ids[pos < 0][:5].tolist()
        raise DataError(f"leads not in the truth file: {unknown} (was the data regenerated?)")
    p = indexed["p_convert"].to_numpy()[pos]
    tau = indexed["conversion_delay_mean_days"].to_numpy()[pos]
    created = _epoch_seconds(indexed["created_at"].to_numpy()[pos] if created_at is None
                             else created_at)
    age = np.maximum(_epoch_seconds(snapshot_ts) - created, 0.0) / 86_400.0
    done = 1.0 - np.exp(-age / tau)
    later = 1.0 - np.exp(-(age + window_days) / tau)
    return p * (later - done) / (1.0 - p * done)
