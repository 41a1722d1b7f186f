"""Streamlit caching of the data functions: a short TTL so a page shows a nightly run within a
minute, keyed by the settings' hash so two configurations never share an entry."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from ml.config import Settings

TTL_SECONDS = 60
T = TypeVar("T")


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def _call(_fn: Callable[..., Any], _settings: Settings, name: str, key: str, *args: Any) -> Any:
    # `name` and `key` make the cache key (leading-underscore arguments are not hashed).
    return _fn(_settings, *args)


def cached(fn: Callable[..., T]) -> Callable[..., T]:
    """`fn(settings, *args)` through the cache; args must be hashable by Streamlit."""

    @functools.wraps(fn)
    def wrapper(settings: Settings, *args: Any) -> T:
        return _call(
            fn, settings, f"{fn.__module__}.{fn.__qualname__}", settings.config_hash(), *args
        )

    return wrapper
