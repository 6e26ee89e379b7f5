"""Reading a release's values against the recorded reads of its chart version."""

from __future__ import annotations

from platform_cli.charts import chart_record, check_release, reader, value_paths


def test_value_paths_are_the_leaves_lists_and_empty_maps_included() -> None:
    values = {"spark": {"jobNamespaces": [""]}, "controller": {"batchScheduler": {"enable": True}}, "extra": {}}
    assert value_paths(values) == ["spark.jobNamespaces", "controller.batchScheduler.enable", "extra"]


def test_a_key_is_read_by_its_own_reference_or_an_ancestors() -> None:
    reads = frozenset({"cainjector", "crds.enabled"})
    assert reader("crds.enabled", reads) == "crds.enabled"
    assert reader("cainjector.replicaCount", reads) == "cainjector"   # passed on whole (toYaml / with)
    assert reader("crds.keepIt", reads) is None                      # a sibling is no ancestor


def test_a_key_no_template_of_the_recorded_version_reads_is_ignored() -> None:
    release = {"name": "kserve", "chart": "oci://ghcr.io/kserve/charts/kserve", "version": "v0.15.2",
               "values": {"kserve": {"controller": {"gateway": {"domain": "models.example.org", "ingressDomain": "typo.example.org"}}}}}
    checks = {c.key: c for c in check_release(release)}
    assert checks["kserve.controller.gateway.domain"].status == "read"
    ignored = checks["kserve.controller.gateway.ingressDomain"]
    assert ignored.status == "ignored" and ignored.note == "no template of kserve v0.15.2 reads it (not in its values.yaml either)"


def test_a_chart_version_without_a_record_is_unverified_naming_the_recorded_ones() -> None:
    [check] = check_release({"name": "volcano", "chart": "volcano", "version": "1.14.0", "values": {"custom": {"x": 1}}})
    assert (check.key, check.status) == ("*", "unverified")
    assert check.note == "no record of chart volcano 1.14.0 (recorded: 1.15.1)"


def test_records_say_where_they_come_from_and_when_it_was_tagged() -> None:
    record = chart_record("kueue", "0.19.2")
    assert record.source == "sigs.k8s.io/kueue@v0.19.2 charts/kueue"
    assert record.released.startswith("2026-08-20")
    assert "managerConfig.controllerManagerConfigYaml" in record.reads
