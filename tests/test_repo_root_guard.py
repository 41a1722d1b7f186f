"""The session-end check of the conftest: new entries at the root and any write under data/
are reported; tool caches and what existed before untouched are not."""

from __future__ import annotations

import os
from pathlib import Path

from repo_root_guard import root_writes, snapshot


def test_root_writes_reports_new_stores_and_data_writes(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "README.md").write_text("contract")
    (tmp_path / "old.db").write_bytes(b"x")
    (tmp_path / "ml").mkdir()
    before = snapshot(tmp_path)
    assert root_writes(before, snapshot(tmp_path)) == []

    (tmp_path / "mlflow.db").write_bytes(b"sqlite")
    (tmp_path / "mlruns" / "1").mkdir(parents=True)
    (tmp_path / "data" / "alerts").mkdir()
    (tmp_path / "data" / "alerts" / "alerts.jsonl").write_text("{}")
    (tmp_path / "old.db").write_bytes(b"xy")
    (tmp_path / ".pytest_cache").mkdir()
    (tmp_path / ".hypothesis").mkdir()
    (tmp_path / "ml" / "__pycache__").mkdir()  # inside a code folder: not watched
    assert root_writes(before, snapshot(tmp_path)) == [
        "created data/alerts/",
        "created data/alerts/alerts.jsonl",
        "created mlflow.db",
        "created mlruns/",
        "modified old.db",
    ]


def test_a_file_rewritten_with_the_same_size_counts_as_modified(tmp_path: Path) -> None:
    path = tmp_path / "data" / "raw.csv"
    path.parent.mkdir()
    path.write_text("a,b\n")
    before = snapshot(tmp_path)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert root_writes(before, snapshot(tmp_path)) == ["modified data/raw.csv"]
