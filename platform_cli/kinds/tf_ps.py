"""TensorFlow parameter-server training: TF_CONFIG processes on localhost ports locally
(platform_cli.targets.local_tf_ps), a TFJob (Kubeflow training operator) on Kubernetes."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from platform_cli.kinds import PodGroup, cpu_quantity
from platform_cli.kinds.kubeflow import KubeflowKind
from platform_cli.kube import Resource
from platform_cli.spec.job import QUANTITY_PATTERN, JobSpecBase, SpecModel

MAX_PARAMETER_SERVERS = 64
FLOAT32_BYTES = 4
# A parameter server's memory request is the process itself (resources.memory) plus its shard
# of the tables and optimizer slots times this. Measured (bench/sharding.py, BENCHMARKS.md) with
# PARAMETER_SERVER_ENV and the example's shards in pieces: a TensorFlow 2.15 server peaks at
# 1.04-1.19x its shard above an idle server for 1, 2 and 4 shards (the most with the smallest
# shard: the 12-15 MB any server gains while training weigh most there).
SHARD_HEADROOM = 1.2
# While a shard is created, before any optimizer slot exists, a server holds its part of the
# tables plus the temporaries of the piece being initialised: 1.5x its part of the tables
# (examples/ctr/train_ps.py creates a shard as 4 pieces). Under the figure above with a slot or
# more; without any, it is what the server must fit.
CREATION_PEAK = 1.5
# What every parameter server runs with, on every target:
# - TensorFlow 2.15's x86 builds enable oneDNN, whose CPU allocator keeps large tensors in a BFC
#   pool that never gives freed memory back to the system: whatever a server held at its peak
#   (its variables' initialisation, above all) stayed resident for good. The system allocator
#   gives it back; a parameter server runs no oneDNN kernel whose speed the pool would serve.
# - glibc then serves allocations under its mmap threshold from its heaps, and raises that
#   threshold up to 32 MB each time it frees a mapped block: freed tensors of a few MB (the pieces
#   of a small shard) stayed in the heaps. A fixed 1 MiB threshold maps every larger tensor on
#   its own, returned to the system when freed.
PARAMETER_SERVER_ENV = {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1", "MALLOC_MMAP_THRESHOLD_": str(2**20)}
_BYTE_UNITS = {"m": 10**-3, "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes byte quantity ("256Mi", "1G", "1000") as a whole number of bytes."""
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity).groups()
    return math.ceil(float(number) * _BYTE_UNITS[unit])


def mebibytes(size: int) -> str:
    """Bytes as a Kubernetes quantity in whole Mi, rounded up (a request must not fall short)."""
    return f"{math.ceil(size / 2**20)}Mi"


class EmbeddingTables(SpecModel):
    """The size of what is sharded: the model's embedding tables, as `rows` ids (the hashed id
    spaces of every categorical field together) of `dims` float32 values each, over all the
    tables that share those ids (the CTR model: 8 deep + 1 wide)."""

    rows: int = Field(ge=1, le=10**12)
    dims: int = Field(ge=1, le=65536)


class Sharding(SpecModel):
    """How the embedding tables are split across parameter servers, one shard per server:
    `shards` of equal size (TensorFlow's FixedShardsPartitioner), or shards of at most
    `maxShardBytes` (MaxSizePartitioner), which decides how many servers the job gets.
    `optimizerSlots` is how many table-sized values the optimizer keeps per parameter (Adam:
    2, Adagrad: 1); with `embeddings` it sizes each parameter server on a cluster."""

    shards: int | None = Field(None, ge=1, le=MAX_PARAMETER_SERVERS)
    max_shard_bytes: str | None = Field(None, alias="maxShardBytes", pattern=QUANTITY_PATTERN)
    embeddings: EmbeddingTables
    optimizer_slots: int = Field(2, ge=0, le=8, alias="optimizerSlots")

    @field_validator("max_shard_bytes")
    @classmethod
    def _whole_bytes(cls, value: str | None) -> str | None:
        if value is not None and (value.endswith("m") or quantity_bytes(value) < 1024):
            raise ValueError(f"{value!r} is under 1Ki (or in milli-bytes); write a size such as 256Mi")
        return value

    @model_validator(mode="after")
    def _one_way_to_split(self) -> Sharding:
        if (self.shards is None) == (self.max_shard_bytes is None):
            raise ValueError("set exactly one of shards (a count, e.g. 4) or maxShardBytes (a size, e.g. 256Mi)")
        if self.shard_count > MAX_PARAMETER_SERVERS:
            least = mebibytes(math.ceil(self.table_bytes / MAX_PARAMETER_SERVERS))
            raise ValueError(
                f"maxShardBytes: {self.max_shard_bytes} splits the {mebibytes(self.table_bytes)} of embeddings into "
                f"{self.shard_count} shards, more than {MAX_PARAMETER_SERVERS} parameter servers; raise it to at least {least}"
            )
        return self

    @property
    def table_bytes(self) -> int:
        return self.embeddings.rows * self.embeddings.dims * FLOAT32_BYTES

    @property
    def shard_count(self) -> int:
        if self.shards is not None:
            return self.shards
        return math.ceil(self.table_bytes / quantity_bytes(self.max_shard_bytes))

    @property
    def bytes_per_server(self) -> int:
        """One server's share of the tables and their optimizer slots."""
        return math.ceil(self.table_bytes * (1 + self.optimizer_slots) / self.shard_count)


class TfPsJobSpec(JobSpecBase):
    """One chief (the ClusterCoordinator), `workers` workers and `parameterServers` parameter
    servers, every one running `script` with its role in TF_CONFIG. The job ends when the chief
    does; parameter servers and workers are stopped then (they serve forever otherwise).
    `resources` size every process; GPUs go to workers. With `sharding`, the embedding tables
    are split one shard per parameter server, so the shard count is the number of servers
    (`parameterServers` may be left out) and each server's memory is `resources.memory` plus
    its shard."""

    kind: Literal["tf-ps"]
    parameter_servers: int = Field(1, ge=1, le=MAX_PARAMETER_SERVERS, alias="parameterServers")
    sharding: Sharding | None = None

    @model_validator(mode="before")
    @classmethod
    def _servers_from_shards(cls, document):
        # Left out, parameterServers follows the sharding; the check below needs the two to
        # agree, so a dumped and reloaded spec (which has both) stays valid.
        if isinstance(document, dict) and isinstance(document.get("sharding"), dict) and not {"parameterServers", "parameter_servers"} & document.keys():
            try:
                document = {**document, "parameterServers": Sharding.model_validate(document["sharding"]).shard_count}
            except ValueError:
                pass  # validated again as the field, where its error names sharding
        return document

    @field_validator("sharding")
    @classmethod
    def _one_shard_per_server(cls, sharding: Sharding | None, info: ValidationInfo) -> Sharding | None:
        servers = info.data.get("parameter_servers")
        if sharding is not None and servers is not None and servers != sharding.shard_count:
            raise ValueError(
                f"{sharding.shard_count} shards need {sharding.shard_count} parameter servers (one shard each), "
                f"parameterServers is {servers}; set parameterServers: {sharding.shard_count} or leave it out"
            )
        return sharding


class TfPsKind(KubeflowKind):
    name = "tf-ps"
    spec = TfPsJobSpec
    workload = Resource("kubeflow.org/v1", "TFJob")
    engine = "the Kubeflow training operator"
    main_role, main_container = "chief", "tensorflow"
    # The chief (ClusterCoordinator) decides; workers and parameter servers never exit on their own.
    deciding_replica = "Chief"
    compute_roles = ("worker",)
    single_interop_thread = False

    def pod_groups(self, spec: TfPsJobSpec) -> list[PodGroup]:
        cpu, memory = cpu_quantity(spec.resources.cpu), spec.resources.memory
        # The chief only coordinates and parameter servers hold variables: GPUs go to workers.
        return [PodGroup("chief", 1, cpu, memory), PodGroup("worker", spec.workers, cpu, memory, spec.resources.gpu),
                PodGroup("ps", spec.parameter_servers, cpu, parameter_server_memory(spec), env=PARAMETER_SERVER_ENV)]

    def pod_name_suffixes(self, spec: TfPsJobSpec) -> list[str]:
        return ["-chief-0", f"-worker-{spec.workers - 1}", f"-ps-{spec.parameter_servers - 1}"]

    def local_context(self, job, stack) -> dict:
        return {"parameter_server_env": PARAMETER_SERVER_ENV}

    def spec_env(self, spec: TfPsJobSpec) -> dict[str, str]:
        return sharding_env(spec.sharding) if spec.sharding else {}


def parameter_server_memory(spec: TfPsJobSpec) -> str:
    """What one parameter server requests: the process (resources.memory), plus its shard of the
    tables and optimizer slots with headroom when the embeddings are sharded (or what creating
    its tables takes, when that is more: an optimizer without slots)."""
    if spec.sharding is None:
        return spec.resources.memory
    sharding = spec.sharding
    held = max(sharding.bytes_per_server * SHARD_HEADROOM, sharding.table_bytes / sharding.shard_count * CREATION_PEAK)
    return mebibytes(quantity_bytes(spec.resources.memory) + math.ceil(held))


def sharding_env(sharding: Sharding) -> dict[str, str]:
    """How the training script learns the sharding (examples/ctr/train_ps.py reads these)."""
    env = {"PLINTH_EMBEDDING_ROWS": str(sharding.embeddings.rows)}
    if sharding.shards is not None:
        env["PLINTH_PS_SHARDS"] = str(sharding.shards)
    else:
        env["PLINTH_PS_MAX_SHARD_BYTES"] = str(quantity_bytes(sharding.max_shard_bytes))
    return env


KIND = TfPsKind()
