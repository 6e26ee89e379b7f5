"""The traffic split's HAProxy configuration and runtime commands, as pure functions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from platform_cli.serving.router import haproxy_config, is_down, merged, runtime_commands, unanswered
from platform_cli.serving.traffic import breach
from platform_cli.spec.stack import AutoRollbackConfig


def test_the_configuration_is_valid_haproxy(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    (tmp_path / "versions.map").touch()
    config.write_text(haproxy_config("ctr", "127.0.0.1", 8500, 40001, tmp_path / "admin.sock", tmp_path / "versions.map"))
    checked = subprocess.run([shutil.which("haproxy"), "-c", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = config.read_text()
    # Only predictions, v1 and v2, take the weighted backend; reload is refused beyond loopback.
    assert "use_backend versions if { path /v1/models/ctr:predict /v2/models/ctr/infer } { method POST }" in text
    assert "if { path /plinth/reload } !{ src 127.0.0.0/8 ::1 }" in text
    # A body beyond what the versions take is refused before it reaches (and blames) one.
    assert "if { req.hdr_val(content-length) gt 8388608 }" in text
    # A request for one version goes to that version's own backend, found in the version map.
    assert f"path,field(6,/),map({tmp_path / 'versions.map'}) if one_version" in text
    assert [line.strip() for line in text.splitlines() if line.startswith("backend version_")] == [
        "backend version_s1", "backend version_s2", "backend version_s3", "backend version_s4"]


def test_a_new_version_takes_a_free_slot_and_weights_change_in_place() -> None:
    upstreams = {1: ("127.0.0.1", 4001), 2: ("127.0.0.1", 4002)}
    commands, slots = runtime_commands({1: 90, 2: 10}, upstreams, slots={1: "s1"}, version_map=Path("m"), previous={1: ("127.0.0.1", 4001)})
    assert slots == {1: "s1", 2: "s2"}
    assert commands == [
        # Version 1's server stays: left alone. The new version was ready before it joined: up
        # at once, not after its first check.
        "set server versions/s2 addr 127.0.0.1 port 4002", "set server versions/s2 state ready",
        "set server version_s2/v addr 127.0.0.1 port 4002", "set server version_s2/v state ready",
        "set server versions/s1 weight 90", "set server versions/s2 weight 10",
        # ...and reachable on its own once its backend points to it
        "add map m 2 version_s2",
    ]


def test_a_version_that_leaves_keeps_its_slot_at_weight_zero_until_the_slots_run_out() -> None:
    commands, slots = runtime_commands({1: 100}, {1: ("127.0.0.1", 4001)}, slots={1: "s1", 2: "s2"}, version_map=Path("m"),
                                       previous={1: ("127.0.0.1", 4001), 2: ("127.0.0.1", 4002)})
    assert slots == {1: "s1", 2: "s2"} and commands[-2:] == ["set server versions/s2 weight 0", "del map m 2"]
    slots = {1: "s1", 2: "s2", 3: "s3", 4: "s4"}  # every slot used; 2, 3 and 4 have left
    _, after = runtime_commands({1: 90, 5: 10}, {1: ("127.0.0.1", 4001), 5: ("127.0.0.1", 4005)}, slots, Path("m"))
    assert after == {1: "s1", 3: "s3", 4: "s4", 5: "s2"}  # the longest-gone version's slot


def test_a_version_back_on_a_new_server_is_up_at_once() -> None:
    # `plinth model start`: same slot, new address; the slot may be down from the old one.
    commands, _ = runtime_commands({1: 100}, {1: ("127.0.0.1", 5001)}, slots={1: "s1"}, version_map=Path("m"),
                                   previous={1: ("127.0.0.1", 4001)})
    assert "set server versions/s1 state ready" in commands and "set server version_s1/v state ready" in commands
    assert not any("map" in command for command in commands)  # version 1 is in the map already


def test_requests_a_version_never_answered_count_as_its_errors() -> None:
    server = {"requests": 30, "errors": 1, "rejected": 2, "in_flight": 0, "error_rate": 1 / 30,
              "p50_ms": 0.4, "p99_ms": 2.0, "mean_prediction": 0.3, "runtime": "tflite"}
    failures = unanswered({"wredis": "6", "econ": "3", "eresp": "1", "scur": "2"})
    assert failures == 10
    snapshot = merged(server, failures, in_transit=2)
    assert (snapshot["requests"], snapshot["errors"], snapshot["in_flight"]) == (40, 11, 2)
    assert snapshot["error_rate"] == 11 / 40 and "runtime" not in snapshot
    assert merged(None, 5, 0)["error_rate"] == 1.0  # a server that never answered


def test_a_canary_whose_server_is_down_breaches_before_its_minimum_requests() -> None:
    limits = AutoRollbackConfig(maxErrorRate=0.2, minRequests=100)
    down = merged(None, 1, 0, down=is_down({"status": "DOWN 1/1"}))
    assert breach(limits, down, production=None) == "its server is down: its port refuses connections"
    assert breach(limits, merged(None, 1, 0, down=is_down({"status": "UP"})), production=None) is None
