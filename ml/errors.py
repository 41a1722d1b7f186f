"""Errors a user can cause. The CLI prints their message without a traceback."""


class LeadScoringError(Exception):
    """Base class: the message names the thing that is wrong and how to fix it."""


class ConfigError(LeadScoringError):
    """The settings file or an environment override is invalid."""


class DataError(LeadScoringError):
    """Input data is missing or does not follow its contract."""


class StoreError(LeadScoringError):
    """A store the step needs (a database file, the registry) is damaged or unreadable."""
