"""Small sample exports in each vendor's shape, made from the generator's output.

`make_sample_export("salesforce", out_dir)` writes what a Salesforce org would export for a small
generated CRM (Lead.csv, Task.csv, Event.csv; HubSpot: contacts, engagements, events; Dynamics:
lead, activitypointer), so `lead-scoring land --mapping salesforce out_dir` can be tried without
a CRM. With `faults=True` it also plants what real exports hold (see `FAULTS`), and returns how
many of each it planted, so a test can hold the landing report to them.
"""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from ml.errors import ConfigError
from ml.landing.fold import iso_utc

VENDORS = ("salesforce", "hubspot", "dynamics")
# What `faults=True` plants, by name (the keys of SampleExport.faults).
FAULTS = {
    "case_variants": "lead sources spelled in another case or with stray spaces",
    "unknown_source": "a lead source no mapping knows",
    "unknown_budget": "a budget band no mapping knows",
    "bad_size": "a company size that is not a number",
    "thousands": "company sizes written with a thousands separator (1,200)",
    "other_date_format": "created dates in a second format (a spreadsheet's)",
    "country_codes": "countries as codes or short forms (UAE, UK, IN)",
    "accented_names": "company names with é/ü (cp1252 in the Salesforce lead file)",
    "duplicate_ids": "an older copy of a lead row (same id, earlier last-modified)",
    "orphan_activities": "activities of a lead the export does not hold",
    "future_activities": "activities stamped in the future",
    "not_engagements": "a rep's own emails, notes, tasks (to be dropped)",
    "not_lead_activities": "activities about a contact or account, not a lead",
    "activity_case_variants": "activity types in another case",
    "blank_lines": "blank lines between rows",
}

_TS = "%Y-%m-%dT%H:%M:%SZ"


@dataclass
class SampleExport:
    vendor: str
    export_dir: Path
    files: list[Path]
    lead_ids: dict[str, str]  # generator lead id -> the vendor's id of that lead
    faults: dict[str, int] = field(default_factory=dict)


def _ts(values: pd.Series, fmt: str) -> pd.Series:
    """Timestamps as text; NaT as "". The ISO shapes take the fast path."""
    if fmt == "%Y-%m-%d":
        return iso_utc(values, suffix="", unit="D")
    if fmt.startswith("%Y-%m-%dT%H:%M:%S"):
        return iso_utc(values, suffix=fmt.removeprefix("%Y-%m-%dT%H:%M:%S"))
    return values.dt.strftime(fmt).fillna("")


def _hex_id(n: np.ndarray, middle: str) -> list[str]:
    return [f"{i:08x}-{middle}-{i:012x}" for i in n]


def _write_csv(
    frame: pd.DataFrame,
    path: Path,
    encoding: str = "utf-8",
    newline: str = "\n",
    blank_after: set[int] | None = None,
) -> None:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, lineterminator=newline)
        writer.writerow(frame.columns)
        for i, row in enumerate(frame.itertuples(index=False)):
            writer.writerow(row)
            if blank_after and i in blank_after:
                handle.write(newline)


@dataclass
class _Generated:
    leads: pd.DataFrame
    activities: pd.DataFrame
    conversions: pd.DataFrame


def _read_generated(raw_dir: Path) -> _Generated:
    leads = pd.read_csv(raw_dir / "leads.csv", dtype=str, keep_default_na=False)
    activities = pd.read_csv(raw_dir / "activities.csv", dtype=str, keep_default_na=False)
    conversions = pd.read_csv(raw_dir / "conversions.csv", dtype=str, keep_default_na=False)
    leads["created"] = pd.to_datetime(leads["created_at"], utc=True)
    activities["occurred"] = pd.to_datetime(activities["occurred_at"], utc=True)
    conversions["converted"] = pd.to_datetime(conversions["converted_at"], utc=True)
    leads = leads.merge(
        conversions[["lead_id", "converted", "package_value"]], on="lead_id", how="left"
    )
    leads["package_value"] = leads["package_value"].fillna("")
    return _Generated(leads, activities, conversions)


class _Faults:
    """Plants faults on disjoint random rows and counts them."""

    def __init__(self, seed: int, enabled: bool):
        self.rng = np.random.default_rng(seed)
        self.enabled = enabled
        self.counts: dict[str, int] = {}
        self._taken: dict[int, set[int]] = {}

    def rows(
        self, frame: pd.DataFrame, name: str, k: int, within: pd.Series | None = None
    ) -> pd.Index:
        """k random rows of `frame` (among `within`) not yet used by another fault (none when
        disabled)."""
        if not self.enabled or k <= 0:
            return frame.index[:0]
        taken = self._taken.setdefault(id(frame), set())
        pool = frame.index if within is None else frame.index[within.to_numpy()]
        free = np.array([i for i in pool if i not in taken])
        if len(free) == 0:
            return frame.index[:0]
        chosen = self.rng.choice(free, size=min(k, len(free)), replace=False)
        taken.update(int(i) for i in chosen)
        self.counts[name] = self.counts.get(name, 0) + len(chosen)
        return pd.Index(sorted(chosen))

    def count(self, name: str, n: int) -> None:
        if self.enabled and n:
            self.counts[name] = self.counts.get(name, 0) + n


@dataclass
class _LeadShape:
    """Column names of a vendor's lead file the generic lead faults need."""

    lead_id: str
    created: str
    modified: str
    source: str
    size: str
    budget: str
    company: str
    country: str
    other_date_format: str  # a second format the mapping also reads


def _plant_lead_faults(leads: pd.DataFrame, f: _Faults, shape: _LeadShape) -> pd.DataFrame:
    """Faults on the vendor-shaped lead frame; `_created` holds each row's creation time."""
    k = max(2, len(leads) // 100)
    out = leads.copy()
    idx = f.rows(out, "case_variants", k)
    variants = [str.lower, str.upper, lambda s: f"  {s} "]
    out.loc[idx, shape.source] = [
        variants[i % 3](v) for i, v in enumerate(out.loc[idx, shape.source])
    ]
    out.loc[f.rows(out, "unknown_source", k // 2), shape.source] = "Carrier pigeon"
    short = {
        "United Arab Emirates": "UAE",
        "United Kingdom": "UK",
        "United States": "USA",
        "India": "IN",
        "Saudi Arabia": "KSA",
    }
    idx = f.rows(out, "country_codes", k, within=out[shape.country].isin(list(short)))
    out.loc[idx, shape.country] = out.loc[idx, shape.country].map(short)
    # a few large companies, written like every size of 1000 or more below: `1,234`
    big = f.rows(out, "_big_sizes", k)
    out.loc[big, shape.size] = [str(1000 + 137 * i) for i in range(len(big))]
    f.counts.pop("_big_sizes", None)
    out.loc[f.rows(out, "unknown_budget", 2), shape.budget] = "ask later"
    out.loc[f.rows(out, "bad_size", 2), shape.size] = "lots"
    idx = f.rows(out, "other_date_format", k)
    out.loc[idx, shape.created] = out.loc[idx, "_created"].dt.strftime(shape.other_date_format)
    idx = f.rows(out, "accented_names", k)
    names = ["Société Générale Trading", "Café Müller FZE", "Crème Brûlée Media"]
    out.loc[idx, shape.company] = [f"{names[i % 3]} {j}" for i, j in enumerate(idx)]
    # an older copy of some leads, with a changed attribute: the newer row must win
    idx = f.rows(out, "duplicate_ids", k)
    older = out.loc[idx].copy()
    older[shape.modified] = older["_created"].dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    older[shape.source] = "Carrier pigeon"
    out = pd.concat([out, older], ignore_index=True)
    out[shape.size] = _thousands(out[shape.size], f)
    return out


def _thousands(size: pd.Series, f: _Faults) -> pd.Series:
    """Sizes of 1000 and more as `1,234` (every such row, duplicates included)."""
    if not f.enabled:
        return size
    numeric = pd.to_numeric(size, errors="coerce")
    big = numeric >= 1000
    f.count("thousands", int(big.sum()))
    return size.where(~big, numeric[big].map(lambda v: f"{int(v):,}"))


def _plant_activity_faults(
    acts: pd.DataFrame,
    f: _Faults,
    id_col: str,
    lead_col: str,
    time_col: str,
    type_col: str,
    orphan_id: str,
    future_value: str,
) -> pd.DataFrame:
    k = max(2, len(acts) // 200)
    out = acts.copy()
    out.loc[f.rows(out, "orphan_activities", k), lead_col] = orphan_id
    out.loc[f.rows(out, "future_activities", k), time_col] = future_value
    idx = f.rows(out, "activity_case_variants", k)
    out.loc[idx, type_col] = out.loc[idx, type_col].str.upper()
    return out


def _blank_rows(n_rows: int, f: _Faults, k: int = 3) -> set[int]:
    if not f.enabled or n_rows < 2:
        return set()
    rows = set(int(i) for i in f.rng.choice(n_rows - 1, size=min(k, n_rows - 1), replace=False))
    f.count("blank_lines", len(rows))
    return rows


# --- Salesforce --------------------------------------------------------------------------------

_SF_SOURCE = {
    "Web": "Web",
    "Referral": "Employee Referral",
    "Partner agent": "Partner Referral",
    "Event": "Trade Show",
    "Social": "Social Media",
    "Email campaign": "Email",
    "Walk-in": "Walk-in",
    "Call centre": "Phone Inquiry",
}
_SF_INDUSTRY = {
    "Trading": "Retail",
    "Logistics": "Transportation",
    "Tourism": "Hospitality",
    "Food & beverage": "Food & Beverage",
    "Real estate": "Real Estate",
    "E-commerce": "E-Commerce",
}
_SF_TASK_TYPE = {
    "website_visit": "Web Visit",
    "pricing_page_view": "Pricing Page View",
    "email_open": "Email Opened",
    "email_click": "Email Clicked",
    "form_submit": "Form Submission",
    "webinar": "Webinar",
    "document_upload": "Document Upload",
    "call_connected": "Call",
}
_SF_TS = "%Y-%m-%dT%H:%M:%S.000Z"


def _salesforce(g: _Generated, out: Path, f: _Faults) -> tuple[list[Path], dict[str, str]]:
    leads = g.leads
    n = np.arange(1, len(leads) + 1)
    ids = [f"00Q{i:012d}" for i in n]
    id_of = dict(zip(leads["lead_id"], ids, strict=True))
    converted = leads["converted"].notna()
    modified = leads["converted"].fillna(leads["created"] + pd.Timedelta(days=1))
    frame = pd.DataFrame(
        {
            "Id": ids,
            "Company": [f"Company {i}" for i in n],
            "LeadSource": leads["lead_source"].map(_SF_SOURCE),
            "Industry": leads["industry"].map(lambda v: _SF_INDUSTRY.get(v, v)),
            "NumberOfEmployees": leads["company_size"],
            "Country": leads["country"],
            "Status": np.where(converted, "Closed - Converted", "Open - Not Contacted"),
            "IsConverted": np.where(converted, "true", "false"),
            "ConvertedDate": _ts(leads["converted"], "%Y-%m-%d"),
            "CreatedDate": _ts(leads["created"], _SF_TS),
            "LastModifiedDate": _ts(modified, _SF_TS),
            "License_Type__c": leads["license_type"],
            "Visa_Quota__c": leads["visa_quota"],
            "Budget_Band__c": leads["budget_band"],
            "Package_Value__c": leads["package_value"],
            "_created": leads["created"],
        }
    )
    shape = _LeadShape(
        "Id",
        "CreatedDate",
        "LastModifiedDate",
        "LeadSource",
        "NumberOfEmployees",
        "Budget_Band__c",
        "Company",
        "Country",
        "%m/%d/%Y %H:%M",
    )
    frame = _plant_lead_faults(frame, f, shape).drop(columns="_created")

    acts = g.activities
    who = acts["lead_id"].map(id_of)
    meeting = acts["activity_type"] == "meeting_booked"
    a = np.arange(1, len(acts) + 1)
    tasks = pd.DataFrame(
        {
            "Id": [f"00T{i:012d}" for i in a],
            "WhoId": who,
            "Subject": acts["activity_type"].map(lambda t: f"{_SF_TASK_TYPE.get(t, t)}"),
            "Type": acts["activity_type"].map(_SF_TASK_TYPE),
            "TaskSubtype": np.where(acts["activity_type"] == "call_connected", "Call", "Task"),
            "Status": "Completed",
            "ActivityDate": _ts(acts["occurred"], "%Y-%m-%d"),
            "CreatedDate": _ts(acts["occurred"], _SF_TS),
            "CompletedDateTime": _ts(acts["occurred"], _SF_TS),
        }
    )[~meeting.to_numpy()].reset_index(drop=True)
    events = pd.DataFrame(
        {
            "Id": [f"00U{i:012d}" for i in a],
            "WhoId": who,
            "Subject": "Meeting",
            "Type": "Meeting",
            "StartDateTime": _ts(acts["occurred"], _SF_TS),
            "EndDateTime": _ts(acts["occurred"] + pd.Timedelta(minutes=30), _SF_TS),
            "CreatedDate": _ts(acts["occurred"], _SF_TS),
        }
    )[meeting.to_numpy()].reset_index(drop=True)
    tasks = _plant_activity_faults(
        tasks,
        f,
        "Id",
        "WhoId",
        "CompletedDateTime",
        "Type",
        "00Q999999999999",
        "2027-06-01T10:00:00.000Z",
    )
    if f.enabled:
        k = max(2, len(tasks) // 200)
        extra = tasks.sample(2 * k, random_state=int(f.rng.integers(1 << 31))).copy()
        extra["Id"] = [f"00T9{i:011d}" for i in range(len(extra))]
        rep, contact = extra.iloc[:k].copy(), extra.iloc[k:].copy()
        rep["Type"], rep["TaskSubtype"] = "Email", "Email"
        # a quoted subject with a comma and a line break, as a rep's email subject may have
        rep["Subject"] = 'Re: your licence, "visa quota"\nfollow-up'
        contact["WhoId"] = [f"003{i:012d}" for i in range(len(contact))]
        f.count("not_engagements", len(rep))
        f.count("not_lead_activities", len(contact))
        tasks = pd.concat([tasks, rep, contact], ignore_index=True)
    files = [out / "Lead.csv", out / "Task.csv", out / "Event.csv"]
    # Excel on Windows: cp1252 and CRLF
    _write_csv(
        frame, files[0], encoding="cp1252", newline="\r\n", blank_after=_blank_rows(len(frame), f)
    )
    _write_csv(tasks, files[1])
    _write_csv(events, files[2])
    return files, id_of


# --- HubSpot -----------------------------------------------------------------------------------

_HS_SOURCE = {
    "Referral": "REFERRALS",
    "Social": "SOCIAL_MEDIA",
    "Email campaign": "EMAIL_MARKETING",
    "Partner agent": "OFFLINE",
    "Event": "OFFLINE",
    "Walk-in": "OFFLINE",
    "Call centre": "OFFLINE",
}
_HS_WEB = ("ORGANIC_SEARCH", "PAID_SEARCH", "DIRECT_TRAFFIC")
_HS_EVENT = {"website_visit": "e_visited_page"}
_HS_PORTAL = 4242
_HS_TS = "%Y-%m-%dT%H:%M:%S.000Z"


def _epoch_ms(values: pd.Series) -> pd.Series:
    return (values.astype("int64") // 1_000_000).astype(str)


def _hubspot(g: _Generated, out: Path, f: _Faults) -> tuple[list[Path], dict[str, str]]:
    leads = g.leads
    n = np.arange(1, len(leads) + 1)
    ids = [str(100_000 + i) for i in n]
    id_of = dict(zip(leads["lead_id"], ids, strict=True))
    converted = leads["converted"].notna()
    source = [_HS_SOURCE.get(v) or _HS_WEB[i % 3] for i, v in enumerate(leads["lead_source"])]
    frame = pd.DataFrame(
        {
            "hs_object_id": ids,
            "company": [f"Company {i}" for i in n],
            "createdate": _ts(leads["created"], _HS_TS),
            "lastmodifieddate": _ts(
                leads["converted"].fillna(leads["created"] + pd.Timedelta(days=1)), _HS_TS
            ),
            "hs_analytics_source": source,
            "industry": leads["industry"],
            "numberofemployees": leads["company_size"],
            "country": leads["country"],
            "lifecyclestage": np.where(converted, "customer", "lead"),
            "hs_lifecyclestage_customer_date": _ts(leads["converted"], _HS_TS).fillna(""),
            "recent_deal_amount": leads["package_value"],
            "license_type": leads["license_type"],
            "visa_quota": leads["visa_quota"],
            "budget_band": leads["budget_band"],
            "_created": leads["created"],
        }
    )
    shape = _LeadShape(
        "hs_object_id",
        "createdate",
        "lastmodifieddate",
        "hs_analytics_source",
        "numberofemployees",
        "budget_band",
        "company",
        "country",
        "%m/%d/%Y %H:%M",
    )
    frame = _plant_lead_faults(frame, f, shape).drop(columns="_created")

    acts = g.activities
    contact = acts["lead_id"].map(id_of)
    engaged = acts["activity_type"].isin(["call_connected", "meeting_booked"]).to_numpy()
    a = np.arange(1, len(acts) + 1)
    engagements = pd.DataFrame(
        {
            "engagement.id": [str(9_000_000 + i) for i in a],
            "engagement.type": acts["activity_type"].map(
                {"call_connected": "CALL", "meeting_booked": "MEETING"}
            ),
            "engagement.timestamp": _epoch_ms(acts["occurred"]),
            "associations.contactIds": "[" + contact + "]",
            "metadata.subject": "",
        }
    )[engaged].reset_index(drop=True)
    events = pd.DataFrame(
        {
            "id": [f"ev-{i}" for i in a],
            "eventType": acts["activity_type"].map(
                lambda t: _HS_EVENT.get(t, f"pe{_HS_PORTAL}_{t}")
            ),
            "objectType": "contact",
            "objectId": contact,
            "occurredAt": _ts(acts["occurred"], _HS_TS),
        }
    )[~engaged].reset_index(drop=True)
    events = _plant_activity_faults(
        events,
        f,
        "id",
        "objectId",
        "occurredAt",
        "eventType",
        "999999999",
        "2027-06-01T10:00:00.000Z",
    )
    if f.enabled:
        k = max(2, len(engagements) // 50)
        extra = engagements.sample(2 * k, random_state=int(f.rng.integers(1 << 31))).copy()
        extra["engagement.id"] = [str(8_000_000 + i) for i in range(len(extra))]
        extra["engagement.type"] = ["NOTE", "EMAIL"] * k
        f.count("not_engagements", len(extra))
        engagements = pd.concat([engagements, extra], ignore_index=True)
        other = events.sample(k, random_state=int(f.rng.integers(1 << 31))).copy()
        other["id"] = [f"ev-company-{i}" for i in range(len(other))]
        other["objectType"] = "company"
        f.count("not_lead_activities", len(other))
        events = pd.concat([events, other], ignore_index=True)
    files = [out / "contacts.csv", out / "engagements.csv", out / "events.csv"]
    _write_csv(frame, files[0], encoding="utf-8-sig")  # a BOM, as Excel's "CSV UTF-8" writes
    _write_csv(engagements, files[1])
    _write_csv(events, files[2], blank_after=_blank_rows(len(events), f))
    return files, id_of


# --- Dynamics 365 ------------------------------------------------------------------------------

_D365_SOURCE = {
    "Web": "8",
    "Referral": "3",
    "Partner agent": "4",
    "Event": "7",
    "Social": "100000000",
    "Email campaign": "100000001",
    "Walk-in": "100000002",
    "Call centre": "100000003",
}
_D365_INDUSTRY = {
    "Trading": "33",
    "Consulting": "7",
    "E-commerce": "100000001",
    "Manufacturing": "12",
    "Media": "3",
    "Technology": "100000000",
    "Logistics": "30",
    "Education": "100000002",
    "Healthcare": "11",
    "Food & beverage": "13",
    "Real estate": "29",
    "Tourism": "100000003",
}
_D365_TYPE = {
    "call_connected": "phonecall",
    "meeting_booked": "appointment",
    "website_visit": "new_websitevisit",
    "pricing_page_view": "new_pricingpageview",
    "email_open": "new_emailopen",
    "email_click": "new_emailclick",
    "form_submit": "new_formsubmission",
    "webinar": "new_webinar",
    "document_upload": "new_documentupload",
}


def _dynamics(g: _Generated, out: Path, f: _Faults) -> tuple[list[Path], dict[str, str]]:
    leads = g.leads
    n = np.arange(1, len(leads) + 1)
    ids = _hex_id(n, "1d5f-ef11-a4e6")
    id_of = dict(zip(leads["lead_id"], ids, strict=True))
    converted = leads["converted"].notna()
    frame = pd.DataFrame(
        {
            "leadid": ids,
            "companyname": [f"Company {i}" for i in n],
            "createdon": _ts(leads["created"], _TS),
            # a qualified lead is read-only: its modifiedon is the qualification time
            "modifiedon": _ts(
                leads["converted"].fillna(leads["created"] + pd.Timedelta(days=1)), _TS
            ),
            "leadsourcecode": leads["lead_source"].map(_D365_SOURCE),
            "industrycode": leads["industry"].map(_D365_INDUSTRY),
            "numberofemployees": leads["company_size"],
            "address1_country": leads["country"],
            "statecode": np.where(converted, "1", "0"),
            "statuscode": np.where(converted, "3", "1"),
            "estimatedvalue": leads["package_value"],
            "new_licensetype": leads["license_type"],
            "new_visaquota": leads["visa_quota"],
            "new_budgetband": leads["budget_band"],
            "_created": leads["created"],
        }
    )
    shape = _LeadShape(
        "leadid",
        "createdon",
        "modifiedon",
        "leadsourcecode",
        "numberofemployees",
        "new_budgetband",
        "companyname",
        "address1_country",
        "%m/%d/%Y %I:%M %p",
    )
    frame = _plant_lead_faults(frame, f, shape).drop(columns="_created")

    acts = g.activities
    a = np.arange(1, len(acts) + 1)
    pointer = pd.DataFrame(
        {
            "activityid": _hex_id(a, "2e6a-ef11-b5f7"),
            "activitytypecode": acts["activity_type"].map(_D365_TYPE),
            "regardingobjectid": acts["lead_id"].map(id_of),
            "regardingobjecttypecode": "lead",
            "subject": "",
            "actualend": _ts(acts["occurred"], _TS),
            "createdon": _ts(acts["occurred"], _TS),
        }
    )
    pointer = _plant_activity_faults(
        pointer,
        f,
        "activityid",
        "regardingobjectid",
        "actualend",
        "activitytypecode",
        "ffffffff-0000-0000-0000-000000000000",
        "2027-06-01T10:00:00Z",
    )
    if f.enabled:
        k = max(2, len(pointer) // 200)
        extra = pointer.sample(2 * k, random_state=int(f.rng.integers(1 << 31))).copy()
        extra["activityid"] = _hex_id(np.arange(len(extra)), "3f7b-ef11-c6a8")
        rep, account = extra.iloc[:k].copy(), extra.iloc[k:].copy()
        rep["activitytypecode"] = "email"
        account["regardingobjecttypecode"] = "account"
        f.count("not_engagements", len(rep))
        f.count("not_lead_activities", len(account))
        pointer = pd.concat([pointer, rep, account], ignore_index=True)
    files = [out / "lead.csv", out / "activitypointer.csv"]
    _write_csv(frame, files[0], newline="\r\n", blank_after=_blank_rows(len(frame), f))
    _write_csv(pointer, files[1], newline="\r\n")
    return files, id_of


_VENDOR_SHAPES = {"salesforce": _salesforce, "hubspot": _hubspot, "dynamics": _dynamics}


def make_sample_export(
    vendor: str,
    export_dir: Path,
    raw_dir: Path | None = None,
    *,
    n_leads: int = 1500,
    days: int = 180,
    end_date: date = date(2026, 11, 1),
    seed: int = 5,
    faults: bool = True,
) -> SampleExport:
    """Write a sample export of `vendor` into `export_dir`.

    Args:
        raw_dir: generator output (leads.csv, activities.csv, conversions.csv) to convert; None
            generates `n_leads` leads over `days` days before `end_date` with `seed` first.
        faults: plant the faults of `FAULTS` (counted in the result's `faults`).

    Raises:
        ConfigError: the vendor has no sample shape.
    """
    if vendor not in _VENDOR_SHAPES:
        raise ConfigError(f"no sample export for {vendor!r}; one of {', '.join(VENDORS)}")
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    if raw_dir is None:
        from ml.data.generator import generate

        with tempfile.TemporaryDirectory() as tmp:
            generate(
                Path(tmp) / "raw",
                Path(tmp) / "truth",
                n_leads=n_leads,
                days=days,
                end_date=end_date,
                seed=seed,
            )
            generated = _read_generated(Path(tmp) / "raw")
    else:
        generated = _read_generated(Path(raw_dir))
    planter = _Faults(seed, faults)
    files, id_of = _VENDOR_SHAPES[vendor](generated, export_dir, planter)
    return SampleExport(vendor, export_dir, files, id_of, planter.counts)
