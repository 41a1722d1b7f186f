"""Alerting: rules turn monitoring figures and platform events into alerts of a severity
(`rules`), routes send each severity to its channels with retries and a cool-down (`channels`),
and the senders speak each channel's protocol (`senders`)."""

from ml.alerts.channels import AlertResult, dispatch
from ml.alerts.rules import Alert, event_alert

__all__ = ["Alert", "AlertResult", "dispatch", "event_alert"]
