"""The Helm post-renderers that split the kserve chart into its controller and its runtimes,
run as the Kubernetes provider runs them: executables reading a rendered stream on stdin."""

from __future__ import annotations

import subprocess

import yaml

from tests.conftest import REPO

POSTRENDER = REPO / "infra" / "postrender"
# What Helm hands a post-renderer: documents with `# Source:` comments, one kind per document.
RENDERED = """---
# Source: kserve/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: kserve-webhook-server-service
---
# Source: kserve/templates/clusterservingruntimes.yaml
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterServingRuntime
metadata:
  name: kserve-sklearnserver
spec:
  containers:
    - name: kserve-container
      args: ["--model_name={{.Name}}", "kind: ClusterServingRuntime"]
---
# Source: kserve/templates/webhookconfiguration.yaml
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: clusterservingruntime.serving.kserve.io
---
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterServingRuntime
metadata:
  name: kserve-tensorflow-serving
"""


def postrender(name: str, stream: str) -> list[dict]:
    result = subprocess.run([str(POSTRENDER / name)], input=stream, capture_output=True, text=True, check=True)
    return list(yaml.safe_load_all(result.stdout))


def test_the_controller_release_gets_everything_but_the_runtimes() -> None:
    kept = postrender("kserve-without-runtimes", RENDERED)
    assert [(d["kind"], d["metadata"]["name"]) for d in kept] == [
        ("Service", "kserve-webhook-server-service"),
        ("ValidatingWebhookConfiguration", "clusterservingruntime.serving.kserve.io"),
    ]


def test_the_runtimes_release_gets_only_the_runtimes_intact() -> None:
    kept = postrender("kserve-runtimes-only", RENDERED)
    assert [d["metadata"]["name"] for d in kept] == ["kserve-sklearnserver", "kserve-tensorflow-serving"]
    # A nested line that looks like a kind does not decide the document's kind, nor get lost.
    assert kept[0]["spec"]["containers"][0]["args"] == ["--model_name={{.Name}}", "kind: ClusterServingRuntime"]


def test_together_the_two_releases_hold_every_document_once() -> None:
    both = postrender("kserve-without-runtimes", RENDERED) + postrender("kserve-runtimes-only", RENDERED)
    assert sorted(d["metadata"]["name"] for d in both) == sorted(d["metadata"]["name"] for d in yaml.safe_load_all(RENDERED) if d)
