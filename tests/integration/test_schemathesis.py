"""schemathesis (an independent OpenAPI fuzzer) against the served app, and the headers every answer of it wears.

The fuzzer runs every check, with a fixed seed and bounded examples, and a stateful phase that follows the submit's
OpenAPI links to the job routes with real ids. Zero failures; the exceptions kept are in ``schemathesis.toml``
beside this file, each with its reason."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

CONFIG = Path(__file__).with_name("schemathesis.toml")
TIMEOUT_S = 600


def test_the_fuzzer_finds_no_failure(server, tmp_path):
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
               f"{server.base}/openapi.json", "--checks", "all", "--no-color",
               "--exclude-checks", "use_after_free",  # DELETE /jobs/{id} cancels, it does not delete (the config)
               "--phases", "examples,coverage,fuzzing,stateful"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-12000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", output)
    assert summary and int(summary[1]) == int(summary[2]) > 500, output[-3000:]  # it really ran, and all passed
    stateful = re.search(r"Stateful.*?API Links:\s+(\d+) covered", output, re.S)
    assert stateful and int(stateful[1]) > 0, output[-3000:]  # the job routes were reached through the links
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅  {phase}" in output, output[-3000:]



def test_bentomls_own_routes_wear_the_security_headers_too(http):
    """The headers come from a middleware around the whole served app (``edge.app.middleware``), not our routes."""
    for path in ("/livez", "/readyz", "/metrics", "/no/such/route", "/health", "/openapi.json"):
        response = http.get(path)
        assert response.headers.get("x-content-type-options") == "nosniff", (path, response.status_code)
        assert response.headers["x-frame-options"] == "DENY" and response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store", path
    assert http.get("/playground/").headers["content-security-policy"].startswith("default-src 'self'")
