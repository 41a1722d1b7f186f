"""Landing a CRM export in the raw contract: mappings, robust reading, value folding, a report.

`land_export(mapping, export_dir, raw_dir, reports_dir)` is the one entry point (the CLI's
`lead-scoring land` and the Dagster raw asset call it); `make_sample_export(vendor, dir)` writes a
small export in a vendor's shape from the generator's output.
"""

from ml.landing.land import land_export, land_from_settings
from ml.landing.mapping import Mapping, available_mappings, load_mapping
from ml.landing.report import LandingReport
from ml.landing.samples import VENDORS, SampleExport, make_sample_export

__all__ = [
    "VENDORS",
    "LandingReport",
    "Mapping",
    "SampleExport",
    "available_mappings",
    "land_export",
    "land_from_settings",
    "load_mapping",
    "make_sample_export",
]
