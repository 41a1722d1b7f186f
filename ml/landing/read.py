"""Reading a vendor's export files robustly: encoding, BOM, line endings, quoted fields."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ml.errors import DataError

# Tried in order. UTF-8 (with or without a BOM: utf-8-sig strips it) is what every CRM writes
# today; Excel on Windows still saves "CSV" as cp1252, and latin-1 decodes any byte at all.
ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


@dataclass(frozen=True)
class ExportTable:
    """One export (its files stacked) as text: every cell a str, "" when empty."""

    name: str
    files: tuple[Path, ...]
    encodings: tuple[str, ...]
    frame: pd.DataFrame
    blank_lines: int

    @property
    def rows(self) -> int:
        return len(self.frame)


def _decode(data: bytes, path: Path) -> tuple[str, str]:
    for encoding in ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        name = "utf-8" if encoding == "utf-8-sig" else encoding
        if encoding == "utf-8-sig" and data.startswith(b"\xef\xbb\xbf"):
            name = "utf-8 with BOM"
        return text, name
    raise DataError(f"{path}: cannot decode as {', '.join(ENCODINGS)}")  # pragma: no cover


def read_csv_text(path: Path) -> tuple[pd.DataFrame, str, int]:
    """A CSV file as a frame of text cells, its detected encoding and its count of blank lines.

    Quoted fields may hold commas and line breaks; CRLF, LF and CR line endings are accepted.
    """
    text, encoding = _decode(path.read_bytes(), path)
    if not text.strip():
        raise DataError(f"{path} is empty (expected a header row and rows)")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=True,
        )
    except pd.errors.ParserError as exc:  # e.g. a row with more fields than the header
        detail = str(exc).strip().removeprefix("Error tokenizing data. C error: ")
        raise DataError(
            f"{path}: not a well-formed CSV file ({detail}); re-export it, or fix that row"
        ) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    # Rows of only empty cells (",,,," lines Excel leaves behind) are blank lines too.
    empty = (frame == "").all(axis=1) if len(frame.columns) else pd.Series(dtype=bool)
    blank = int(empty.sum()) + _blank_line_count(text)
    return frame.loc[~empty].reset_index(drop=True), encoding, blank


def _blank_line_count(text: str) -> int:
    # Lines pandas skipped: empty outside quotes. Counting all empty lines overcounts blank lines
    # inside a quoted multi-line field; close enough for a report, and exact for real exports.
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return sum(1 for line in lines if not line.strip())


def find_export_files(export_dir: Path, patterns: list[str]) -> list[Path]:
    """Files of an export: every file matching one of the glob patterns, in name order."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        for path in sorted(export_dir.glob(pattern)):
            if path.is_file():
                found[path] = None
    return list(found)


def read_export(export_dir: Path, name: str, patterns: list[str]) -> ExportTable:
    """Read every file of one export and stack them.

    Raises:
        DataError: no file matches, or the files' headers differ.
    """
    files = find_export_files(export_dir, patterns)
    if not files:
        raise DataError(
            f"{export_dir}: no file of the {name!r} export (looked for {', '.join(patterns)})"
        )
    frames, encodings, blank = [], [], 0
    for path in files:
        frame, encoding, n_blank = read_csv_text(path)
        if frames and list(frame.columns) != list(frames[0].columns):
            raise DataError(
                f"{path.name}: columns differ from {files[0].name} (both match the {name!r} "
                "export); export them with the same fields"
            )
        frames.append(frame)
        encodings.append(encoding)
        blank += n_blank
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return ExportTable(name, tuple(files), tuple(encodings), frame, blank)
