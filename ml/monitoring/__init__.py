"""Monitoring: drift, performance on matured labels, business metrics, and the tables the
sensors read. Entry points: `run_monitoring` and `send_alerts` (ml/monitoring/run.py), imported
lazily so that the sensors' `ml.monitoring.triggers` stays light."""

from typing import Any

__all__ = ["MonitoringReport", "run_monitoring", "send_alerts"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ml.monitoring import run

        return getattr(run, name)
    raise AttributeError(f"module 'ml.monitoring' has no attribute {name!r}")
