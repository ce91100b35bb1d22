#!/usr/bin/env python3
"""Checks the OpenAPI document of a running Reservoir server.

usage: openapi.py BASE_URL TOKEN

TOKEN is an operator's API token: every operation is called as an operator.

1. The document validates as OpenAPI (openapi-spec-validator).
2. Every documented operation answers as documented: Schemathesis generates requests from the
   document and checks status codes, content types and response bodies against it, and that the
   server never answers 5xx.
"""
import json
import subprocess
import sys
import tempfile
import urllib.request

from openapi_spec_validator import validate


def main(base, token):
    url = f"{base}/api/v1/openapi.json"
    with urllib.request.urlopen(url) as r:
        spec = json.load(r)
    validate(spec)
    print(f"openapi: {url} is a valid OpenAPI {spec['openapi']} document with {len(spec['paths'])} paths")
    cmd = [
        "schemathesis", "run", url,
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "15",
        "--workers", "1",
        "--suppress-health-check", "all",
        "--header", f"Authorization: Bearer {token}",
        # Revoking tokens would revoke the one the run calls with (it lists them first).
        "--exclude-operation-id", "revoke_token",
    ]
    print("openapi: " + " ".join(cmd))
    # Schemathesis keeps a cache folder in its working directory: keep it out of the tree.
    with tempfile.TemporaryDirectory() as cwd:
        result = subprocess.run(cmd, cwd=cwd)
    if result.returncode != 0:
        raise SystemExit(f"schemathesis found responses that differ from the document (exit {result.returncode})")


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2])
