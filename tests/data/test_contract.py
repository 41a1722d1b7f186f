"""The dbt macro's copy of the raw contract's enumerations equals ml/contract.py's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ml import contract

MACRO = Path(__file__).resolve().parents[2] / "dbt_project" / "macros" / "crm_enums.sql"


def _macro_lists() -> dict[str, list[str]]:
    """The lists literally written in crm_enums.sql, by enumeration name.

    Each `crm_enum` entry is `"name": [...]`; `activity_type` points at the `activity_types()`
    macro, whose list is the one inside its `return([...])`.
    """
    text = MACRO.read_text(encoding="utf-8")
    lists = {
        name: ast.literal_eval(values)
        for name, values in re.findall(r'"(\w+)":\s*(\[[^\]]*\])', text)
    }
    returned = re.search(r"macro activity_types\(\).*?return\((\[[^\]]*\])\)", text, re.S)
    assert returned, f"no activity_types() list found in {MACRO}"
    lists["activity_type"] = ast.literal_eval(returned.group(1))
    return lists


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lead_source", contract.LEAD_SOURCES),
        ("license_type", contract.LICENSE_TYPES),
        ("budget_band", contract.BUDGET_BANDS),
        ("activity_type", contract.ACTIVITY_TYPES),
    ],
)
def test_dbt_enum_matches_contract(name: str, expected: tuple[str, ...]) -> None:
    lists = _macro_lists()
    assert name in lists, f"{MACRO.name} has no list for {name}"
    assert lists[name] == list(expected)


def test_macro_lists_no_enum_the_contract_lacks() -> None:
    assert set(_macro_lists()) == {"lead_source", "license_type", "budget_band", "activity_type"}


def test_dbt_attribute_fields_match_contract() -> None:
    # the fields a change of lead_attribute_changes.csv may touch: dbt's macro and contract.py
    text = (MACRO.parent / "attribute_history.sql").read_text(encoding="utf-8")
    body = re.search(r"macro lead_attribute_fields\(\).*?endmacro", text, re.S)
    assert body, "no lead_attribute_fields() in attribute_history.sql"
    assert re.findall(r'"(\w+)":', body.group(0)) == list(contract.ATTRIBUTE_FIELDS)
    assert set(contract.ATTRIBUTE_FIELDS) <= set(contract.RAW_COLUMNS["leads"])
