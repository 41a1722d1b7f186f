"""Hot reload: follow the registry aliases, load new versions in the background, swap atomically.

The service reads `ModelManager.state` once per scoring call. A state is an immutable pair of
loaded models (champion, challenger); the poller builds a complete new state off the request
path (download, load, warm-up) and replaces the attribute in one assignment, which is atomic in
Python. A request therefore sees either the old pair or the new one, never a half-loaded model,
and no request waits for a load.

Surviving the registry. A loaded champion is only ever replaced by another loaded version, never
dropped: the model changes only on a successful read that names a version and loads. A poll that
fails (registry unreachable or erroring, a version that will not load) keeps the loaded models,
marks the state `degraded` with a reason safe to show a client (no paths, URLs or exception
text; the exception goes to the log), and the next poll comes after an exponential backoff
(1 s, 2 s, 4 s ... capped at the poll interval). An alias lookup that answers "no champion" while
one is loaded is treated the same way: `ml.registry.current_version` also answers None when
MLflow errors, so "no champion" cannot be told apart from "cannot tell", and dropping the model
would turn a registry hiccup into an outage. Deliberately retiring a model is therefore done by
pointing @champion at another version (or stopping the service), not by deleting the alias.
A challenger that is gone from the registry is dropped (the champion serves everyone anyway).

The garbage collector. A loaded service holds ~490k Python objects (the models, Feast's registry,
the libraries); CPython's full collection walks them all and holds the GIL for ~300 ms, which
every request in flight waits out. It ran one about every 50,000 requests
(`tests/benchmarks/bench_gc_pauses.py`, 100,000 requests in process: 2 full collections, the
longest 326 ms, the slowest request 332 ms). After each swap the manager therefore collects once
(the old models' garbage goes) and freezes what is left (`gc.freeze`, `serving.freeze_heap`):
later collections only walk objects created since (same run: 59 full collections of at most
2 ms, the slowest request 19 ms). A swap costs that one collection instead.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ml import fast_trees
from ml.config import Settings
from ml.model import LeadScorer

log = logging.getLogger(__name__)

BACKOFF_START_SECONDS = 1.0  # first retry after a failed poll; doubles up to the poll interval

REGISTRY_UNREACHABLE = "the model registry cannot be read"

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
    last_error: str | None = None  # why the last poll failed, phrased for clients
    swaps: int = 0
    failed_polls: int = 0  # in a row; 0 after a good poll

    @property
    def degraded(self) -> bool:
        """The last poll failed: the models in use may be stale."""
        return self.failed_polls > 0


def _default_loader(settings: Settings, version: int) -> LeadScorer:
    from ml.registry import load_version

    return load_version(settings, version)[0]


class RegistryUnavailable(Exception):
    """The registry's store cannot be reached."""


def _default_lookup(settings: Settings, alias: str) -> int | None:
    from ml.registry import current_version

    uri = settings.paths.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # MLflow would create a fresh, empty database at that path and answer "no such
        # model": a registry file that vanished is an outage, not an empty registry.
        raise RegistryUnavailable(f"registry database {uri} does not exist")
    return current_version(settings, alias)


def prepare_for_serving(scorer: LeadScorer) -> LeadScorer:
    """One thread per prediction: a request scores a few rows, where OpenMP's thread start-up
    and spinning cost more than they save (and steal the cores other requests need). The same
    for the version's request model; a linear family has no threads to set. Where numba is
    installed, the trees are laid out for the compiled walker and its few-leads kernel is
    compiled now: a request's trees are then walked in microseconds (XGBoost's predict and
    contributions of one lead take ~0.5 ms), with the same numbers bit for bit."""
    for part in (scorer, scorer.request_scorer):
        if part is None:
            continue
        if part.booster is not None:
            part.booster.set_param({"nthread": 1})
            # the compiled walker, ready before the first request (no-op without numba)
            fast_trees.warm_up(part.booster, len(part.feature_names))
        part.predict_proba(part.example_input(2))  # warm-up: first-call allocations
    return scorer


def settle_heap() -> None:
    """Collect everything once, then freeze what survives out of the collector's sight: the
    models just swapped in and everything loaded before them are never walked again. Unfreezing
    first lets this collection free what an earlier freeze kept (the models swapped out)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass
class ModelManager:
    """Polls the registry every `settings.serving.poll_interval_seconds` in a daemon thread
    (sooner, with backoff, after a failed poll)."""

    settings: Settings
    loader: Loader = _default_loader
    alias_lookup: AliasLookup = _default_lookup
    state: ModelState = field(default_factory=ModelState)
    on_swap: Callable[[ModelState], None] | None = None
    on_poll: Callable[[ModelState], None] | None = None  # after every poll (metrics)
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

    def next_wait(self, state: ModelState) -> float:
        """Seconds until the next poll: the interval, or a capped backoff after failures."""
        interval = self.settings.serving.poll_interval_seconds
        if not state.failed_polls:
            return interval
        return min(interval, BACKOFF_START_SECONDS * 2.0 ** (state.failed_polls - 1))

    def _run(self) -> None:
        while not self._stop.is_set():
            # no local keeps the polled state while waiting: a model swapped out meanwhile
            # must not be kept alive by this thread (and then frozen, see settle_heap)
            self._stop.wait(self.next_wait(self.refresh()))

    def refresh(self) -> ModelState:
        """Check the aliases once; load and swap in what changed. Never raises."""
        with self._lock:  # one refresh at a time (poller and tests/admin calls)
            state = self._poll(self.state)
            changed = (state.champion is not self.state.champion
                       or state.challenger is not self.state.challenger)
            self.state = state
            if changed:
                log.info(
                    "serving champion v%s, challenger %s",
                    state.champion.version if state.champion else None,
                    f"v{state.challenger.version}" if state.challenger else "none",
                )
                if self.on_swap is not None:
                    self.on_swap(state)
                if self.settings.serving.freeze_heap:
                    settle_heap()
            if self.on_poll is not None:
                self.on_poll(state)
            return state

    def _poll(self, current: ModelState) -> ModelState:
        now = datetime.now(UTC)

        def failed(reason: str, champion: LoadedModel | None,
                   challenger: LoadedModel | None) -> ModelState:
            swaps = current.swaps + int(champion is not current.champion
                                        or challenger is not current.challenger)
            return ModelState(champion, challenger, now, reason, swaps, current.failed_polls + 1)

        try:
            champion_v = self.alias_lookup(self.settings, CHAMPION)
            challenger_v = None
            if self.settings.serving.mode != "off":
                challenger_v = self.alias_lookup(self.settings, CHALLENGER)
        except Exception:  # keep serving what we have; retry with backoff
            log.exception("registry poll failed; keeping the loaded models")
            return failed(self._keeping(REGISTRY_UNREACHABLE, current), current.champion,
                          current.challenger)
        if challenger_v == champion_v:
            challenger_v = None
        challenger_failed = None
        try:
            challenger = self._model(current, challenger_v)
        except Exception:
            # The champion is still loaded below: a broken challenger must not keep a service
            # that starts (or a champion that moves) from serving.
            log.exception("could not load challenger v%s", challenger_v)
            challenger = current.challenger
            if challenger is not None and challenger.version == champion_v:
                challenger = None
            challenger_failed = f"challenger v{challenger_v} could not be loaded"
        if champion_v is None:
            if current.champion is None:
                return ModelState(None, challenger, now, None, current.swaps, 0)
            return failed(self._keeping("the registry names no champion", current),
                          current.champion, challenger)
        try:
            champion = self._model(current, champion_v)
        except Exception:
            log.exception("could not load champion v%s", champion_v)
            return failed(self._keeping(f"champion v{champion_v} could not be loaded", current),
                          current.champion, challenger)
        if challenger_failed is not None:
            return failed(challenger_failed, champion, challenger)
        changed = champion is not current.champion or challenger is not current.challenger
        return ModelState(champion, challenger, now, None, current.swaps + int(changed), 0)

    @staticmethod
    def _keeping(reason: str, current: ModelState) -> str:
        if current.champion is None:
            return f"{reason}; no model loaded yet"
        return f"{reason}; serving the last loaded champion v{current.champion.version}"

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
