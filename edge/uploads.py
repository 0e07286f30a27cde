"""The one request reader of every route that reads a body (``POST /infer``, ``POST /jobs``): the same body limit,
the same read deadline (408), the same three forms, the same errors. Each form becomes the one request
``tasks/infer.py`` validates.

- JSON (``application/json``; also no Content-Type, ``text/plain`` and curl's default form type, as before):
  ``{task, model, payloadBase64, mimeType, options}``, unchanged.
- ``multipart/form-data``: a ``file`` part (the image or video) and the fields ``task``, ``model``,
  ``mimeType`` and ``options`` (a JSON object as a string), parsed by Starlette's own multipart parser.
- the file itself as the body (``image/*``, ``video/*``, ``application/octet-stream``), the fields as query
  parameters: ``?task=object-detection&model=yolo26n&options={"threshold":0.3}``.

An upload reaches ``tasks/infer.py`` as its bytes in ``payload`` (never base64-encoded again). The body limit
holds while reading, whatever the Content-Length says (or when there is none: chunked): a multipart ``file``
part spools to a ``SpooledTemporaryFile`` (memory up to 1 MB, then an unlinked temporary file) that is closed
when parsing fails or once its bytes are read; a raw body goes to a bounded buffer. Any other Content-Type is
a 415. A field is given one way: the query parameters ``task``, ``model``, ``mimeType`` and ``options`` belong to
the raw form only, and a JSON or multipart body that comes with one of them is a 400 naming it (it used to be
ignored silently, so ``?task=`` could say one thing and the body another).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from vocab.errors import ApiError, ErrorKind, bad_request, too_large, unsupported_media_type

JSON_TYPES = ("", "application/json", "text/plain", "application/x-www-form-urlencoded")
RAW_TYPES = ("image/", "video/", "application/octet-stream")
MULTIPART = "multipart/form-data"
FIELDS = ("task", "model", "mimeType", "options")
MAX_FORM_FIELDS = 16


def form_of(content_type: str) -> str:
    """``"json"``, ``"multipart"`` or ``"raw"`` for a Content-Type header, or a 415."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        return "json"
    if media_type == MULTIPART:
        return "multipart"
    if media_type.startswith(RAW_TYPES):
        return "raw"
    raise unsupported_media_type(
        f"unsupported Content-Type {media_type[:80]!r}; send application/json (with payloadBase64), "
        f"multipart/form-data (with a 'file' part) or the file itself as image/*, video/* or application/octet-stream"
    )


def refuse_declared_over(request: Request, limit: int) -> None:
    """A 413 before reading anything when the Content-Length already says the body is over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and len(declared) < 20 and int(declared) > limit:
        raise too_large(f"request body is {int(declared):,} bytes; the limit is {limit:,}")


async def bounded(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's chunks, refused with 413 as soon as more than ``limit`` bytes have arrived."""
    size = 0
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise too_large(f"request body is over the limit of {limit:,} bytes")
            yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body in a bounded buffer (413 past ``limit``, before reading it all)."""
    refuse_declared_over(request, limit)
    return b"".join([chunk async for chunk in bounded(request, limit)])


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise bad_request("the body is not valid JSON") from None


async def read_request(request: Request, limit: int, deadline_s: float) -> Any:
    """The request as the body ``tasks/infer.py`` takes, from whichever of the three forms it came in: a 413 past
    ``limit`` bytes, and a 408 when the body has not all arrived within ``deadline_s`` (a stalled or trickling
    upload would otherwise hold its concurrency slot until the server's own timeout)."""
    form = form_of(request.headers.get("content-type", ""))
    if form != "raw":
        refuse_query_fields(request, form)
    try:
        return await asyncio.wait_for(read_form(request, form, limit), deadline_s)
    except TimeoutError:
        raise ApiError(ErrorKind.REQUEST_TIMEOUT, f"the request body did not arrive within {deadline_s:g} s") from None


def refuse_query_fields(request: Request, form: str) -> None:
    """A 400 for a request field given as a query parameter beside a JSON or multipart body (which carries it)."""
    given = [name for name in FIELDS if name in request.query_params]
    if given:
        where = "JSON body" if form == "json" else "multipart form"
        raise bad_request(f"{given[0]!r} is given as a query parameter, but with a {where} the fields go in the "
                          f"{where}: give each field once (query parameters are for the file itself as the body)")


async def read_form(request: Request, form: str, limit: int) -> Any:
    if form == "json":
        raw = await read_body(request, limit)
        # a big body is parsed in a worker thread: tens of MB of JSON would hold the event loop for a second
        return parse_json(raw) if len(raw) < 1 << 20 else await asyncio.to_thread(parse_json, raw)
    if form == "raw":
        data = await read_body(request, limit)
        return upload_body(dict(request.query_params), data, "body", request.headers.get("content-type"))
    refuse_declared_over(request, limit)
    return await read_multipart(request, limit)


async def read_multipart(request: Request, limit: int) -> dict[str, Any]:
    parser = MultiPartParser(request.headers, bounded(request, limit), max_files=1, max_fields=MAX_FORM_FIELDS)
    try:
        form = await parser.parse()  # closes its spooled files itself when reading or parsing fails
    except MultiPartException as exc:
        raise bad_request(f"the multipart body is malformed: {exc.message[:200]}") from None
    try:
        upload = file_part(form)
        data = await upload.read()
    finally:
        await form.close()
    fields = {name: value for name, value in form.multi_items() if isinstance(value, str)}
    return upload_body(fields, data, "'file' part", upload.content_type)


def file_part(form: FormData) -> UploadFile:
    upload = form.get("file")
    if upload is None:
        raise bad_request("the multipart body has no 'file' part (the image or video, e.g. curl -F file=@photo.jpg)")
    if not isinstance(upload, UploadFile):
        raise bad_request("the multipart 'file' part must be a file upload with a filename (curl -F file=@photo.jpg)")
    return upload


def upload_body(fields: dict[str, str], data: bytes, where: str, content_type: str | None) -> dict[str, Any]:
    """The upload's fields as the JSON body has them (``options`` parsed), its bytes in ``payload``."""
    if not data:
        raise bad_request(f"the {where} is empty: send the image or video file")
    body: dict[str, Any] = {name: fields[name] for name in FIELDS if name in fields}
    if "options" in body:
        try:
            body["options"] = json.loads(body["options"]) if body["options"].strip() else {}
        except (ValueError, RecursionError):
            raise bad_request("options is not valid JSON (send a JSON object, e.g. {\"threshold\": 0.3})") from None
    body.setdefault("mimeType", content_type)
    body["payload"] = data
    return body
