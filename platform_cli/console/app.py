"""The console's web application: one route per page or action, each calling the core the CLI
calls and rendering a template. No rule lives here: refusals come from the core, word for word.

    app = create_app(stacks, Guard(host, port, token, read_only))
"""

from __future__ import annotations

import getpass
import secrets
import time
from collections import OrderedDict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from platform_cli.console.security import Guard, form_token_check, middleware
from platform_cli.errors import PlinthError
from platform_cli.output import age, duration
from platform_cli.targets import supports
from platform_cli.usage import hours_text, money_text

if TYPE_CHECKING:
    from platform_cli.spec.stack import Stack

HERE = Path(__file__).parent
LOG_TAIL = 200
LIST_LIMIT = 100  # rows a list page shows (newest, or costliest); filters narrow the rest down


class Console:
    """The stacks the console shows and what it keeps between requests (clients, messages)."""

    def __init__(self, stacks: list[Stack], guard: Guard):
        self.stacks = {stack.name: stack for stack in stacks}
        self.guard = guard
        self._targets: dict[str, object] = {}
        self._registries: dict[str, object] = {}
        self._messages: OrderedDict[str, tuple[str, str]] = OrderedDict()

    def stack(self, name: str) -> Stack:
        if name not in self.stacks:
            raise HTTPException(404, f"no stack {name!r} in this console")
        return self.stacks[name]

    @property
    def job_stacks(self) -> list[Stack]:
        return [s for s in self.stacks.values() if s.role != "platform"]

    @property
    def local_stacks(self) -> list[Stack]:
        """Stacks whose flows run (and models serve) on this machine."""
        return [s for s in self.stacks.values() if supports(s, "flow run")]

    def target(self, stack: Stack):
        from platform_cli.targets import get_target

        if stack.name not in self._targets:
            self._targets[stack.name] = get_target(stack)
        return self._targets[stack.name]

    def registry(self, stack: Stack):
        from platform_cli.registry import ModelRegistry

        if stack.name not in self._registries:
            self._registries[stack.name] = ModelRegistry(stack.tracking_uri, stack.artifact_root)
        return self._registries[stack.name]

    def warm(self) -> None:
        """Import what pages use and read every stack once, so the first visitor does not wait
        for MLflow's import and the stores' caches are filled (the command calls this before
        serving, then freezes what exists from the garbage collector's view)."""
        from platform_cli.flow import logs, plan, run  # noqa: F401
        from platform_cli.serving import release  # noqa: F401
        from platform_cli import evaluate, usage  # noqa: F401

        for stack in self.local_stacks:
            self.registry(stack)
            run.list_runs(stack)
        for stack in self.job_stacks:
            try:
                target = self.target(stack)
                for record in target.list():
                    if hasattr(target, "loaded_job"):
                        target.loaded_job(record.id, record)
            except PlinthError:
                pass  # the page says why when it is asked for

    def remember(self, kind: str, text: str) -> str:
        """Keep a message for the page the browser is sent to next (post/redirect/get); the URL
        carries only a random key, so no text can be planted in a link."""
        key = secrets.token_urlsafe(8)
        self._messages[key] = (kind, text)
        while len(self._messages) > 200:
            self._messages.popitem(last=False)
        return key

    def message(self, key: str | None) -> tuple[str, str] | None:
        return self._messages.get(key) if key else None


def _when(moment) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, str):
        return moment
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def create_app(stacks: list[Stack], guard: Guard) -> FastAPI:
    console = Console(stacks, guard)
    app = FastAPI(title="Plinth console", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[Depends(form_token_check(guard))])
    app.state.console = console
    app.middleware("http")(middleware(guard))

    @app.middleware("http")
    async def server_timing(request: Request, call_next):
        # What bench/console.py reads: the time the console spent on the request, in ms.
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
        return response

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters.update(age=age, duration=lambda pair: duration(*pair), money=money_text, hours=hours_text, when=_when)

    def page(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
        context.update(
            console=console, guard=guard, read_only=guard.read_only, csrf=guard.csrf_token,
            flash=console.message(request.query_params.get("msg")), path=request.url.path,
        )
        return templates.TemplateResponse(request, template, context, status_code=status_code)

    def back(url: str, kind: str, text: str) -> RedirectResponse:
        key = console.remember(kind, text)
        return RedirectResponse(f"{url}?msg={key}", status_code=303)

    def act(url: str, do, done) -> RedirectResponse:
        """Run an action through the core; back to `url` with what it did, or its refusal as is."""
        try:
            result = do()
        except PlinthError as exc:
            return back(url, "error", str(exc))
        return back(url, "ok", done(result))

    # -- overview ------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request):
        from platform_cli.flow.run import list_runs

        notices, jobs, runs, models, alerts = [], [], [], [], []
        day_ago = datetime.now(timezone.utc) - timedelta(days=1)
        for stack in console.job_stacks:
            try:
                jobs += [(stack, r) for r in console.target(stack).list()]
            except PlinthError as exc:
                notices.append(f"stack {stack.name}: {exc}")
        for stack in console.local_stacks:
            runs += [(stack, r) for r in list_runs(stack)]
            try:
                models += _live_models(console, stack)
            except PlinthError as exc:
                notices.append(f"stack {stack.name}: {exc}")
        jobs.sort(key=lambda sr: sr[1].submitted, reverse=True)
        runs.sort(key=lambda sr: sr[1].submitted, reverse=True)
        for stack, model in models:
            last = model["state"].history[-1] if model["state"].history else None
            if last is not None and last.action == "auto-rollback":
                alerts.append(("auto-rollback", f"{model['name']} ({stack.name}): {last.detail}", f"/models/{stack.name}/{model['name']}", last.at))
        for stack, record in jobs:
            if record.status.value == "Failed" and (record.finished or record.submitted) >= day_ago:
                alerts.append(("job failed", f"{record.id} ({stack.name}): {record.message.splitlines()[0] if record.message else 'failed'}", f"/jobs/{stack.name}/{record.id}", record.finished))
        for stack, run in runs:
            if run.status == "Failed" and (run.finished or run.submitted) >= day_ago:
                alerts.append(("flow failed", f"{run.id} ({stack.name})", f"/flows/{stack.name}/{run.id}", run.finished))
        alerts.sort(key=lambda alert: alert[3] or datetime.min.replace(tzinfo=timezone.utc), reverse=True)
        counts: dict[str, int] = {}
        for _, record in jobs:
            counts[record.status.value] = counts.get(record.status.value, 0) + 1
        return page(
            request, "overview.html", notices=notices, alerts=alerts, job_counts=counts,
            running_jobs=[jr for jr in jobs if not jr[1].status.finished], recent_jobs=[jr for jr in jobs if jr[1].status.finished][:10],
            running_runs=[sr for sr in runs if not sr[1].status.finished], recent_runs=[sr for sr in runs if sr[1].status.finished][:10],
            models=models, teams=_teams(console),
        )

    # -- jobs ----------------------------------------------------------------------------------

    @app.get("/jobs", response_class=HTMLResponse)
    def jobs(request: Request, stack: str = "", kind: str = "", status: str = "", team: str = "", q: str = ""):
        from platform_cli.usage import job_team

        notices, rows = [], []
        for each in console.job_stacks:
            if stack and each.name != stack:
                continue
            target = console.target(each)
            try:
                records = target.list()
            except PlinthError as exc:
                notices.append(f"stack {each.name}: {exc}")
                continue
            for record in records:
                labels = target.loaded_job(record.id, record).spec.labels if hasattr(target, "loaded_job") else {}
                rows.append({"stack": each.name, "record": record, "team": job_team(each, labels)})
        kinds = sorted({r["record"].kind for r in rows})
        teams = sorted({r["team"] for r in rows})
        statuses = sorted({r["record"].status.value for r in rows})
        shown = [
            r for r in rows
            if (not kind or r["record"].kind == kind) and (not status or r["record"].status.value == status)
            and (not team or r["team"] == team) and (not q or q in r["record"].id)
        ]
        shown.sort(key=lambda r: r["record"].submitted, reverse=True)
        return page(
            request, "jobs.html", notices=notices, rows=shown[:LIST_LIMIT], total=len(shown), kinds=kinds, teams=teams, statuses=statuses,
            filters={"stack": stack, "kind": kind, "status": status, "team": team, "q": q},
        )

    @app.get("/jobs/{stack_name}/{job_id}", response_class=HTMLResponse)
    def job(request: Request, stack_name: str, job_id: str):
        from platform_cli.spec.job import dump_job_spec

        stack = console.stack(stack_name)
        target = console.target(stack)
        record = _or_404(lambda: target.status(job_id))
        spec = manifest = None
        attempts = []
        if hasattr(target, "loaded_job"):
            spec = yaml.safe_dump(dump_job_spec(target.loaded_job(job_id).spec), sort_keys=False)
            manifest = target.manifest(job_id)
            attempts = target.attempts(job_id)
        return page(request, "job.html", stack=stack, record=record, spec=spec, manifest=manifest, attempts=attempts,
                    log=_job_log(target, job_id), can_restart=supports(stack, "job restart"))

    @app.get("/jobs/{stack_name}/{job_id}/log.json")
    def job_log(stack_name: str, job_id: str):
        target = console.target(console.stack(stack_name))
        record = _or_404(lambda: target.status(job_id))
        return {"status": record.status.value, "finished": record.status.finished, "lines": _job_log(target, job_id)}

    @app.post("/jobs/{stack_name}/{job_id}/cancel")
    def job_cancel(stack_name: str, job_id: str):
        target = console.target(console.stack(stack_name))
        return act(f"/jobs/{stack_name}/{job_id}", lambda: target.cancel(job_id), lambda r: f"job/{r.id} {r.status.value.lower()}")

    @app.post("/jobs/{stack_name}/{job_id}/restart")
    def job_restart(stack_name: str, job_id: str):
        target = console.target(console.stack(stack_name))
        return act(f"/jobs/{stack_name}/{job_id}", lambda: target.restart(job_id), lambda r: f"job/{r.id} restarted (attempt {r.attempt})")

    # -- flows ---------------------------------------------------------------------------------

    @app.get("/flows", response_class=HTMLResponse)
    def flows(request: Request, status: str = "", flow: str = ""):
        from platform_cli.flow.run import list_runs

        runs = [(stack, run) for stack in console.local_stacks for run in list_runs(stack)]
        names = sorted({run.flow for _, run in runs})
        statuses = sorted({run.status for _, run in runs})
        shown = [(s, r) for s, r in runs if (not status or r.status == status) and (not flow or r.flow == flow)]
        shown.sort(key=lambda sr: sr[1].submitted, reverse=True)
        done = {r.id: sum(1 for step in r.steps.values() if step.status.done) for _, r in shown[:LIST_LIMIT]}
        return page(request, "flows.html", rows=shown[:LIST_LIMIT], total=len(shown), done=done, names=names, statuses=statuses,
                    filters={"status": status, "flow": flow})

    @app.get("/flows/{stack_name}/{run_id}", response_class=HTMLResponse)
    def flow_run(request: Request, stack_name: str, run_id: str):
        from platform_cli.console.dag import layout
        from platform_cli.flow.plan import plan_flow
        from platform_cli.flow.run import load_snapshot, reconciled, run_dir

        stack = console.stack(stack_name)
        directory = _or_404(lambda: run_dir(stack, run_id))
        record = reconciled(directory)
        flow, params = load_snapshot(directory)
        graph = layout(plan_flow(flow, params))
        return page(request, "flow.html", stack=stack, record=record, graph=graph, finished=record.status.finished)

    @app.get("/flows/{stack_name}/{run_id}/state.json")
    def flow_state(stack_name: str, run_id: str):
        from platform_cli.flow.run import reconciled, run_dir

        stack = console.stack(stack_name)
        record = reconciled(_or_404(lambda: run_dir(stack, run_id)))
        return {
            "status": record.status, "finished": record.status.finished, "message": record.message,
            "steps": {key: {"status": s.status, "attempt": s.attempt, "job_id": s.job_id, "duration": duration(s.started, s.finished) if s.started else "-"} for key, s in record.steps.items()},
        }

    @app.get("/flows/{stack_name}/{run_id}/log/{node}/{step}")
    def flow_step_log(stack_name: str, run_id: str, node: str, step: str):
        from platform_cli.flow.logs import step_log
        from platform_cli.flow.run import reconciled, run_dir

        stack = console.stack(stack_name)
        directory = _or_404(lambda: run_dir(stack, run_id))
        record = reconciled(directory)
        key = f"{node}/{step}"
        if key not in record.steps:
            raise HTTPException(404, f"run {run_id} has no step {key}")
        return {"step": key, "status": record.steps[key].status, "lines": step_log(console.target(stack), directory, key, record.steps[key], LOG_TAIL)}

    @app.post("/flows/{stack_name}/{run_id}/resume")
    def flow_resume(stack_name: str, run_id: str):
        from platform_cli.flow.run import resume_run

        def resumed(record) -> str:
            kept = sum(1 for s in record.steps.values() if s.status.done)
            return f"flow/{record.id} resumed: {kept} of {len(record.steps)} steps already done"

        return act(f"/flows/{stack_name}/{run_id}", lambda: resume_run(console.stack(stack_name), run_id), resumed)

    @app.post("/flows/{stack_name}/{run_id}/cancel")
    def flow_cancel(stack_name: str, run_id: str):
        from platform_cli.flow.run import cancel_run

        return act(f"/flows/{stack_name}/{run_id}", lambda: cancel_run(console.stack(stack_name), run_id), lambda r: f"flow/{r.id} {r.status.lower()}")

    # -- models --------------------------------------------------------------------------------

    @app.get("/models", response_class=HTMLResponse)
    def models(request: Request):
        notices, rows = [], []
        for stack in console.local_stacks:
            try:
                rows += _live_models(console, stack, every=True)
            except PlinthError as exc:
                notices.append(f"stack {stack.name}: {exc}")
        return page(request, "models.html", rows=rows, notices=notices)

    @app.get("/models/{stack_name}/{name}", response_class=HTMLResponse)
    def model(request: Request, stack_name: str, name: str, version: int | None = None):
        from platform_cli.evaluate import read_evaluation
        from platform_cli.serving import release
        from platform_cli.serving import state as store

        stack = console.stack(stack_name)
        registry = console.registry(stack)
        versions = _or_404(lambda: registry.versions(name))
        evaluated = [v.version for v in versions if any(k.startswith("eval_") for k in v.metrics)]
        shown = version if version is not None else (evaluated[-1] if evaluated else None)
        evaluation = read_evaluation(stack, name, shown) if shown is not None else None
        saved = store.load(release.state_path(stack, name), name)
        router = release.find_router(stack, name)
        policy = stack.config.serving.gray_release
        return page(
            request, "model.html", stack=stack, name=name, versions=list(reversed(versions)), evaluated=evaluated, shown=shown,
            evaluation=evaluation, state=saved, router=router, policy=policy,
            history=list(reversed(saved.history)),
        )

    @app.get("/models/{stack_name}/{name}/compare.json")
    def model_compare(stack_name: str, name: str):
        from platform_cli.serving import release

        stack = console.stack(stack_name)
        try:
            data = release.compare(stack, console.registry(stack), name)
        except PlinthError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return {**data, "at": datetime.now(timezone.utc).isoformat()}

    def _release_action(stack_name: str, name: str, change) -> RedirectResponse:
        from platform_cli.serving import release

        stack = console.stack(stack_name)
        started = datetime.now(timezone.utc)

        def changed(after) -> str:
            weights = ", ".join(f"v{v} {w}%" for v, w in sorted(after.weights.items())) or "-"
            # The event this action added; one that changed nothing reports the split as it is.
            detail = f"{after.history[-1].detail}; " if after.history and after.history[-1].at >= started else ""
            return f"model/{name}: {detail}traffic {weights}"

        return act(f"/models/{stack_name}/{name}", lambda: change(release, stack, console.registry(stack)), changed)

    @app.post("/models/{stack_name}/{name}/promote")
    def model_promote(stack_name: str, name: str, version: int = Form(...), percent: str = Form("")):
        share = int(percent) if percent.strip() else None
        return _release_action(stack_name, name, lambda release, stack, registry: release.promote(stack, registry, name, version, share))

    @app.post("/models/{stack_name}/{name}/rollout")
    def model_rollout(stack_name: str, name: str, weight: str = Form(""), full: str = Form("")):
        share = None if full else int(weight) if weight.strip() else None
        if share is None and not full:
            return back(f"/models/{stack_name}/{name}", "error", "pass either a weight or full")
        return _release_action(stack_name, name, lambda release, stack, registry: release.rollout(stack, registry, name, share))

    @app.post("/models/{stack_name}/{name}/approve")
    def model_approve(stack_name: str, name: str, version: str = Form("")):
        chosen = int(version) if version.strip() else None
        by = f"{getpass.getuser()} (console)"
        return _release_action(stack_name, name, lambda release, stack, registry: release.approve(stack, registry, name, chosen, by=by))

    @app.post("/models/{stack_name}/{name}/rollback")
    def model_rollback(stack_name: str, name: str):
        return _release_action(stack_name, name, lambda release, stack, registry: release.rollback(stack, registry, name))

    # -- usage ---------------------------------------------------------------------------------

    @app.get("/usage", response_class=HTMLResponse)
    def usage(request: Request, since: str = "7d", team: str = ""):
        from platform_cli.usage import gpu_series, parse_since, usage_report

        try:
            period = parse_since(since)
        except PlinthError as exc:
            return page(request, "usage.html", status_code=400, error=str(exc), since=since, team=team, report=None)
        report = usage_report(console.job_stacks, datetime.now(timezone.utc) - period, team=team or None)
        series = gpu_series(report.jobs, report.since, report.until)
        quotas = {t.team: t.gpu_quota for t in report.teams if t.gpu_quota}
        charts = {
            "teams": [t.team for t in report.teams],
            "cost": [round(t.cost, 6) for t in report.teams],
            "cpu_hours": [round(t.cpu_hours, 6) for t in report.teams],
            "gpu_hours": [round(t.gpu_hours, 6) for t in report.teams],
            "memory_gib_hours": [round(t.memory_gib_hours, 6) for t in report.teams],
            "gpu_series": series, "quotas": quotas,
        }
        return page(request, "usage.html", since=since, team=team, report=report, charts=charts, jobs=sorted(report.jobs, key=lambda j: -j.cost)[:LIST_LIMIT])

    return app


def _or_404(read):
    try:
        return read()
    except PlinthError as exc:
        raise HTTPException(404, str(exc)) from None


def _job_log(target, job_id: str) -> list[str]:
    return "".join(target.logs(job_id, tail=LOG_TAIL)).splitlines()


def _live_models(console: Console, stack: Stack, every: bool = False) -> list[tuple[Stack, dict]]:
    """Models with their saved traffic split and router: every model of the stack's library,
    or (the overview) only those with a split, which needs no registry query."""
    from platform_cli.serving import release
    from platform_cli.serving import state as store

    if every:
        summaries = {summary.name: summary for summary in console.registry(stack).list_models()}
    else:
        summaries = dict.fromkeys(release.released_models(stack))
    found = []
    for name, summary in summaries.items():
        state = store.load(release.state_path(stack, name), name)
        if not every and not state.weights:
            continue
        found.append((stack, {"name": name, "summary": summary, "state": state, "router": release.find_router(stack, name)}))
    return found


def _teams(console: Console) -> list[dict]:
    """Teams the stacks declare (team stacks), with their quota and queue."""
    teams = []
    for stack in console.stacks.values():
        team = stack.config.team
        if team is not None:
            teams.append({"name": team.name, "stack": stack.name, "platform": team.platform, "namespace": team.namespace_name,
                          "quota": team.quota, "gpu_share": team.queue.gpu_share})
    return teams
