"""API keys for the service, as a FastAPI dependency.

Off unless keys are configured (`serving.auth`: an environment variable and/or a secrets file,
read and validated by `load_settings`). With keys, every endpoint but `/health` needs one in the
configured header (default `X-API-Key`); a missing or wrong key is a 401 that says which header
is expected and nothing else. Keys are compared in constant time over their SHA-256 digests
(so neither a key's length nor its prefix leaks through timing) and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable

from fastapi import HTTPException, Request

from ml.config import Settings

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health"})


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def api_key_check(settings: Settings) -> Callable[[str | None], bool] | None:
    """Whether a given header value is a configured key; None when no key is configured."""
    keys = [_digest(k) for k in settings.api_keys]
    if not keys:
        return None

    def valid(given: str | None) -> bool:
        if given is None:
            return False
        digest = _digest(given)
        # every key is compared (no early exit): the time does not say which one matched
        return any([hmac.compare_digest(digest, k) for k in keys])

    return valid


def api_key_dependency(settings: Settings) -> Callable[[Request], None] | None:
    """The dependency that checks a request's API key; None when no key is configured."""
    valid = api_key_check(settings)
    if valid is None:
        return None
    header = settings.serving.auth.header

    def require_api_key(request: Request) -> None:
        if request.url.path in OPEN_PATHS:
            return
        given = request.headers.get(header)
        if valid(given):
            return
        log.warning("rejected a request to %s: %s API key", request.url.path,
                    "missing" if given is None else "unknown")
        raise HTTPException(
            status_code=401,
            detail=f"missing or unknown API key; send it in the {header} header",
            headers={"WWW-Authenticate": f'ApiKey header="{header}"'},
        )

    return require_api_key
