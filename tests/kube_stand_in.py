"""A stand-in for the Kubernetes API at the client's HTTP boundary, for the unit tests.

`RecordingApiClient` replaces only `ApiClient.call_api`, the one method through which the
kubernetes client sends HTTP requests (platform_cli.kube builds every request with the client's
own `param_serialize`): everything above it is the real client. Tests answer each recorded
request themselves and assert the exact requests Plinth makes.

What this does NOT prove: that a real API server accepts the objects (admission webhooks, RBAC,
quota admission, CEL rules, field-ownership conflicts) or that the engines act on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from kubernetes.client import ApiClient, Configuration


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: object


class FakeResponse:
    """What RESTClientObject.request returns (kubernetes.client.rest.RESTResponse), in memory."""

    def __init__(self, status: int, payload: object):
        self.status = status
        self.reason = {200: "OK", 201: "Created", 404: "Not Found", 403: "Forbidden"}.get(status, "")
        self.data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.headers = {"content-type": "text/plain" if isinstance(payload, bytes) else "application/json"}
        self.response = self  # the raw urllib3 response handed out with _preload_content=False

    def read(self) -> bytes:
        return self.data

    def getheaders(self) -> dict:
        return self.headers

    def getheader(self, name: str, default=None):
        return self.headers.get(name, default)

    def stream(self, amount: int):
        for start in range(0, len(self.data), 7):  # small chunks: lines arrive split
            yield self.data[start : start + 7]

    def release_conn(self) -> None:
        pass


class RecordingApiClient(ApiClient):
    def __init__(self, respond):
        configuration = Configuration()
        configuration.host = "https://cluster.test"
        super().__init__(configuration)
        self.calls: list[Call] = []
        self.respond = respond

    def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
        parts = urlsplit(url)
        call = Call(method, parts.path, dict(parse_qsl(parts.query)), (header_params or {}).get("Content-Type"), body)
        self.calls.append(call)
        status, payload = self.respond(call)
        return FakeResponse(status, payload)


