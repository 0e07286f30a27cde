"""The OpenAPI 3.1 document of this service's own HTTP API, served at ``GET /openapi.json``.

Generated, not hand-copied: the request body is ``vocab.schema.InferRequest``'s JSON schema, its ``task`` enum and
each task's options schema come from ``tasks.registry.REGISTRY`` (an ``if``/``then`` per task picks the options
model), the three forms of a body are ``edge/uploads.py``'s (JSON, ``multipart/form-data``, the file itself with
the fields as query parameters), and every error is the ``{"error"}`` body of ``edge/errors.py`` with the request
id. A job is ``edge/jobs.py``'s ``Job`` model, the one every job answer is built with; the event stream is
described one event at a time (the fields of a Server-Sent Event, its ``data`` a job). The shapes of the answers
that are not pydantic models (``/health``, a task's result) are written here; the contract tests check them against
real answers. The submit's answers link to the job routes by the job's ``id`` (OpenAPI links). Built once per
process.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic.json_schema import models_json_schema

from edge.jobs import Job
from edge.uploads import MULTIPART, RAW_TYPES
from tasks.registry import REGISTRY
from vocab.errors import ErrorKind
from vocab.families import FAMILIES
from vocab.schema import IMAGE, InferRequest

API_VERSION = "0.1.0"
SCHEMAS = "#/components/schemas/"
# A 32x32 grey PNG: the examples' image (small enough to read, and any image task answers it).
EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAIAAAD8GO2jAAAAK0lEQVR42u3NIQEAMAgAMHhqNJrQLwFuK7Csnrj04phAIBAIBAKBQCDY8"
               "gEG7AHGQfZyaQAAAABJRU5ErkJggg==")
WHEN = {  # what each error status means (the README's error table, shortened)
    400: "a bad request: unknown task or model, missing field, bad base64 or options, bytes that are neither "
         "image nor video, the wrong media for the task",
    401: "PERCEPTION_API_KEY is set and 'Authorization: Bearer <key>' is missing or wrong",
    404: "no such job (it never existed, or it ended longer ago than results are kept)",
    408: "the request body did not arrive within PERCEPTION_BODY_READ_TIMEOUT_S",
    409: "the job has not finished, was cancelled, or (DELETE) has already finished",
    413: "the body, the image or the video is over its limit",
    415: "a Content-Type that is none of JSON, multipart/form-data, image/*, video/*, application/octet-stream",
    422: "this Idempotency-Key was used for a different request body",
    429: "PERCEPTION_JOBS_MAX_QUEUED jobs are already queued; retry after Retry-After seconds",
    500: "a fault of ours; the log has the details under the request id",
    503: "the task's model is not installed, its runner is down or restarting, or overloaded; retry shortly",
}
INFER_ERRORS = (400, 401, 408, 413, 415, 500, 503)
RUN_ERRORS = (400, 413, 500, 503)  # what running a request can answer (a job's result too); the rest is the read's
PAYLOAD = (
    "The payload must be a decodable image or video of a kind the task accepts (the task enum says which): an "
    "image as JPEG, PNG, WebP, GIF, BMP, TIFF, or HEIC/AVIF; a video as MP4, MOV, WebM/MKV, AVI, FLV, Ogg or "
    "MPEG-TS. Other bytes, a truncated file, the wrong kind for the task, or a file over its pixel, duration or "
    "frame budget are a 400 or 413 naming what is wrong: a request that fits this schema is accepted only when its "
    "payload does.")
YOLO_KINDS = FAMILIES["yolo"].kinds  # tasks whose answer is a list of detections


def example_task() -> tuple[str, Any]:
    """The examples' task: the first one of the registry that takes an image."""
    return next((name, spec) for name, spec in REGISTRY.items() if IMAGE in spec.accepts)


def example_fields() -> dict[str, Any]:
    """The fields of the examples' request (without the file)."""
    name, spec = example_task()
    options = {"threshold": 0.3} if "threshold" in spec.options.model_fields else {}
    return {"task": name, "model": spec.default_model, "mimeType": "image/png", "options": options}


def options_by_model() -> dict[type, list[str]]:
    """Each options model and the tasks that take it, in registry order."""
    grouped: dict[type, list[str]] = {}
    for name, spec in REGISTRY.items():
        grouped.setdefault(spec.options, []).append(name)
    return grouped


def request_schemas() -> dict[str, Any]:
    """``InferRequest`` and every task's options model, from pydantic (their fields' descriptions are the
    models'), with what only the registry knows: the task enum, each task's title and the options it takes."""
    grouped = options_by_model()
    _, top = models_json_schema([(model, "validation") for model in (InferRequest, *grouped)],
                                ref_template=SCHEMAS + "{model}")
    schemas = top["$defs"]
    request = schemas["InferRequest"]
    task, options = request["properties"]["task"], request["properties"]["options"]
    task.update(enum=list(REGISTRY), description=task["description"] + ": " + "; ".join(
        f"{name}: {spec.title} ({' or '.join(spec.accepts)}; default model {spec.default_model})"
        for name, spec in REGISTRY.items()))
    options["description"] += ": " + "; ".join(
        f"{', '.join(tasks)} take {model.__name__} ({', '.join(model.model_fields)})" for model, tasks in grouped.items())
    payload = request["properties"]["payloadBase64"]
    payload["description"] += ". " + PAYLOAD
    request["allOf"] = [{"if": {"properties": {"task": {"const": name}}, "required": ["task"]},
                         "then": {"properties": {"options": {"$ref": SCHEMAS + spec.options.__name__}}}}
                        for name, spec in REGISTRY.items()]
    return schemas


def answer_schemas() -> dict[str, Any]:
    """The answers that are not pydantic models: the error body, ``/health``, a task's result; a job (its model's) and
    one event of its stream."""
    yolo = [name for name, spec in REGISTRY.items() if spec.default_kind in YOLO_KINDS]
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}},
                  "description": "every non-2xx answer"},
        "InferResult": {"type": ["array", "object"], "description": (
            f"what the task answers: {', '.join(yolo)} a JSON array of detections (label, score, box, bbox, "
            "class_id, class_name, confidence, instance_id; mask_polygon and mask_area_px for segmentation, "
            "17 COCO keypoints for pose); every other task a JSON object (README, 'POST /infer')")},
        **job_schemas(),
        "JobEvent": {"type": "object", "required": ["event", "data"], "description": (
            "one Server-Sent Event of GET /jobs/{id}/events: 'progress' with the job (as GET /jobs/{id} answers it) "
            "on each change, then one 'end' with the job as it ended ({} when the job is gone)"),
            "oneOf": [
                {"properties": {"event": {"const": "progress"}, "data": job_data({"$ref": SCHEMAS + "Job"})}},
                {"properties": {"event": {"const": "end"}, "data": job_data(
                    {"anyOf": [{"$ref": SCHEMAS + "Job"}, {"type": "object", "maxProperties": 0}]})}},
            ]},
        "Health": {"type": "object", "required": ["ok", "tasks", "ready", "models"], "properties": {
            "ok": {"type": "boolean"}, "cuda": {"type": "boolean"},
            "tasks": {"type": "array", "items": {"enum": list(REGISTRY)}},
            "ready": {"type": "boolean", "description": "every installed model is loaded by its runner"},
            "devices": {"type": "array", "items": {"type": "string"}}, "runners": {"type": "object"},
            "placeholders": {"type": "array", "items": {"type": "string"}},
            "models": {"type": "object", "description": "per task: its default model, names, accepts, loaded..., "
                                                        "live (served on the GET /stream WebSocket too)"},
            "installed": {"type": "object"},
            "live_sessions": {"type": "integer", "description": "live sessions (GET /stream) open in this worker"},
        }},
    }


def job_schemas() -> dict[str, Any]:
    """``Job`` (and its ``JobUrls``): the model ``edge/jobs.py`` builds every job answer with."""
    schema = Job.model_json_schema(ref_template=SCHEMAS + "{model}", mode="serialization")
    return {**schema.pop("$defs", {}), "Job": schema}


def job_data(schema: dict[str, Any]) -> dict[str, Any]:
    """An event's ``data``: a line of JSON of ``schema``."""
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def components() -> dict[str, Any]:
    request_id = {"description": "the client's X-Request-ID when it is a sane token, else a new one",
                  "schema": {"type": "string"}}
    retry_after = {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
    responses = {str(status): error_response(status) for status in WHEN}
    responses["401"]["headers"]["WWW-Authenticate"] = {"schema": {"const": "Bearer"}}
    responses["429"]["headers"]["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    return {
        "schemas": {**request_schemas(), **answer_schemas()},
        "responses": responses,
        "headers": {"X-Request-ID": request_id, "Retry-After": retry_after},
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": (
            "only when PERCEPTION_API_KEY is set: 'Authorization: Bearer <key>'")}},
    }


def error_response(status: int) -> dict[str, Any]:
    return {"description": f"{ErrorKind(status).name.replace('_', ' ').lower()}: {WHEN[status]}",
            "headers": {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}},
            "content": {"application/json": {"schema": {"$ref": SCHEMAS + "Error"}}}}


def errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/{status}"} for status in statuses}


def ok(description: str, schema: str, media_type: str = "application/json") -> dict[str, Any]:
    return {"description": description, "headers": {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}},
            "content": {media_type: {"schema": {"$ref": SCHEMAS + schema}}}}


def request_body() -> dict[str, Any]:
    """One request in its three forms (``edge/uploads.py``): JSON, multipart, the file itself."""
    fields = example_fields()
    json_example = {**fields, "payloadBase64": EXAMPLE_PNG}
    form_fields = {name: {"type": "string"} for name in ("task", "model", "mimeType")}
    form_fields["task"]["enum"] = list(REGISTRY)
    form_fields["options"] = {"type": "string", "contentMediaType": "application/json",
                              "description": "the options as a JSON object in a string"}
    form_fields["file"] = {"contentMediaType": "application/octet-stream", "description": (
        "the image or video (the examples' file: the PNG of the JSON example's payloadBase64). " + PAYLOAD)}
    raw = {"schema": {"description": "the image or video file itself; the fields go as query parameters. " + PAYLOAD}}
    return {"required": True, "description": (
        "One request, three forms: JSON with the file in payloadBase64 (also sent as no Content-Type, text/plain, "
        "application/x-www-form-urlencoded or +json); multipart/form-data with a 'file' part and the other fields "
        "as form fields; or the file itself as the body (image/*, video/*, application/octet-stream) with the "
        "fields as query parameters. The same reader, answers, errors, body limit and read deadline for all three "
        "(and for /infer and /jobs). " + PAYLOAD),
        "content": {
            "application/json": {"schema": {"$ref": SCHEMAS + "InferRequest"}, "example": json_example},
            MULTIPART: {"schema": {"type": "object", "required": ["task", "file"], "properties": form_fields},
                        "example": {**fields, "options": json.dumps(fields["options"])}},
            **{f"{prefix}*" if prefix.endswith("/") else prefix: raw for prefix in RAW_TYPES},
        }}


def query_parameters() -> list[dict[str, Any]]:
    """The fields of a raw-body request, as query parameters (only that form reads them)."""
    fields = example_fields()
    only_raw = ("with the file itself as the body only: JSON and multipart bodies carry their own fields, and one of "
                "them with this parameter too is a 400 naming it (a field is given one way)")
    params = [{"name": name, "in": "query", "required": False,
               "schema": {"type": "string", **({"enum": list(REGISTRY)} if name == "task" else {})},
               "description": f"{name}, {only_raw}" + ("; required then" if name == "task" else ""),
               "example": fields[name]} for name in ("task", "model", "mimeType")]
    params.append({"name": "options", "in": "query", "required": False, "description": f"options, {only_raw}",
                   "content": {"application/json": {"schema": {"type": "object"}, "example": fields["options"]}}})
    return params


def infer_operation(summary: str, answers: dict[str, Any], *statuses: int, **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "parameters": query_parameters(), "requestBody": request_body(),
            "responses": {**answers, **errors(*statuses)}, **extra}


def job_links() -> dict[str, Any]:
    """The job routes reached with the ``id`` of a submit's answer (OpenAPI links: a client, or a fuzzer's
    stateful phase, follows them)."""
    by_id = {"id": "$response.body#/id"}
    return {name: {"operationId": operation, "parameters": by_id, "description": description} for name, operation,
            description in (("GetJob", "getJob", "the job's state"), ("CancelJob", "cancelJob", "cancel it"),
                            ("GetJobResult", "getJobResult", "its answer"),
                            ("GetJobEvents", "getJobEvents", "its progress as events"))}


def job_id() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def job_paths() -> dict[str, Any]:
    created = ok("the job, queued (Location: /jobs/{id})", "Job")
    idempotency = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {
        "type": "string", "minLength": 1, "maxLength": 255}, "description": (
        "a retried submit with the same key gets the job the key already names (200); another body is a 422")}
    again = ok("the job this Idempotency-Key already names", "Job")
    created["links"] = again["links"] = job_links()
    submit = infer_operation("Submit /infer's request as a job (validated as /infer validates it: a request refused "
                             "for its fields is a 400 at once; one refused for its payload is a job that fails)",
                             {"202": created, "200": again}, 400, 401, 408, 413, 415, 422, 429, 500,
                             operationId="submitJob")
    submit["parameters"].append(idempotency)
    return {
        "/jobs": {"post": submit},
        "/jobs/{id}": {"parameters": [job_id()], "get": {
            "operationId": "getJob", "summary": "A job's status, progress and ETA",
            "responses": {"200": ok("the job", "Job"), **errors(401, 404)}}, "delete": {
            "operationId": "cancelJob", "summary": "Cancel a queued or running job",
            "responses": {"200": ok("the job, cancelled", "Job"), **errors(401, 404, 409)}}},
        "/jobs/{id}/result": {"parameters": [job_id()], "get": {
            "operationId": "getJobResult", "summary": "What /infer would have answered: its status and body",
            "description": "A failed job's result answers the job's own error status and body, as /infer would have.",
            "responses": {"200": ok("the task's answer (Server-Timing: the stages the run went through)",
                                    "InferResult"),  # the body was read at submit: no 408, 415
                          **errors(401, 404, 409, *RUN_ERRORS)}}},
        "/jobs/{id}/events": {"parameters": [job_id()], "get": {
            "operationId": "getJobEvents", "summary": "The job's progress as Server-Sent Events",
            "responses": {"200": {"description": (
                "Server-Sent Events (text/event-stream): 'progress' with the job on each change, then one 'end'; "
                "the schema is one event's (OpenAPI 3.2's itemSchema, read the 3.1 way: the fields of one event)"),
                "headers": {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}},
                "content": {"text/event-stream": {"schema": {"$ref": SCHEMAS + "JobEvent"}}}}, **errors(401, 404)}}},
    }


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once; callers must not change it)."""
    infer_ok = ok("the task's answer (Server-Timing: the stages the request went through)", "InferResult")
    open_route = {"security": []}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Perception backend", "version": API_VERSION, "description": (
            "Computer-vision inference: one request names a task, a model and an image or video. Every non-2xx "
            "answer is {\"error\": \"<text>\"} with the X-Request-ID of the request.")},
        "security": [{"apiKey": []}, {}],
        "paths": {
            "/infer": {"post": infer_operation("Run a task on an image or video", {"200": infer_ok},
                                               *INFER_ERRORS, operationId="infer")},
            **job_paths(),
            "/health": {"get": {"operationId": "health", "summary": "Tasks, models, runners and readiness",
                                "responses": {"200": ok("the service's state", "Health"), **errors(500, 503)},
                                **open_route}},
            "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "responses": {
                "200": {"description": "the OpenAPI 3.1 document", "content": {"application/json": {}}}},
                **open_route}},
        },
        "components": components(),
    }
