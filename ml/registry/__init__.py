"""Model registry: log and register models in MLflow, gate promotions, roll back, keep history.

Aliases: a newly registered version becomes `@challenger`; `promote` moves `@champion` to it
only through the gate (`gate.compare`: champion and candidate on the same backtest folds);
`rollback` moves `@champion` back. MLflow keeps no alias history, so every move is appended to
the `alias_history` table (`registry.alias_history_url`).

One module per concern:
- `client`: the MlflowClient on the configured tracking + registry URI, the fluent-API block
  that sets and restores MLflow's global URIs, and fail-closed error translation;
- `tracking`: reproducibility tags, fingerprints, the backtest fold tag, log_and_register;
- `versions`: alias lookups, loading a version, finding an identical one;
- `gate`: compare (pure), promote and rollback (the one door; alerts sent from here);
- `alias_history`: the table of alias moves.
"""

from ml.registry.alias_history import (
    ALIAS_HISTORY_FILE,
    alias_history,
    alias_history_table,
    alias_history_url,
    alias_stack,
    move_alias,
)
from ml.registry.client import (
    RegistryError,
    fluent_uris,
    is_not_found,
    mlflow_client,
    registry_uri,
    safe_uri,
)
from ml.registry.gate import (
    Evaluator,
    GateInput,
    GateVerdict,
    PromotionDecision,
    WindowEvaluator,
    compare,
    gate_input,
    promote,
    rollback,
)
from ml.registry.tracking import (
    BACKTEST_AUC_METRIC,
    FOLD_AUCS_TAG,
    MODEL_ARTIFACT,
    PACKAGES,
    TEST_AUC_METRIC,
    TEST_END_TAG,
    TEST_START_TAG,
    fold_aucs_tag,
    frame_fingerprint,
    log_and_register,
    parse_fold_aucs,
    reproducibility_tags,
)
from ml.registry.versions import (
    CHALLENGER,
    CHAMPION,
    IDENTITY_TAGS,
    MODEL_HASH_TAG,
    ModelVersionInfo,
    current_version,
    find_identical_version,
    load_champion,
    load_version,
    point_challenger,
    scorer_sha256,
)

__all__ = [
    "ALIAS_HISTORY_FILE",
    "BACKTEST_AUC_METRIC",
    "CHALLENGER",
    "CHAMPION",
    "FOLD_AUCS_TAG",
    "IDENTITY_TAGS",
    "MODEL_ARTIFACT",
    "MODEL_HASH_TAG",
    "PACKAGES",
    "TEST_AUC_METRIC",
    "TEST_END_TAG",
    "TEST_START_TAG",
    "Evaluator",
    "GateInput",
    "GateVerdict",
    "ModelVersionInfo",
    "PromotionDecision",
    "RegistryError",
    "WindowEvaluator",
    "alias_history",
    "alias_history_table",
    "alias_history_url",
    "alias_stack",
    "compare",
    "current_version",
    "find_identical_version",
    "fluent_uris",
    "fold_aucs_tag",
    "frame_fingerprint",
    "gate_input",
    "is_not_found",
    "load_champion",
    "load_version",
    "log_and_register",
    "mlflow_client",
    "move_alias",
    "parse_fold_aucs",
    "point_challenger",
    "promote",
    "registry_uri",
    "reproducibility_tags",
    "rollback",
    "safe_uri",
    "scorer_sha256",
]
