"""Hot reload: follow the registry aliases, load new versions in the background, swap atomically.

The service reads `ModelManager.state` once per scoring call. A state is an immutable pair of
loaded models (champion, challenger); the poller builds a complete new state off the request
path (download, load, warm-up) and replaces the attribute in one assignment, which is atomic in
Python. A request therefore sees either the old pair or the new one, never a half-loaded model,
and no request waits for a load. A failed load keeps the current state and is retried at the
next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ml.config import Settings
from ml.model import LeadScorer

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"

# (settings, version) -> scorer; ml.registry.load_version by default (tests inject others).
Loader = Callable[[Settings, int], LeadScorer]
# (settings, alias) -> version or None; ml.registry.current_version by default.
AliasLookup = Callable[[Settings, str], int | None]


@dataclass(frozen=True)
class LoadedModel:
    """A registered version ready to score."""

    name: str
    version: int
    scorer: LeadScorer
    loaded_at: datetime


@dataclass(frozen=True)
class ModelState:
    """What the service scores with. `challenger` is None when there is none, when it is the
    champion's version, or when the mode is `off`."""

    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    checked_at: datetime | None = None
    last_error: str | None = None
    swaps: int = 0


def _default_loader(settings: Settings, version: int) -> LeadScorer:
    from ml.registry import load_version

    return load_version(settings, version)[0]


def _default_lookup(settings: Settings, alias: str) -> int | None:
    from ml.registry import current_version

    return current_version(settings, alias)


def prepare_for_serving(scorer: LeadScorer) -> LeadScorer:
    """One thread per prediction: a request scores a few rows, where OpenMP's thread start-up
    and spinning cost more than they save (and steal the cores other requests need)."""
    scorer.booster.set_param({"nthread": 1})
    scorer.predict_proba(scorer.example_input(2))  # warm-up: first-call allocations
    return scorer


@dataclass
class ModelManager:
    """Polls the registry every `settings.serving.poll_interval_seconds` in a daemon thread."""

    settings: Settings
    loader: Loader = _default_loader
    alias_lookup: AliasLookup = _default_lookup
    state: ModelState = field(default_factory=ModelState)
    on_swap: Callable[[ModelState], None] | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ready(self) -> bool:
        return self.state.champion is not None

    def start(self) -> None:
        """Load now in the background, then poll until `stop()`."""
        self._thread = threading.Thread(target=self._run, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.settings.serving.poll_interval_seconds)

    def refresh(self) -> ModelState:
        """Check the aliases once; load and swap in what changed. Never raises."""
        with self._lock:  # one refresh at a time (poller and tests/admin calls)
            current = self.state
            now = datetime.now(UTC)
            try:
                champion_v = self.alias_lookup(self.settings, CHAMPION)
                challenger_v = None
                if self.settings.serving.mode != "off":
                    challenger_v = self.alias_lookup(self.settings, CHALLENGER)
                if challenger_v == champion_v:
                    challenger_v = None
                champion = self._model(current, champion_v)
                challenger = self._model(current, challenger_v)
            except Exception as exc:  # keep serving what we have; retry at the next poll
                log.exception("model refresh failed; keeping the loaded models")
                self.state = ModelState(current.champion, current.challenger, now,
                                        f"{type(exc).__name__}: {exc}", current.swaps)
                return self.state
            changed = champion is not current.champion or challenger is not current.challenger
            self.state = ModelState(champion, challenger, now, None,
                                    current.swaps + int(changed))
            if changed:
                log.info(
                    "serving champion v%s, challenger %s",
                    champion.version if champion else None,
                    f"v{challenger.version}" if challenger else "none",
                )
                if self.on_swap is not None:
                    self.on_swap(self.state)
            return self.state

    def _model(self, current: ModelState, version: int | None) -> LoadedModel | None:
        if version is None:
            return None
        for loaded in (current.champion, current.challenger):
            if loaded is not None and loaded.version == version:
                return loaded  # already loaded (e.g. the challenger was promoted)
        started = time.perf_counter()
        scorer = prepare_for_serving(self.loader(self.settings, version))
        log.info("loaded model v%s in %.2f s", version, time.perf_counter() - started)
        return LoadedModel(self.settings.registry.model_name, version, scorer, datetime.now(UTC))
