"""The dbt project's own documentation (`dbt docs generate --static`) for the docs site.

dbt documents columns and types from the warehouse's catalog, so the models must exist in a
database: the function generates a small CRM export (the generator, seeded), runs the models on it
in a temporary data dir and writes the single-file site dbt makes (`static_index.html`: models,
columns, tests, lineage). Nothing outside the temporary dir is touched, so it works from a fresh
clone and never reads or changes the project's own warehouse.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ml.config import DEFAULT_CONFIG, load_settings  # noqa: E402

# Enough rows for every model to have data (types in the catalog); small enough to take seconds.
DOCS_LEADS = 500


def dbt_static_docs() -> bytes:
    """The HTML of `dbt docs generate --static` over a freshly built small warehouse.

    Raises:
        DataError: dbt failed (the message names the failing models).
    """
    from ml.data.generator import generate_from_settings
    from ml.warehouse import run_dbt

    with tempfile.TemporaryDirectory(prefix="lead-scoring-dbt-docs-") as tmp:
        settings = load_settings(
            DEFAULT_CONFIG,
            env={},
            overrides={"paths.data_dir": tmp, "generator.n_leads": DOCS_LEADS},
        )
        generate_from_settings(settings)
        target = Path(tmp) / "dbt_docs_target"
        # pinned to the generated data's end, so the build does not depend on today's date
        as_of = settings.generator.end_date
        run_dbt(settings, ["run"], as_of=as_of, target_dir=target)
        run_dbt(settings, ["docs", "generate", "--static"], as_of=as_of, target_dir=target)
        return (target / "static_index.html").read_bytes()


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "dbt_docs.html")
    out.write_bytes(dbt_static_docs())
    print(out)
