"""What the test session may not write: anything new at the repository root or under `data/`.

Tests keep their stores in pytest's temporary folders. A store that leaks to the root (MLflow's
default `./mlflow.db` and `./mlruns/`, a default `data_dir`) survives the session and breaks the
next one once pytest has rotated the folders its rows point into. The conftest snapshots the
root before the session and compares after it; what existed before (a developer's `make demo`
output) is fine as long as the session leaves it untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

# Test tools' own caches, written at the root by design (pytest, hypothesis, ruff, Python).
TOOL_CACHES = frozenset({".pytest_cache", ".hypothesis", ".ruff_cache", "__pycache__"})
# Folders whose whole tree is compared (the generated-data folder of the default settings).
WATCHED_TREES = ("data",)

Snapshot = dict[str, tuple[bool, int, int]]


def snapshot(root: Path) -> Snapshot:
    """Top-level entries of `root` and every path under the watched trees, each with
    (is_dir, size, mtime_ns); directories other than the watched ones count by name only."""
    out: Snapshot = {}
    for entry in os.scandir(root):
        st = entry.stat(follow_symlinks=False)
        is_dir = entry.is_dir(follow_symlinks=False)
        out[entry.name] = (is_dir, 0 if is_dir else st.st_size, 0 if is_dir else st.st_mtime_ns)
    for name in WATCHED_TREES:
        top = root / name
        if not top.is_dir():
            continue
        for folder, dirs, files in os.walk(top):
            for item in dirs + files:
                path = Path(folder, item)
                st = path.lstat()
                is_dir = path.is_dir()
                key = path.relative_to(root).as_posix()
                out[key] = (is_dir, 0 if is_dir else st.st_size, 0 if is_dir else st.st_mtime_ns)
    return out


def root_writes(before: Snapshot, after: Snapshot) -> list[str]:
    """What the session created or changed (tool caches excepted), one line each."""
    lines = []
    for key in sorted(after.keys() - before.keys()):
        if key.split("/", 1)[0] not in TOOL_CACHES:
            lines.append(f"created {key}{'/' if after[key][0] else ''}")
    for key in sorted(after.keys() & before.keys()):
        if after[key] != before[key] and key.split("/", 1)[0] not in TOOL_CACHES:
            lines.append(f"modified {key}")
    for key in sorted(before.keys() - after.keys()):
        if key.split("/", 1)[0] not in TOOL_CACHES:
            lines.append(f"removed {key}")
    return lines
