"""The one promotion door: `promote` (and `rollback`) move `@champion`; `compare` decides.

`compare` is pure: it sees the candidate's and the champion's per-fold AUCs (keyed by the fold's
origin date, from the backtest both were evaluated on) and compares them on the folds they have
in common: accepted if the candidate's backtest mean ≥ registry.min_auc and its mean on the
common folds ≥ the champion's mean there − registry.champion_tolerance. Versions without fold
metrics (registered before the backtest) are compared as before, on their `test_auc`.

`promote` reads both versions from the registry, lets an optional evaluator re-score the
champion on the candidate's folds (it wins over the champion's stored folds) or, when the two
share no fold, takes the champion's family as refit on the candidate's folds (training logs
every family's fold AUCs as `backtest.fold_aucs.<family>`), runs `compare`,
moves the alias, records the reason in the alias history and sends the `promotion` alert. The
CLI (`promote`, `train --promote`) and the Dagster gate asset all come through here. A registry
error never skips the comparison: it raises RegistryError and nothing moves.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ml.config import Settings
from ml.model import LeadScorer
from ml.registry.alias_history import alias_history, alias_stack, move_alias, reconcile_alias
from ml.registry.client import RegistryError, mlflow_client, registry_errors
from ml.registry.tracking import (
    BACKTEST_AUC_METRIC,
    FOLD_AUCS_TAG,
    TEST_AUC_METRIC,
    TEST_END_TAG,
    TEST_START_TAG,
    parse_fold_aucs,
)
from ml.registry.versions import CHALLENGER, CHAMPION, alias_version, load_version, resolve

log = logging.getLogger(__name__)

# Re-scores the champion on the candidate's backtest folds: champion version -> {origin: AUC}.
Evaluator = Callable[[int], Mapping[str, float]]
# The evaluator before the backtest: (scorer, test window start, end) -> AUC. Still accepted,
# on the test_auc basis only, until every caller passes an Evaluator.
WindowEvaluator = Callable[[LeadScorer, str | None, str | None], float]
_EPS = 1e-12  # float noise: a tie within the tolerance passes


@dataclass(frozen=True)
class GateInput:
    """What the gate knows of one version.

    fold_aucs: backtest AUC per fold origin date ("YYYY-MM-DD"); {} for versions without one.
    mean_auc: the backtest mean AUC (None: the mean of fold_aucs).
    test_auc / test_window: the single test-window figure of versions without folds.
    source: how the figures were obtained (said in the verdict).
    """

    version: int
    fold_aucs: dict[str, float] = field(default_factory=dict)
    mean_auc: float | None = None
    test_auc: float | None = None
    test_window: tuple[str | None, str | None] = (None, None)
    source: str = "stored metrics"
    family: str | None = None  # the model family (tag `family`), e.g. xgboost, logistic
    # every family's AUC per fold on this version's folds (tags backtest.fold_aucs.<family>)
    family_fold_aucs: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def backtest_mean(self) -> float | None:
        if self.mean_auc is not None and math.isfinite(self.mean_auc):
            return self.mean_auc
        values = [v for v in self.fold_aucs.values() if math.isfinite(v)]
        return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision and its grounds (`message` names both means, the folds, tolerance)."""

    accepted: bool
    basis: str  # "folds" (common backtest folds) or "test_auc" (versions without folds)
    message: str
    candidate_auc: float | None = None
    champion_auc: float | None = None
    folds: tuple[str, ...] = ()


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _mean(aucs: Mapping[str, float], folds: tuple[str, ...]) -> float:
    return sum(aucs[f] for f in folds) / len(folds)


def compare(candidate: GateInput, champion: GateInput | None, settings: Settings) -> GateVerdict:
    """Decide whether `candidate` may replace `champion` (None: there is no champion yet)."""
    reg = settings.registry
    tol = reg.champion_tolerance
    by_folds = bool(candidate.fold_aucs) and (champion is None or bool(champion.fold_aucs))
    if not by_folds:
        return _compare_test_auc(candidate, champion, settings)
    mean = candidate.backtest_mean
    n = len(candidate.fold_aucs)
    if not _finite(mean):
        return GateVerdict(
            False,
            "folds",
            f"refused: v{candidate.version} has no finite "
            f"backtest mean AUC over its {n} folds; evaluate it before promoting",
        )
    assert mean is not None
    if mean < reg.min_auc - _EPS:
        return GateVerdict(
            False,
            "folds",
            f"refused: backtest mean AUC {mean:.4f} over {n} "
            f"folds < min_auc {reg.min_auc} (registry.min_auc)",
            mean,
        )
    if champion is None:
        return GateVerdict(
            True,
            "folds",
            f"backtest mean AUC {mean:.4f} over {n} folds ≥ min_auc {reg.min_auc}; first champion",
            mean,
        )
    usable = {k for k, v in champion.fold_aucs.items() if math.isfinite(v)}
    folds = tuple(sorted(usable & {k for k, v in candidate.fold_aucs.items() if math.isfinite(v)}))
    if not folds:
        return GateVerdict(
            False,
            "folds",
            f"refused: v{candidate.version} and champion v{champion.version} share no backtest "
            f"fold (candidate {', '.join(sorted(candidate.fold_aucs))}; champion "
            f"{', '.join(sorted(champion.fold_aucs)) or 'none usable'}); re-score the champion on "
            "the candidate's folds (train --promote does) or pass --force with a reason",
            mean,
        )
    cand, champ = _mean(candidate.fold_aucs, folds), _mean(champion.fold_aucs, folds)
    grounds = (
        f"mean AUC on {len(folds)} common folds ({', '.join(folds)}): candidate "
        f"v{candidate.version} {cand:.4f}, champion v{champion.version} {champ:.4f} "
        f"({champion.source}); champion_tolerance {tol}"
    )
    if cand < champ - tol - _EPS:
        return GateVerdict(
            False,
            "folds",
            f"refused: worse than the champion by "
            f"{champ - cand:.4f} > champion_tolerance {tol} "
            f"(registry.champion_tolerance); {grounds}",
            cand,
            champ,
            folds,
        )
    return GateVerdict(
        True,
        "folds",
        f"backtest mean AUC {mean:.4f} ≥ min_auc {reg.min_auc}; {grounds}",
        cand,
        champ,
        folds,
    )


def _compare_test_auc(
    candidate: GateInput, champion: GateInput | None, settings: Settings
) -> GateVerdict:
    """The comparison of versions without backtest folds: one test-window AUC each."""
    reg = settings.registry
    auc = candidate.test_auc
    if not _finite(auc):
        return GateVerdict(
            False,
            "test_auc",
            f"refused: version {candidate.version} has no "
            f"usable {TEST_AUC_METRIC} metric on its run (got {auc}) and no "
            f"{FOLD_AUCS_TAG} tag; evaluate it before promoting",
        )
    assert auc is not None
    if auc < reg.min_auc - _EPS:
        return GateVerdict(
            False,
            "test_auc",
            f"refused: {TEST_AUC_METRIC} {auc:.4f} < min_auc {reg.min_auc} (registry.min_auc)",
            auc,
        )
    if champion is None:
        return GateVerdict(
            True,
            "test_auc",
            f"{TEST_AUC_METRIC} {auc:.4f} ≥ min_auc {reg.min_auc}; first champion",
            auc,
        )
    champ = champion.test_auc
    start, end = candidate.test_window
    if champion.source.startswith("re-evaluated"):
        how = f"champion {champion.source} {start}–{end}"
    elif champion.test_window == candidate.test_window:
        how = f"{champion.source}, same test window {start}–{end}"
    else:
        c_start, c_end = champion.test_window
        how = (
            f"{champion.source} on different test windows: champion {c_start}–{c_end}, "
            f"candidate {start}–{end}"
        )
    if not _finite(champ):
        return GateVerdict(
            False,
            "test_auc",
            f"refused: champion v{champion.version} has no "
            f"usable {TEST_AUC_METRIC} to compare with ({how}); re-score it or "
            "pass --force with a reason",
            auc,
        )
    assert champ is not None
    tol = reg.champion_tolerance
    if auc < champ - tol - _EPS:
        return GateVerdict(
            False,
            "test_auc",
            f"refused: {TEST_AUC_METRIC} {auc:.4f} is worse "
            f"than champion v{champion.version}'s {champ:.4f} by "
            f"{champ - auc:.4f} > champion_tolerance {tol} "
            f"(registry.champion_tolerance; {how})",
            auc,
            champ,
        )
    return GateVerdict(
        True,
        "test_auc",
        f"{TEST_AUC_METRIC} {auc:.4f} ≥ min_auc {reg.min_auc}, "
        f"within {tol} of champion v{champion.version}'s {champ:.4f} ({how})",
        auc,
        champ,
    )


@dataclass(frozen=True)
class PromotionDecision:
    """The outcome of promote/rollback; `message` spells out why."""

    accepted: bool
    action: str  # promote, rollback
    model_name: str
    version: int | None
    previous_champion: int | None
    message: str
    test_auc: float | None = None  # the candidate's figure the gate used (fold mean or test_auc)
    champion_auc: float | None = None  # the champion's, on the same folds or window
    comparison: str | None = None  # the grounds of the comparison with the champion
    basis: str | None = None  # "folds" or "test_auc"
    folds: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "folds": list(self.folds)}


def gate_input(client: Any, settings: Settings, version: int) -> GateInput:
    """The stored figures of a version: its run's fold AUCs, backtest mean and test AUC."""
    mv = client.get_model_version(settings.registry.model_name, str(version))
    if not mv.run_id:
        return GateInput(version, source="no run recorded")
    run = client.get_run(mv.run_id)
    tags = {**run.data.tags, **(mv.tags or {})}
    metrics = run.data.metrics
    prefix = f"{FOLD_AUCS_TAG}."
    return GateInput(
        version=version,
        fold_aucs=parse_fold_aucs(tags.get(FOLD_AUCS_TAG)),
        mean_auc=metrics.get(BACKTEST_AUC_METRIC),
        test_auc=metrics.get(TEST_AUC_METRIC),
        test_window=(tags.get(TEST_START_TAG), tags.get(TEST_END_TAG)),
        family=tags.get("family"),
        family_fold_aucs={
            k.removeprefix(prefix): parse_fold_aucs(v)
            for k, v in tags.items()
            if k.startswith(prefix)
        },
    )


def _champion_family_on_candidate_folds(
    champion: GateInput, candidate: GateInput
) -> GateInput | None:
    """When the champion shares no fold with the candidate (an old champion): its family as
    refit by the candidate's own backtest, on the candidate's folds (training logs every
    family's fold AUCs), so the comparison is still like for like in time. None if absent."""
    if not champion.fold_aucs or not candidate.fold_aucs or champion.family is None:
        return None
    if set(champion.fold_aucs) & set(candidate.fold_aucs):
        return None
    folds = candidate.family_fold_aucs.get(champion.family)
    if not folds:
        return None
    return GateInput(
        champion.version,
        fold_aucs=folds,
        test_auc=champion.test_auc,
        test_window=champion.test_window,
        source=f"no common fold: its family ({champion.family}) as refit on the candidate's folds",
        family=champion.family,
    )


def _is_window_evaluator(evaluator: Callable[..., Any]) -> bool:
    try:
        inspect.signature(evaluator).bind(0)
    except TypeError:
        return True  # does not take one version number: the (scorer, start, end) form
    except ValueError:  # no signature (a builtin): assume the current form
        return False
    return False


def _rescored_champion(
    settings: Settings,
    champion: GateInput,
    candidate: GateInput,
    evaluator: Evaluator | WindowEvaluator,
) -> GateInput:
    """The champion's figures as the evaluator re-scores them on the candidate's folds (or, in
    the old form, on its test window); the stored ones when that is impossible (one class)."""
    if _is_window_evaluator(evaluator):
        scorer, _ = load_version(settings, champion.version)
        start, end = candidate.test_window
        auc = float(evaluator(scorer, start, end))  # type: ignore[call-arg]
        if math.isnan(auc):
            return GateInput(
                **{
                    **champion.__dict__,
                    "source": f"re-evaluation on {start}–{end} "
                    "impossible (one class only); stored metrics",
                }
            )
        return GateInput(
            champion.version,
            test_auc=auc,
            test_window=candidate.test_window,
            source="re-evaluated on the candidate's test window",
        )
    folds = {str(k): float(v) for k, v in evaluator(champion.version).items()}  # type: ignore[call-arg]
    return GateInput(
        champion.version,
        fold_aucs=folds,
        test_auc=champion.test_auc,
        test_window=champion.test_window,
        source="re-scored on the candidate's folds",
    )


def promote(
    settings: Settings,
    version: int | None = None,
    *,
    reason: str,
    actor: str,
    force: bool = False,
    evaluator: Evaluator | WindowEvaluator | None = None,
) -> PromotionDecision:
    """Move `@champion` to the challenger (or `version`) if it passes the gate (`compare`).

    Args:
        evaluator: re-scores the champion on the candidate's backtest folds (version ->
            {origin: AUC}); it wins over the champion's stored folds.
        force: skip the gate (recorded in the alias history with the reason).

    Returns:
        The decision; a refusal has accepted=False and the grounds in `message`.

    Raises:
        RegistryError: no such version, no challenger, or the registry fails (nothing moves).
    """
    name = settings.registry.model_name
    try:
        client = mlflow_client(settings, create=False)
        with registry_errors(settings, "running the promotion gate"):
            if version is None:
                candidate = alias_version(client, name, CHALLENGER)
                if candidate is None:
                    raise RegistryError(
                        f"model {name!r} has no @challenger to promote; train a model "
                        "first or pass --version"
                    )
            else:
                candidate = int(resolve(client, settings, version).version)
            champion = reconcile_alias(settings, client, CHAMPION, actor)
            if champion == candidate:
                return PromotionDecision(
                    False,
                    "promote",
                    name,
                    candidate,
                    champion,
                    f"version {candidate} is already @champion; nothing to do",
                )
            verdict = None
            if not force:  # forced: the candidate's figures are not even read
                cand_input = gate_input(client, settings, candidate)
                champ_input = None
                if champion is not None:
                    champ_input = gate_input(client, settings, champion)
                    if evaluator is not None:
                        champ_input = _rescored_champion(
                            settings, champ_input, cand_input, evaluator
                        )
                    else:
                        champ_input = (
                            _champion_family_on_candidate_folds(champ_input, cand_input)
                            or champ_input
                        )
                verdict = compare(cand_input, champ_input, settings)
                if not verdict.accepted:
                    log.warning("%s", verdict.message)
                    return _decision(verdict, name, candidate, champion, verdict.message)
            why = "forced, gate skipped" if verdict is None else verdict.message
            move_alias(
                settings,
                client,
                CHAMPION,
                champion,
                candidate,
                "promote",
                reason=f"{reason} [{why}]",
                actor=actor,
            )
    except RegistryError as exc:
        raise RegistryError(f"promotion refused, nothing moved: {exc}") from exc.__cause__
    was = "none" if champion is None else f"v{champion}"
    message = f"promoted v{candidate} to @champion (was {was}): {why}"
    _alert(
        settings,
        f"v{candidate} promoted to @champion",
        message,
        f"promotion:{name}:v{candidate}",
        {
            "version": candidate,
            "previous_champion": champion,
            "reason": reason,
            "actor": actor,
            "forced": force,
        },
    )
    if verdict is None:
        return PromotionDecision(
            True, "promote", name, candidate, champion, message, comparison=why
        )
    return _decision(verdict, name, candidate, champion, message)


def _decision(
    verdict: GateVerdict, name: str, candidate: int, champion: int | None, message: str
) -> PromotionDecision:
    return PromotionDecision(
        verdict.accepted,
        "promote",
        name,
        candidate,
        champion,
        message,
        test_auc=verdict.candidate_auc,
        champion_auc=verdict.champion_auc,
        comparison=verdict.message,
        basis=verdict.basis,
        folds=verdict.folds,
    )


def _alert(settings: Settings, title: str, summary: str, key: str, details: dict[str, Any]) -> None:
    """Send the `promotion` alert; a failing channel never undoes or fails the move."""
    from ml.alerts import dispatch, event_alert

    try:
        dispatch(
            settings, [event_alert(settings, "promotion", title, summary, key=key, details=details)]
        )
    except Exception:  # noqa: BLE001 - the alias moved; the alert is a notification
        log.exception("could not send the promotion alert %s", key)


def rollback(settings: Settings, *, reason: str, actor: str) -> PromotionDecision:
    """Move `@champion` back to the champion before the current one (from the alias history).

    Raises:
        RegistryError: there is no earlier champion to go back to, or the registry fails.
    """
    client = mlflow_client(settings, create=False)
    name = settings.registry.model_name
    with registry_errors(settings, "rolling back @champion"):
        champion = reconcile_alias(settings, client, CHAMPION, actor)
        stack = alias_stack(alias_history(settings), name, CHAMPION)
        if champion is None or len(stack) < 2:
            raise RegistryError(
                f"model {name!r} has no previous champion to roll back to (champion: "
                f"{'none' if champion is None else f'v{champion}'}); see `lead-scoring history`"
            )
        if stack[-1] != champion:
            log.warning(
                "@champion is v%s but the history says v%s: it was moved outside this tool",
                champion,
                stack[-1],
            )
        target = stack[-2]
        move_alias(
            settings, client, CHAMPION, champion, target, "rollback", reason=reason, actor=actor
        )
    message = f"rolled back @champion from v{champion} to v{target}: {reason}"
    _alert(
        settings,
        f"@champion rolled back to v{target}",
        message,
        f"promotion:{name}:rollback:v{champion}->v{target}",
        {"version": target, "previous_champion": champion, "reason": reason, "actor": actor},
    )
    return PromotionDecision(True, "rollback", name, target, champion, message)
