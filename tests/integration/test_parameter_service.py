"""The parameter service on the local platform: a CTR model's embedding tables exported to a
store (SQLite, and Redis against a real redis-server), version servers holding only the dense
part, and what that must keep true: the whole model's predictions on the eval rows to 1e-6, two
versions in one store kept apart through a gray release, and rows updated in the store served
without reloading the model.

The model is the CTR example's own wide & deep network (examples/ctr/train.py: build_model and
export), trained briefly on the example generator's impressions with a feature spec of its
fields, so every table, offset and cut is the one a real version has.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from platform_cli.features import CategoricalFeature, FeatureSpec, NumericFeature
from platform_cli.main import app
from platform_cli.serving.inputs import request_inputs
from tests.conftest import REPO, local_project, redis_server
from tests.integration.test_gray_release import plinth
from tests.integration.test_serving import _free_port

pytestmark = pytest.mark.integration

EMBEDDING = "embedding/embeddings"
WIDE = "wide_ids/embeddings"
EVAL_ROWS = 2000
TOLERANCE = 1e-6


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"ctr_{name}", REPO / "examples" / "ctr" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frame(seed: int, rows: int):
    return _example("generate").generate(rows=rows, users=500, items=300, seed=seed)


def ctr_spec(frame) -> FeatureSpec:
    preprocess = _example("preprocess")
    numeric = []
    for name, log1p in preprocess.NUMERIC_FIELDS.items():
        values = frame[name].astype(float)
        values = np.log1p(values) if log1p else values
        numeric.append(NumericFeature(name=name, mean=float(values.mean()), std=float(values.std()) or 1.0, log1p=log1p))
    return FeatureSpec(
        categorical=[CategoricalFeature(name=n, buckets=2000) for n in preprocess.ID_FIELDS]
        + [CategoricalFeature(name=n, buckets=100) for n in preprocess.CONTEXT_FIELDS],
        numeric=numeric, label=preprocess.LABEL)


def train_ctr(directory: Path, spec: FeatureSpec, frame, seed: int, steps: int = 60) -> None:
    """The example's model, trained `steps` Adam steps on the frame's rows, exported as train.py does."""
    import tensorflow as tf

    train = _example("train")
    inputs = request_inputs(spec, frame.drop(columns=[spec.label]).to_dict("records"))
    label = frame[spec.label].to_numpy(np.float32)
    tf.random.set_seed(seed)
    model = train.build_model(tf, spec, 8)
    optimizer = tf.keras.optimizers.Adam(0.01)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = rng.integers(0, len(label), 256)
        with tf.GradientTape() as tape:
            logits = model({"cat": inputs["cat"][batch], "num": inputs["num"][batch]})
            loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=label[batch], logits=logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    train.export(tf, model, spec, spec.model_dump_json(), str(directory))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with versions 1 and 2 of `ctr` (trained from different seeds), both exported to
    the stack's SQLite store (`exported`: what the export printed), and the eval rows."""
    root = local_project(tmp_path_factory.mktemp("params") / "project",
                         {"host": "127.0.0.1", "port": _free_port(), "grayRelease": {"canaryMax": 50}})
    train_frame = _frame(1, 6000)
    spec = ctr_spec(train_frame)
    eval_rows = _frame(2, EVAL_ROWS).drop(columns=[spec.label]).to_dict("records")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PLINTH_PROJECT_DIR", str(root))
        patch.delenv("PLINTH_STACK", raising=False)
        from platform_cli.registry import ModelRegistry
        from platform_cli.spec.stack import load_stack

        stack = load_stack("local")
        registry = ModelRegistry(stack.tracking_uri, stack.artifact_root)
        for version in (1, 2):
            model_dir = root / f"model-{version}"
            train_ctr(model_dir, spec, train_frame, seed=version)
            registry.register("ctr", model_dir, {"auc": 0.7}, {"job_id": f"ctr-train-{version}"})
        exported = {version: export(version) for version in (1, 2)}
        yield root, stack, registry, eval_rows, exported
        CliRunner().invoke(app, ["model", "stop", "ctr"])


def whole_model(registry, version: int):
    from platform_cli.serving.server import SavedModelPredictor

    model = SavedModelPredictor("ctr", registry.model_dir("ctr", version), runtime="savedmodel")
    model.load()
    return model


def served_model(registry, version: int, store: str):
    from platform_cli.paramservice.export import EXPORT_KEY
    from platform_cli.paramservice.predictor import ParameterServiceModel

    return ParameterServiceModel.load(registry.export_dir("ctr", version, EXPORT_KEY), store)


def export(version: int, store: str = "sqlite") -> dict:
    return json.loads(plinth("model", "params", "export", "ctr", str(version), "--store", store, "-o", "json"))


def sqlite_url(stack) -> str:
    return f"sqlite:///{stack.home / 'params' / 'parameters.sqlite'}"


def test_the_dense_part_with_rows_from_the_store_predicts_what_the_whole_model_does(project):
    root, stack, registry, eval_rows, exported = project
    result = exported[1]
    assert result["store"] == sqlite_url(stack)
    assert result["tables"] == {EMBEDDING: {"rows": 6500, "dim": 8}, WIDE: {"rows": 6500, "dim": 1}}
    assert result["max_abs_diff"] <= TOLERANCE
    # The dense part holds no table: its files are a small fraction of the whole model's.
    dense_dir = registry.export_dir("ctr", 1, "parameters")
    dense_bytes = sum(p.stat().st_size for p in (dense_dir / "dense.tflite", dense_dir / "keys.tflite"))
    assert dense_bytes < 6500 * 9 * 4 / 4

    whole = whole_model(registry, 1)
    served = served_model(registry, 1, sqlite_url(stack))
    inputs = whole.inputs(eval_rows)
    difference = np.abs(served(inputs).astype(np.float64) - whole.probabilities(inputs))
    assert difference.max() <= TOLERANCE, difference.max()

    # Through a version server that holds only the dense part, over HTTP.
    out = plinth("model", "serve", "ctr", "--version", "1", "--parameters", "sqlite", "--replace")
    assert "(embedding rows from sqlite:///.plinth/local/params/parameters.sqlite)" in out
    url = out.split(" serving at ")[1].split(" ")[0]
    answer = httpx.post(url, json={"instances": eval_rows[:256]}, timeout=30)
    assert answer.status_code == 200
    served_over_http = np.array(answer.json()["predictions"])
    assert np.abs(served_over_http - whole.probabilities(whole.inputs(eval_rows[:256]))).max() <= TOLERANCE
    plinth("model", "stop", "ctr")


def test_two_versions_in_one_store_are_kept_apart_through_a_gray_release(project):
    root, stack, registry, eval_rows, _ = project
    listed = json.loads(plinth("model", "params", "ls", "ctr", "-o", "json"))
    assert {(t["version"], t["table"]) for t in listed} == {(1, EMBEDDING), (1, WIDE), (2, EMBEDDING), (2, WIDE)}

    plinth("model", "promote", "ctr", "1", "--parameters", "sqlite")
    plinth("model", "promote", "ctr", "2", "--canary", "50", "--parameters", "sqlite")
    router = f"http://127.0.0.1:{stack.config.serving.port}/v1/models/ctr:predict"
    rows = eval_rows[:64]
    expected = {v: whole_model(registry, v).probabilities(whole_model(registry, v).inputs(rows)) for v in (1, 2)}
    assert np.abs(expected[1] - expected[2]).max() > 1e-3  # the versions predict apart
    seen = Counter()
    with httpx.Client(timeout=30) as client:
        for _ in range(40):
            answer = client.post(router, json={"instances": rows})
            assert answer.status_code == 200
            version = int(answer.headers["x-plinth-version"])
            seen[version] += 1
            assert np.abs(np.array(answer.json()["predictions"]) - expected[version]).max() <= TOLERANCE
    assert set(seen) == {1, 2}, seen
    state = json.loads((stack.home / "serving" / "traffic" / "ctr.json").read_text())
    assert state["parameters"] == {"1": sqlite_url(stack), "2": sqlite_url(stack)}

    # Exporting version 2 again replaces its rows only.
    from platform_cli.paramservice.store import open_store

    store = open_store(sqlite_url(stack))
    ids = {EMBEDDING: np.arange(50, dtype=np.int64)}
    before = store.lookup("ctr", 1, ids)[EMBEDDING]
    export(2)
    assert np.array_equal(store.lookup("ctr", 1, ids)[EMBEDDING], before)
    store.close()
    plinth("model", "stop", "ctr")


def test_rows_updated_in_the_store_change_predictions_without_a_reload(project):
    root, stack, registry, eval_rows, _ = project
    out = plinth("model", "serve", "ctr", "--version", "1", "--parameters", "sqlite", "--replace")
    url = out.split(" serving at ")[1].split(" ")[0]
    server = json.loads((stack.home / "serving" / "ctr.json").read_text())
    rows = eval_rows[:8]
    before = np.array(httpx.post(url, json={"instances": rows}, timeout=30).json()["predictions"])

    from platform_cli.paramservice.store import open_store

    # The rows of the first request row's ids in the deep table: pushed far from where they were.
    served = served_model(registry, 1, sqlite_url(stack))
    ids = served.row_ids(whole_model(registry, 1).inputs(rows[:1]))[EMBEDDING]
    store = open_store(sqlite_url(stack))
    vectors = store.lookup("ctr", 1, {EMBEDDING: ids})[EMBEDDING]
    store.update("ctr", 1, EMBEDDING, ids, vectors + 2.0)
    after = np.array(httpx.post(url, json={"instances": rows}, timeout=30).json()["predictions"])
    # What the dense part predicts with the updated rows, in process, is what the server answers.
    expected = served(whole_model(registry, 1).inputs(rows))
    # A change a hundred times the parity tolerance (how much depends on the briefly trained weights).
    assert abs(after[0] - before[0]) > 100 * TOLERANCE, (before[0], after[0])
    assert np.abs(after - expected).max() <= TOLERANCE
    # The same server process answered both: nothing was reloaded.
    assert psutil.Process(server["pid"]).create_time() == server["pid_created"]
    assert json.loads((stack.home / "serving" / "ctr.json").read_text())["pid"] == server["pid"]
    store.update("ctr", 1, EMBEDDING, ids, vectors)
    restored = np.array(httpx.post(url, json={"instances": rows}, timeout=30).json()["predictions"])
    assert np.abs(restored - before).max() <= TOLERANCE
    store.close()
    served.store.close()
    plinth("model", "stop", "ctr")


@pytest.fixture
def redis_url(tmp_path, monkeypatch):
    """A real redis-server with a password (PLINTH_REDIS_PASSWORD), as its store URL."""
    password = "test-secret-7f3a"
    monkeypatch.setenv("PLINTH_REDIS_PASSWORD", password)
    with redis_server(tmp_path, password) as port:
        yield f"redis://127.0.0.1:{port}/0"


def test_redis_store_serves_parity_isolation_and_updates(project, redis_url):
    root, stack, registry, eval_rows, _ = project
    for version in (1, 2):
        assert export(version, redis_url)["max_abs_diff"] <= TOLERANCE
    listed = json.loads(plinth("model", "params", "ls", "--store", redis_url, "-o", "json"))
    assert {(t["model"], t["version"], t["table"], t["rows"], t["dim"]) for t in listed} == {
        ("ctr", v, t, 6500, d) for v in (1, 2) for t, d in ((EMBEDDING, 8), (WIDE, 1))}

    inputs = whole_model(registry, 1).inputs(eval_rows)
    for version in (1, 2):
        served = served_model(registry, version, redis_url)
        difference = np.abs(served(inputs).astype(np.float64) - whole_model(registry, version).probabilities(inputs))
        assert difference.max() <= TOLERANCE, (version, difference.max())

    # Version isolation: an update of version 2's rows leaves version 1's predictions as they were.
    one, two = served_model(registry, 1, redis_url), served_model(registry, 2, redis_url)
    before_one, before_two = one(inputs), two(inputs)
    ids = np.arange(6500, dtype=np.int64)
    two.store.update("ctr", 2, EMBEDDING, ids, np.zeros((6500, 8), np.float32))
    assert np.array_equal(one(inputs), before_one)
    assert np.abs(two(inputs) - before_two).max() > 1e-3

    # A version server reading Redis (the password from the environment, never its arguments).
    out = plinth("model", "serve", "ctr", "--version", "1", "--parameters", redis_url, "--replace")
    url = out.split(" serving at ")[1].split(" ")[0]
    answer = httpx.post(url, json={"instances": eval_rows[:64]}, timeout=30)
    assert answer.status_code == 200
    assert np.abs(np.array(answer.json()["predictions"]) - before_one[:64]).max() <= TOLERANCE
    server = json.loads((stack.home / "serving" / "ctr.json").read_text())
    assert os.environ["PLINTH_REDIS_PASSWORD"] not in " ".join(psutil.Process(server["pid"]).cmdline())
    plinth("model", "stop", "ctr")
    one.store.close()
    two.store.close()


def _cluster_release(redis: str):
    """The KServe objects a team stack renders for ctr: v1 production and v2 a 50% canary, both
    served from the parameter store at `redis`; and the team stack's password Secret's name."""
    import yaml

    from platform_cli.render.serving import render_release
    from platform_cli.serving import traffic
    from platform_cli.spec.stack import GrayReleaseConfig, load_stack

    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        shutil.copy(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
        shutil.copytree(REPO / "stacks", root / "stacks")
        team = yaml.safe_load((root / "stacks" / "Pulumi.team-feed.yaml").read_text())
        team["config"]["plinth:parameterStorePassword"] = {"secure": "v1:ciphertext"}
        (root / "stacks" / "Pulumi.team-feed.yaml").write_text(yaml.safe_dump(team))
        patch.setenv("PLINTH_PROJECT_DIR", str(root))
        state = traffic.promote(traffic.TrafficState(model="ctr"), 1, None, GrayReleaseConfig(canary_max=50))
        state = traffic.promote(state, 2, 50, GrayReleaseConfig(canary_max=50))
        state = state.model_copy(update={"parameters": {1: redis, 2: redis}})
        return render_release(load_stack("team-feed"), state, {v: f"hdfs://models/ctr/{v}/exports/parameters" for v in (1, 2)})


def _as_process(container: dict, model_dir: Path, port: int, secrets: dict[tuple[str, str], str], extra: list[str] = ()) -> tuple[list[str], dict]:
    """A rendered container's command and environment as a process here: /mnt/models is the
    directory the storage initializer would fill, the port a free one on loopback, and a
    variable from a Secret gets the Secret's value, as the kubelet gives it."""
    from platform_cli.render.serving import MODEL_MOUNT

    argv = [sys.executable if arg == "python" else arg.replace(MODEL_MOUNT, str(model_dir)) for arg in container["command"]]
    if "--http-port" in argv:
        argv[argv.index("--http-port") + 1] = str(port)
        argv[argv.index("--host") + 1] = "127.0.0.1"
    env = {}
    for variable in container["env"]:
        if "valueFrom" in variable:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = secrets[(ref["name"], ref["key"])]
        else:
            env[variable["name"]] = variable["value"]
    return [*argv, *extra], env


def test_the_clusters_containers_serve_each_version_from_redis_through_the_transformer(project, redis_url, tmp_path, monkeypatch):
    """The InferenceServices rendered for a cluster, their transformer and predictor containers
    run as processes with their rendered commands and environments against a real redis-server:
    each version's predictions through its transformer are its whole model's on the eval rows,
    and the store's password reaches the predictor only through its environment."""
    from platform_cli.paramservice.export import EXPORT_KEY
    from platform_cli.serving import local
    from platform_cli.spec.team_objects import PARAMETER_STORE_SECRET, PARAMETER_STORE_SECRET_KEY

    root, stack, registry, eval_rows, _ = project
    password = os.environ["PLINTH_REDIS_PASSWORD"]
    for version in (1, 2):
        export(version, redis_url)
    objects = _cluster_release(redis_url)
    assert password not in json.dumps(objects)
    monkeypatch.delenv("PLINTH_REDIS_PASSWORD")  # from here on only the Secret's value, through the containers' env
    secrets = {(PARAMETER_STORE_SECRET, PARAMETER_STORE_SECRET_KEY): password}

    inputs = whole_model(registry, 1).inputs(eval_rows)
    started = []
    try:
        for service in (o for o in objects if o["kind"] == "InferenceService"):
            name, version = service["metadata"]["name"], int(service["metadata"]["labels"]["plinth.dev/model-version"])
            dense = registry.export_dir("ctr", version, EXPORT_KEY)
            predictor_port, transformer_port = _free_port(), _free_port()
            argv, env = _as_process(service["spec"]["predictor"]["containers"][0], dense, predictor_port, secrets)
            assert password not in " ".join(argv)
            with monkeypatch.context() as scoped:
                for key, value in env.items():
                    scoped.setenv(key, value)
                predictor = local.launch(name, version, argv, "127.0.0.1", predictor_port, tmp_path / f"{name}-predictor", tmp_path / f"{name}-predictor.log")
            started.append((name, tmp_path / f"{name}-predictor"))
            assert psutil.Process(predictor.pid).environ()["PLINTH_REDIS_PASSWORD"] == password
            assert password not in " ".join(psutil.Process(predictor.pid).cmdline())
            # KServe appends its own flags to the transformer's command.
            argv, env = _as_process(service["spec"]["transformer"]["containers"][0], dense, transformer_port, secrets,
                                    ["--model_name", name, "--predictor_host", f"127.0.0.1:{predictor_port}", "--http_port", str(transformer_port)])
            assert "PLINTH_REDIS_PASSWORD" not in env  # the transformer never talks to the store
            transformer = local.launch(name, version, argv, "127.0.0.1", transformer_port, tmp_path / f"{name}-transformer", tmp_path / f"{name}-transformer.log")
            started.append((name, tmp_path / f"{name}-transformer"))

            predictions = []
            for start in range(0, len(eval_rows), 500):
                answer = httpx.post(f"{transformer.url}/v1/models/{name}:predict", json={"instances": eval_rows[start:start + 500]}, timeout=60)
                assert answer.status_code == 200, answer.text
                predictions += answer.json()["predictions"]
            difference = np.abs(np.array(predictions) - whole_model(registry, version).probabilities(inputs))
            assert len(predictions) == EVAL_ROWS and difference.max() <= TOLERANCE, (version, difference.max())
    finally:
        for name, directory in reversed(started):
            local.stop(name, directory)
    # Nor did any log write it down.
    assert not [log for log in tmp_path.glob("*.log") if password in log.read_text(errors="replace")]
    assert len(list(tmp_path.glob("*.log"))) == 4
