"""``GET /openapi.json`` (``edge/openapi.py``): a valid OpenAPI 3.1 document of this service's own routes, open
without the API key, generated from the registry and the request models, whose examples the service answers."""

from __future__ import annotations

import base64
import copy
import json
import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from starlette.routing import Route

from edge.app import create_app
from edge.openapi import SCHEMAS, document
from edge.uploads import RAW_TYPES, form_of
from jobs.sqlite_store import SqliteJobStore
from settings import Settings
from tasks.registry import REGISTRY
from tests.conftest import ROOT, in_process_client
from tests.contract.test_jobs import FakeGateway, jobs_client

METHODS = ("get", "post", "put", "delete", "patch")


def operations(doc: dict) -> set[tuple[str, str]]:
    return {(path, method.upper()) for path, item in doc["paths"].items() for method in item if method in METHODS}


def schema_of(name: str) -> Draft202012Validator:
    """A validator for one component schema, its ``$ref``s resolved inside the document."""
    return Draft202012Validator({"$ref": SCHEMAS + name, "components": document()["components"]})


def test_the_document_is_valid_openapi_3_1():
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)
    broken = copy.deepcopy(doc)
    del broken["paths"]["/infer"]["post"]["responses"]["200"]["description"]  # the validator is not a no-op
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV31SpecValidator)


def test_it_is_served_without_the_api_key():
    with in_process_client(FakeGateway(), Settings(api_key="s3cret")) as guarded:
        response = guarded.get("/openapi.json", headers={"X-Request-ID": "spec-1"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "spec-1"
        assert response.json() == json.loads(json.dumps(document()))
        assert guarded.post("/infer", json={}).status_code == 401  # the key is on for the API itself
    assert document()["paths"]["/openapi.json"]["get"]["security"] == []
    assert document()["paths"]["/health"]["get"]["security"] == []


def test_every_route_of_the_app_is_described_and_nothing_else():
    app = create_app(FakeGateway, Settings())
    served = {(route.path, method) for route in app.routes if isinstance(route, Route)
              for method in route.methods if method != "HEAD"}
    assert operations(document()) == served
    assert {("/jobs", "POST"), ("/jobs/{id}", "GET"), ("/jobs/{id}", "DELETE"), ("/jobs/{id}/result", "GET"),
            ("/jobs/{id}/events", "GET"), ("/infer", "POST"), ("/health", "GET")} <= served


@pytest.mark.parametrize("path", ["/infer", "/jobs"])
def test_a_request_body_has_exactly_the_three_forms(path):
    content = document()["paths"][path]["post"]["requestBody"]["content"]
    forms: dict[str, list[str]] = {}
    for media_type in content:
        forms.setdefault(form_of(media_type.replace("*", "x")), []).append(media_type)
    assert forms == {"json": ["application/json"], "multipart": ["multipart/form-data"],
                     "raw": [p + "*" if p.endswith("/") else p for p in RAW_TYPES]}
    assert content["multipart/form-data"]["schema"]["properties"]["file"]
    query = {p["name"] for p in document()["paths"][path]["post"]["parameters"] if p["in"] == "query"}
    assert query == {"task", "model", "mimeType", "options"}  # the raw form's fields


def test_every_task_is_in_the_enum_with_its_own_options_schema():
    schemas = document()["components"]["schemas"]
    request = schemas["InferRequest"]
    assert request["properties"]["task"]["enum"] == list(REGISTRY)
    chosen = {rule["if"]["properties"]["task"]["const"]: rule["then"]["properties"]["options"]["$ref"]
              for rule in request["allOf"]}
    assert chosen == {name: SCHEMAS + spec.options.__name__ for name, spec in REGISTRY.items()}
    for name, spec in REGISTRY.items():
        assert set(schemas[spec.options.__name__]["properties"]) == set(spec.options.model_fields)
        assert name in request["properties"]["options"]["description"]


def test_the_json_example_fits_its_schema_and_a_bad_option_does_not():
    example = document()["paths"]["/infer"]["post"]["requestBody"]["content"]["application/json"]["example"]
    schema_of("InferRequest").validate(example)
    wrong = {**example, "options": {"threshold": "high"}}
    assert not schema_of("InferRequest").is_valid(wrong)  # the task's own options schema applies
    assert not schema_of("InferRequest").is_valid({**example, "task": "no-such-task"})


def readme_error_statuses() -> set[str]:
    section = (ROOT / "README.md").read_text().split("### Errors", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| (\d{3}) \|", section, flags=re.MULTILINE))


def test_infer_answers_every_error_status_of_the_readme_with_the_error_body_and_request_id():
    doc = document()
    statuses = readme_error_statuses()
    assert {"400", "401", "413", "415", "500", "503"} <= statuses
    responses = doc["paths"]["/infer"]["post"]["responses"]
    assert statuses <= set(responses) and "200" in responses
    for status, ref in responses.items():
        if status != "200":
            answer = doc["components"]["responses"][ref["$ref"].rsplit("/", 1)[1]]
            assert answer["content"]["application/json"]["schema"] == {"$ref": SCHEMAS + "Error"}
            assert "X-Request-ID" in answer["headers"]


def test_the_job_routes_list_their_statuses():
    doc = document()
    paths = doc["paths"]
    submit = paths["/jobs"]["post"]
    assert {"200", "202", "413", "415", "422", "429"} <= set(submit["responses"])
    assert {"name": "Idempotency-Key", "in": "header"}.items() <= next(
        p for p in submit["parameters"] if p["name"] == "Idempotency-Key").items()
    assert "Retry-After" in doc["components"]["responses"]["429"]["headers"]
    assert {"200", "404"} <= set(paths["/jobs/{id}"]["get"]["responses"])
    assert {"200", "404", "409"} <= set(paths["/jobs/{id}"]["delete"]["responses"])
    assert {"200", "400", "404", "409", "413", "500", "503"} <= set(paths["/jobs/{id}/result"]["get"]["responses"])
    assert "text/event-stream" in paths["/jobs/{id}/events"]["get"]["responses"]["200"]["content"]
    assert "408" in submit["responses"]  # the one reader's deadline holds for /jobs too


def test_a_jobs_result_lists_every_status_its_run_can_answer():
    """A failed job's result is what /infer answered: every status of /infer but those of reading the body."""
    result = document()["paths"]["/jobs/{id}/result"]["get"]["responses"]
    infer = document()["paths"]["/infer"]["post"]["responses"]
    read_only = {"408", "415"}  # the body is read at submit
    assert set(infer) - read_only <= set(result)
    assert {"404", "409"} <= set(result)


def test_the_submits_answers_link_to_the_job_routes_by_id():
    doc = document()
    by_operation = {op["operationId"]: (path, method) for path, item in doc["paths"].items()
                    for method, op in item.items() if method in METHODS}
    for status in ("200", "202"):
        links = doc["paths"]["/jobs"]["post"]["responses"][status]["links"]
        assert {link["operationId"] for link in links.values()} == {"getJob", "cancelJob", "getJobResult",
                                                                    "getJobEvents"}
        for link in links.values():
            path, _ = by_operation[link["operationId"]]
            assert link["parameters"] == {"id": "$response.body#/id"} and "{id}" in path


def test_the_event_stream_is_described_as_server_sent_events_of_jobs(tmp_path):
    """Each event of a real stream fits the documented event schema, its data a job as GET /jobs/{id} answers."""
    doc = document()
    media = doc["paths"]["/jobs/{id}/events"]["get"]["responses"]["200"]["content"]
    assert list(media) == ["text/event-stream"] and media["text/event-stream"]["schema"] == {
        "$ref": SCHEMAS + "JobEvent"}
    example = doc["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["example"]
    with jobs_client(FakeGateway(), SqliteJobStore(tmp_path / "jobs")) as http:
        job = http.post("/jobs", json=example).json()
        stream = http.get(job["urls"]["events"])
    assert stream.headers["content-type"].startswith("text/event-stream")
    events = [dict(line.split(": ", 1) for line in block.splitlines()) for block in stream.text.strip().split("\n\n")]
    assert [e["event"] for e in events][-1] == "end" and {e["event"] for e in events} <= {"progress", "end"}
    for event in events:
        schema_of("JobEvent").validate(event)
        schema_of("Job").validate(json.loads(event["data"]))
    assert not schema_of("JobEvent").is_valid({"event": "other", "data": "{}"})
    progress = document()["components"]["schemas"]["JobEvent"]["oneOf"][0]["properties"]["data"]
    assert progress["contentMediaType"] == "application/json" and progress["contentSchema"] == {"$ref": SCHEMAS + "Job"}


def test_the_job_schema_is_the_model_the_routes_answer_with():
    from edge.jobs import Job

    assert document()["components"]["schemas"]["Job"]["properties"].keys() == Job.model_fields.keys()


def test_the_payloads_constraints_and_the_query_rule_are_described():
    doc = document()
    schemas, body = doc["components"]["schemas"], doc["paths"]["/infer"]["post"]["requestBody"]
    assert "decodable image or video" in schemas["InferRequest"]["properties"]["payloadBase64"]["description"]
    assert "decodable image or video" in body["content"]["multipart/form-data"]["schema"]["properties"]["file"][
        "description"]
    assert "decodable image or video" in body["content"]["image/*"]["schema"]["description"]
    for parameter in doc["paths"]["/jobs"]["post"]["parameters"]:
        if parameter["in"] == "query":
            assert "is a 400 naming it" in parameter["description"]


def test_a_job_and_health_answer_as_their_schemas_say(tmp_path, client):
    example = document()["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]["example"]
    with jobs_client(FakeGateway(), SqliteJobStore(tmp_path / "jobs")) as http:
        job = http.post("/jobs", json=example, headers={"Idempotency-Key": "spec-1"})
        assert job.status_code == 202
        assert set(job.json()) == set(document()["components"]["schemas"]["Job"]["properties"])
        schema_of("Job").validate(job.json())
    health = client.get("/health").json()
    schema_of("Health").validate(health)
    assert set(health) == set(document()["components"]["schemas"]["Health"]["properties"])


def test_each_forms_example_is_answered_200(client):
    body = document()["paths"]["/infer"]["post"]["requestBody"]
    as_json = body["content"]["application/json"]["example"]
    fields = body["content"]["multipart/form-data"]["example"]
    image = base64.b64decode(as_json["payloadBase64"])  # the file of the other two forms (the file's description)
    query = {p["name"]: p["example"] if "example" in p else json.dumps(p["content"]["application/json"]["example"])
             for p in document()["paths"]["/infer"]["post"]["parameters"]}
    answers = [
        client.post("/infer", json=as_json),
        client.post("/infer", data=fields, files={"file": ("example.png", image, fields["mimeType"])}),
        client.post("/infer", params=query, content=image, headers={"Content-Type": query["mimeType"]}),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text[:200] for a in answers]
    for answer in answers:
        schema_of("InferResult").validate(answer.json())
    # one request, three forms; exact: the same image alone through the same engine in this process at the
    # pinned thread count (keep_torch_threads), the same computation bit for bit
    assert answers[0].json() == answers[1].json() == answers[2].json()


def test_the_version_is_the_projects():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert document()["info"]["version"] == project["version"]
