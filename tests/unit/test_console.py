"""The console's guard and pages, in-process (the browser tests drive a real server and Chromium)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from platform_cli.console.app import create_app
from platform_cli.console.dag import layout
from platform_cli.console.security import Guard, check_bind
from platform_cli.errors import PlinthError
from platform_cli.flow.plan import plan_flow
from platform_cli.main import app
from platform_cli.spec.flow import load_flow
from platform_cli.spec.stack import load_stack, stack_names
from tests.conftest import REPO, write_job

CONSOLE = "http://127.0.0.1:8600"
CIPHERTEXT = "v1:Zm9yLXRlc3RzLW9ubHk=:S2VlcCB0aGlzIG91dCBvZiBldmVyeSBwYWdl"


def client(token: str | None = None, read_only: bool = False, stacks: list[str] | None = None) -> tuple[TestClient, Guard]:
    guard = Guard(host="127.0.0.1", port=8600, token=token, read_only=read_only)
    app = create_app([load_stack(name) for name in stacks or ["local"]], guard)
    return TestClient(app, base_url=CONSOLE, follow_redirects=False), guard


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_beyond_loopback_the_console_needs_a_token_or_read_only(host: str) -> None:
    with pytest.raises(PlinthError, match=r"--host .*: the console's actions .* would be open .*; pass --token SECRET .* or --read-only"):
        check_bind(host, None, False)
    check_bind(host, "s3cret", False)
    check_bind(host, None, True)
    for loopback in ("127.0.0.1", "localhost", "::1"):
        check_bind(loopback, None, False)


def test_an_action_needs_the_consoles_origin_and_form_token(project: Path) -> None:
    console, guard = client()
    url = "/jobs/local/nope-b2c4d/cancel"
    assert console.post(url, data={"csrf": guard.csrf_token}).status_code == 403  # no Origin, no Referer
    refused = console.post(url, data={"csrf": guard.csrf_token}, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and "Origin" in refused.text
    assert console.post(url, data={"csrf": "guessed"}, headers={"Origin": CONSOLE}).status_code == 403
    allowed = console.post(url, data={"csrf": guard.csrf_token}, headers={"Origin": CONSOLE})
    assert allowed.status_code == 303  # through the guard: the core answers (no such job), shown on the job's page
    page = console.get(allowed.headers["location"])
    assert page.status_code == 404  # the job does not exist, so neither does its page


def test_a_read_only_console_shows_no_action_and_refuses_any(project: Path) -> None:
    path = write_job(project / "jobs", "hello", "kind: python\nname: hello\nscript: hello.py\n", script="print('hello')\n")
    submitted = CliRunner().invoke(app, ["job", "submit", "-f", str(path), "--wait"])
    assert submitted.exit_code == 0, submitted.output
    job_page = f"/jobs/local/{submitted.output.split()[0].removeprefix('job/')}"

    console, guard = client()
    restart = console.get(job_page).text
    assert 'action="' in restart and f'name="csrf" value="{guard.csrf_token}"' in restart  # the form carries the token

    console, guard = client(read_only=True)
    assert "<form method=\"post\"" not in console.get(job_page).text and "Restart" not in console.get(job_page).text
    assert console.post("/flows/local/x/cancel", data={"csrf": guard.csrf_token}, headers={"Origin": CONSOLE}).status_code == 403
    assert "read-only" in console.get("/").text


def test_with_a_token_every_request_carries_it(project: Path) -> None:
    console, _ = client(token="s3cret")
    assert console.get("/jobs").status_code == 401
    assert console.get("/jobs?token=wrong").status_code == 401
    entry = console.get("/jobs?token=s3cret&kind=spark")
    assert entry.status_code == 303 and entry.headers["location"] == "/jobs?kind=spark"  # the token leaves the URL
    assert "httponly" in entry.headers["set-cookie"].lower() and "samesite=strict" in entry.headers["set-cookie"].lower()
    assert console.get("/jobs").status_code == 200  # the cookie now carries it
    assert TestClient(console.app, base_url=CONSOLE).get("/jobs", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_request_for_another_host_name_is_refused(project: Path) -> None:
    console, _ = client()
    assert console.get("/", headers={"Host": "attacker.example:8600"}).status_code == 400


def test_no_page_reveals_a_stack_secret(project: Path) -> None:
    stack_file = project / "stacks" / "Pulumi.team-feed.yaml"
    stack_file.write_text(stack_file.read_text() + f"  plinth:imageRegistryPassword:\n    secure: {CIPHERTEXT}\n")
    console, _ = client(stacks=stack_names())
    # (The models page, which creates the MLflow registry, is toured by the browser tests.)
    for path in ("/", "/jobs", "/flows", "/usage", "/usage?since=30d"):
        page = console.get(path)
        assert page.status_code == 200, path
        assert CIPHERTEXT not in page.text and "S2VlcCB0aGlz" not in page.text, path
    overview = console.get("/").text
    assert "imageRegistryPassword (encrypted, not shown)" in overview
    # The cluster stacks cannot be reached from here: the pages say so instead of failing.
    assert "stack team-feed: cannot use kubeconfig context" in overview


def test_pages_of_an_empty_platform_say_there_is_nothing_yet(project: Path) -> None:
    console, _ = client()
    assert "No jobs yet." in console.get("/").text
    assert "No jobs match." in console.get("/jobs").text
    assert "No flow runs match." in console.get("/flows").text
    usage = console.get("/usage").text
    assert "No job ran in this period." in usage and "No job requested a GPU" in usage
    bad = console.get("/usage?since=3x")
    assert bad.status_code == 400 and "--since &#39;3x&#39;: expected a period such as 30m, 12h, 7d or 2w" in bad.text
    assert console.get("/jobs/local/nope-b2c4d").status_code == 404
    assert console.get("/jobs/nowhere/x").status_code == 404


def test_pages_forbid_framing_and_foreign_scripts(project: Path) -> None:
    console, _ = client()
    headers = console.get("/").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"] and "script-src 'self'" in headers["content-security-policy"]
    assert headers["server-timing"].startswith("app;dur=")


def test_the_flow_graph_puts_nodes_in_dependency_columns_with_their_steps_inside() -> None:
    graph = layout(plan_flow(load_flow(REPO / "examples" / "ctr" / "flow.yaml")))
    nodes = {node["name"]: node for node in graph["nodes"]}
    assert [n["name"] for n in sorted(graph["nodes"], key=lambda n: n["x"])] == ["data", "features", "train", "release"]
    release = nodes["release"]
    steps = {s["name"]: s for s in release["steps"]}
    assert steps["register"]["x"] < steps["evaluate"]["x"] < steps["promote"]["x"]  # a chain inside the node
    for step in release["steps"]:  # every step is drawn inside its node's box
        assert release["x"] < step["x"] and step["x"] + step["w"] < release["x"] + release["w"]
        assert release["y"] < step["y"] and step["y"] + step["h"] < release["y"] + release["h"]
    assert sum(e["outer"] for e in graph["edges"]) == 3 and sum(not e["outer"] for e in graph["edges"]) == 2
    assert graph["schedule"] == "0 3 * * *"
    assert graph["width"] >= release["x"] + release["w"]


def test_the_command_refuses_an_open_address_or_a_busy_port_in_one_line(project: Path) -> None:
    import socket

    result = CliRunner().invoke(app, ["console", "--host", "0.0.0.0"])
    assert result.exit_code == 1 and result.output.startswith("error: --host 0.0.0.0: the console's actions") and result.output.count("\n") == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["console", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output == f"error: --host 127.0.0.1 --port {port}: cannot listen there (Address already in use); pick another port with --port, or 0 for any free one\n"
