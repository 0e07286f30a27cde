"""The OpenAPI 3.1 document of this service's own HTTP API, served at ``GET /openapi.json``.

Generated, not hand-copied: the request body is ``vocab.schema.InferRequest``'s JSON schema, its ``task`` enum and
each task's options schema come from ``tasks.registry.REGISTRY`` (an ``if``/``then`` per task picks the options
model), the three forms of a body are ``edge/uploads.py``'s (JSON, ``multipart/form-data``, the file itself with
the fields as query parameters), and every error is the ``{"error"}`` body of ``edge/errors.py`` with the request
id. The shapes of the answers that are not pydantic models (a job, ``/health``) are written here; the contract
tests check them against real answers. Built once per process.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic.json_schema import models_json_schema

from edge.uploads import MULTIPART, RAW_TYPES
from jobs.store import TERMINAL
from tasks.registry import REGISTRY
from vocab.errors import ErrorKind
from vocab.families import FAMILIES
from vocab.schema import IMAGE, InferRequest

API_VERSION = "0.1.0"
SCHEMAS = "#/components/schemas/"
# A 32x32 grey PNG: the examples' image (small enough to read, and any image task answers it).
EXAMPLE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAIAAAD8GO2jAAAAK0lEQVR42u3NIQEAMAgAMHhqNJrQLwFuK7Csnrj04phAIBAIBAKBQCDY8"
               "gEG7AHGQfZyaQAAAABJRU5ErkJggg==")
JOB_STATUSES = ("queued", "running", *TERMINAL)
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
    request["allOf"] = [{"if": {"properties": {"task": {"const": name}}, "required": ["task"]},
                         "then": {"properties": {"options": {"$ref": SCHEMAS + spec.options.__name__}}}}
                        for name, spec in REGISTRY.items()]
    return schemas


def answer_schemas() -> dict[str, Any]:
    """The answers that are not pydantic models: the error body, a job, ``/health``, a task's result."""
    nullable = {"type": ["string", "null"]}
    yolo = [name for name, spec in REGISTRY.items() if spec.default_kind in YOLO_KINDS]
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}},
                  "description": "every non-2xx answer"},
        "InferResult": {"type": ["array", "object"], "description": (
            f"what the task answers: {', '.join(yolo)} a JSON array of detections (label, score, box, bbox, "
            "class_id, class_name, confidence, instance_id; mask_polygon and mask_area_px for segmentation, "
            "17 COCO keypoints for pose); every other task a JSON object (README, 'POST /infer')")},
        "Job": {"type": "object", "required": ["id", "status", "urls"], "properties": {
            "id": {"type": "string"}, "status": {"enum": list(JOB_STATUSES)}, "task": nullable,
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": {**nullable, "format": "date-time"}, "finished_at": {**nullable, "format": "date-time"},
            "progress": {"type": ["object", "null"], "description": "the current stage, each stage's done/total, "
                                                                    "frames decoded"},
            "eta_s": {"type": ["number", "null"], "description": "seconds left, while a stage's rate gives one"},
            "error": nullable, "result_status": {"type": ["integer", "null"]},
            "timings_ms": {"type": ["object", "null"], "additionalProperties": {"type": "number"}, "description": (
                "once it ran: where the run's time went, stage → milliseconds and the total (the result's "
                "Server-Timing)")},
            "urls": {"type": "object", "properties": {k: {"type": "string"} for k in ("self", "result", "events")}},
        }},
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
        "the image or video (the examples' file: the PNG of the JSON example's payloadBase64)")}
    raw = {"schema": {"description": "the image or video file itself; the fields go as query parameters"}}
    return {"required": True, "description": (
        "One request, three forms: JSON with the file in payloadBase64 (also sent as no Content-Type, text/plain, "
        "application/x-www-form-urlencoded or +json); multipart/form-data with a 'file' part and the other fields "
        "as form fields; or the file itself as the body (image/*, video/*, application/octet-stream) with the "
        "fields as query parameters. The same answers, errors and body limit for all three."),
        "content": {
            "application/json": {"schema": {"$ref": SCHEMAS + "InferRequest"}, "example": json_example},
            MULTIPART: {"schema": {"type": "object", "required": ["task", "file"], "properties": form_fields},
                        "example": {**fields, "options": json.dumps(fields["options"])}},
            **{f"{prefix}*" if prefix.endswith("/") else prefix: raw for prefix in RAW_TYPES},
        }}


def query_parameters() -> list[dict[str, Any]]:
    """The fields of a raw-body request, as query parameters (only that form reads them)."""
    fields = example_fields()
    only_raw = "with the file itself as the body only (JSON and multipart bodies carry their own fields)"
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


def job_id() -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def job_paths() -> dict[str, Any]:
    created = ok("the job, queued (Location: /jobs/{id})", "Job")
    idempotency = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {
        "type": "string", "minLength": 1, "maxLength": 255}, "description": (
        "a retried submit with the same key gets the job the key already names (200); another body is a 422")}
    events = {"type": "string", "description": (
        "Server-Sent Events: 'event: progress' with the job (as GET /jobs/{id} shows it) on each change, then "
        "'event: end' with the job (data {} when the job is gone)")}
    submit = infer_operation("Submit /infer's request as a job", {"202": created, "200": ok(
        "the job this Idempotency-Key already names", "Job")}, 400, 401, 413, 415, 422, 429, 500,
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
            "responses": {"200": ok("the task's answer (Server-Timing: the stages the run went through)",
                                    "InferResult"),  # the body was read at submit: no 408, 415
                          **errors(400, 401, 404, 409, 413, 500, 503)}}},
        "/jobs/{id}/events": {"parameters": [job_id()], "get": {
            "operationId": "getJobEvents", "summary": "The job's progress as Server-Sent Events",
            "responses": {"200": {"description": "the event stream", "content": {
                "text/event-stream": {"schema": events}}}, **errors(401, 404)}}},
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
