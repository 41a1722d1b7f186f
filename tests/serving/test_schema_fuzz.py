"""Schemathesis over the OpenAPI schema against the live service on loopback: no 5xx, and
every response matches its documented schema."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from ml.config import load_settings
from ml.serving.app import create_app

# Building the app has no side effects (nothing starts before its lifespan), so its schema can
# be read at import; the requests go to the live server of the `live_server` fixture.
schema = schemathesis.openapi.from_dict(create_app(load_settings()).openapi())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_error_on_any_generated_request(case, live_server):
    case.call_and_validate(base_url=live_server,
                           checks=[not_a_server_error, response_schema_conformance])
