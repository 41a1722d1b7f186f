"""The vocabulary is defined once (the settings) and dbt receives it as vars, never as a copy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ml import contract
from ml.config import VocabularySettings, load_settings
from ml.errors import ConfigError
from ml.warehouse import dbt_vars

MACROS = Path(__file__).resolve().parents[2] / "dbt_project" / "macros"


def test_dbt_vars_carry_the_settings_vocabulary() -> None:
    settings = load_settings()
    v = dbt_vars(settings)
    vocab = settings.vocabulary
    assert v["activity_types"] == list(vocab.activity_types)
    assert v["activity_windows_days"] == vocab.activity_windows_days
    assert v["crm_enums"] == {n: list(vocab.categoricals[n]) for n in contract.WAREHOUSE_ENUMS}
    assert list(v["feature_columns"]) == ["lead_id", "snapshot_ts", *vocab.feature_names]
    assert v["engagement_weights"]["meeting_booked"] == 10


def test_dbt_macros_list_no_vocabulary_of_their_own() -> None:
    # a list literal of activity types or enum values in a macro would be a second definition
    text = "\n".join(p.read_text(encoding="utf-8") for p in MACROS.rglob("*.sql"))
    for value in ("pricing_page_view", "Partner agent", "Freelance", "50k-100k"):
        assert not re.search(rf"['\"]{re.escape(value)}['\"]", text), value


def test_settings_file_vocabulary_is_the_generators() -> None:
    # the generator draws exactly the default vocabulary; the shipped settings keep it
    assert load_settings().vocabulary == VocabularySettings()


def test_added_activity_type_adds_its_windowed_features() -> None:
    settings = load_settings(overrides={"vocabulary.activity_types.whatsapp_reply": {}})
    names = settings.vocabulary.feature_names
    assert [n for n in names if "whatsapp" in n] == [
        "n_whatsapp_reply_7d", "n_whatsapp_reply_30d", "n_whatsapp_reply_90d"]
    assert len(names) == len(contract.FEATURES) + 3


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("vocabulary.activity_types.WhatsApp Reply", {}, "lowercase"),
        ("vocabulary.activity_windows_days", [7, 90], "lacks [30]"),
        ("vocabulary.activity_windows_days", [30, 7, 90], "increasing"),
        ("vocabulary.categoricals.lead_source", [], "cannot be empty"),
        ("vocabulary.categoricals.channel", ["a"], "unknown ['channel']"),
        ("vocabulary.activity_types.sms", {"phrases": ["none", "one", "many"]}, "{n}"),
    ],
)
def test_bad_vocabulary_is_an_error_naming_it(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(overrides={key: value})
    assert "vocabulary" in str(err.value) and message in str(err.value)


def test_removing_a_type_the_derived_features_need_is_refused() -> None:
    types = {k: {} for k in contract.ACTIVITY_TYPES if k != "email_click"}
    with pytest.raises(ConfigError, match="email_click"):
        load_settings(overrides={"vocabulary.activity_types": types})


def test_dbt_attribute_fields_match_contract() -> None:
    # the fields a change of lead_attribute_changes.csv may touch: dbt's macro and contract.py
    text = (MACROS / "attribute_history.sql").read_text(encoding="utf-8")
    body = re.search(r"macro lead_attribute_fields\(\).*?endmacro", text, re.S)
    assert body, "no lead_attribute_fields() in attribute_history.sql"
    assert re.findall(r'"(\w+)":', body.group(0)) == list(contract.ATTRIBUTE_FIELDS)
    assert set(contract.ATTRIBUTE_FIELDS) <= set(contract.RAW_COLUMNS["leads"])
