"""The API against its own OpenAPI document: the document is valid OpenAPI 3.1, and
schemathesis' generated requests (bounded) get answers that match it, never a 5xx, never a
dropped connection."""

import json
import os
import subprocess
import sys
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

EXAMPLES = os.environ.get("CSVBUS_SCHEMATHESIS_EXAMPLES", "60")


def test_the_document_is_openapi_3_1(service):
    with urllib.request.urlopen(service.url + "/v1/openapi.json") as r:
        doc = json.load(r)
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)


def test_generated_requests_get_documented_answers_and_no_5xx(service, tmp_path):
    with urllib.request.urlopen(service.url + "/v1/openapi.json") as r:
        paths = json.load(r)["paths"]
    # schemathesis leaves out the document's own route.
    operations = {f"{m.upper()} {p}" for p, ms in paths.items() for m in ms}
    operations.discard("GET /v1/openapi.json")
    # positive_data_acceptance is left out: a CSV body is a string to the schema, and one
    # that does not fit the table is rightly a 422.
    st = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [str(st), "run", f"{service.url}/v1/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--max-examples", EXAMPLES,
         "--request-timeout", "30", "--seed", "1",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    # Every operation was tested.
    (report,) = tmp_path.glob("junit-*.xml")
    tested = {case.get("name") for case in ET.parse(report).iter("testcase")}
    assert operations <= tested, operations - tested
