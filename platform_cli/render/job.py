"""Render a job spec for a stack: the stack's target says which renderer makes its manifest.

Renderers are pure functions of (job, stack, job id) and live beside this module:

    render/local.py    a LocalLaunch: the processes the local platform starts
    render/cluster.py  a ConfigMap with the job's code and the kind's workload, for Kubernetes
    render/yarn.py     a LocalLaunch running spark-submit --master yarn (Spark on a YARN stack)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from platform_cli.targets import target_of

if TYPE_CHECKING:
    from platform_cli.render.context import RenderedJob
    from platform_cli.samples import SampleInput, SampleRef
    from platform_cli.spec.job import LoadedJob
    from platform_cli.spec.stack import Stack


def render_job(job: LoadedJob, stack: Stack, job_id: str | None = None, pinned: dict[SampleRef, SampleInput] | None = None) -> RenderedJob:
    """Render `job` for `stack`. Without a job id (a preview), the id is the target's stand-in
    (`<name>-<id>` locally, `<name>-xxxxx` on a cluster, where it must be a valid object name).
    `pinned`: the sample versions its `${samples.NAME@V}` references resolve to (render_submission)."""
    target = target_of(stack)
    renderer = target.job_renderer(job.spec.kind)
    return renderer(job, stack, job_id or f"{job.spec.name}-{target.preview_id_suffix}", pinned)


def render_submission(job: LoadedJob, stack: Stack, job_id: str | None = None) -> RenderedJob:
    """render_job with every `${samples.NAME@V}` pinned to the version it names now (reads the
    sample library: what `plinth job render` shows and `submit` sends)."""
    from platform_cli.render.context import spec_fields
    from platform_cli.samples import REFERENCE

    if not any(REFERENCE.search(value) for _, value in spec_fields(job)):
        return render_job(job, stack, job_id)  # no sample library to read (nor deltalake to import)
    from platform_cli.samples.table import pin_samples

    return render_job(job, stack, job_id, pin_samples(job, stack))
