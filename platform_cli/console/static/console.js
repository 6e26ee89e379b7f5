// The console's behaviour: confirmations, live logs and states, charts. No framework, no build.
"use strict";

const POLL_MS = 2000;
const COLOURS = ["#2f5bd3", "#e0772b", "#1e8a4c", "#c43d3d", "#8a4fd1", "#18a0a8", "#b7791f"];

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  return { ok: response.ok, data: await response.json() };
}

// Every action asks first (the core still decides; refusals come back as the page's message).
function confirmations() {
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
}

function followJobLog() {
  const log = document.getElementById("log");
  if (!log || log.dataset.follow !== "yes") return;
  log.scrollTop = log.scrollHeight;
  const timer = setInterval(async () => {
    const { ok, data } = await getJSON(log.dataset.logUrl);
    if (!ok) return;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = data.lines.join("\n");
    if (atBottom) log.scrollTop = log.scrollHeight;
    if (data.finished) {
      clearInterval(timer);
      document.getElementById("log-state").textContent = `(${data.status})`;
    }
  }, POLL_MS);
}

function statusBadge(status) {
  const span = document.createElement("span");
  span.className = `status s-${status.toLowerCase()}`;
  span.textContent = status;
  return span;
}

function followFlow() {
  const dag = document.getElementById("dag");
  if (!dag) return;
  for (const button of document.querySelectorAll("[data-step-log]")) {
    button.addEventListener("click", async () => {
      const { data } = await getJSON(button.dataset.stepLog);
      const title = document.getElementById("step-log-title");
      const pre = document.getElementById("step-log");
      title.hidden = pre.hidden = false;
      title.textContent = `Log of ${data.step} (${data.status})`;
      pre.textContent = data.lines ? data.lines.join("\n") : data.detail;
    });
  }
  if (dag.dataset.follow !== "yes") return;
  const timer = setInterval(async () => {
    const { ok, data } = await getJSON(dag.dataset.stateUrl);
    if (!ok) return;
    for (const [key, step] of Object.entries(data.steps)) {
      const node = dag.querySelector(`[data-step="${CSS.escape(key)}"]`);
      if (node) {
        node.setAttribute("class", `step s-${step.status.toLowerCase()}`);
        node.querySelector(".step-state").textContent = step.status;
      }
      const row = document.querySelector(`tr[data-row="${CSS.escape(key)}"]`);
      if (row) {
        row.querySelector(".cell-status").replaceChildren(statusBadge(step.status));
        row.querySelector(".cell-attempt").textContent = step.attempt || "-";
        row.querySelector(".cell-duration").textContent = step.duration;
      }
    }
    document.getElementById("run-status").replaceChildren(statusBadge(data.status));
    if (data.finished) {
      clearInterval(timer);
      window.location.reload(); // the actions that apply now (resume) come with the page
    }
  }, POLL_MS);
}

function lineChart(canvas, datasets, options = {}) {
  return new Chart(canvas, {
    type: "line",
    data: { datasets },
    options: {
      animation: false, responsive: true, maintainAspectRatio: false, parsing: false,
      scales: { x: { type: "linear", title: { display: !!options.xTitle, text: options.xTitle } }, y: { beginAtZero: true, ...(options.y || {}) } },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
      elements: { point: { radius: options.points ?? 0 } },
    },
  });
}

function evaluationCharts() {
  for (const canvas of document.querySelectorAll("canvas[data-chart='evaluation-data']")) {
    const data = JSON.parse(document.getElementById("evaluation-data").textContent);
    const sides = [["new", `v${data.version}`, COLOURS[0]], ["production", `v${data.production_version} (production)`, COLOURS[1]]];
    const datasets = [];
    for (const [which, label, colour] of sides) {
      const scores = data[which];
      if (!scores) continue;
      if (canvas.dataset.kind === "roc" && scores.roc) {
        datasets.push({ label: `${label} AUC ${scores.auc.toFixed(4)}`, borderColor: colour, data: scores.roc.fpr.map((x, i) => ({ x, y: scores.roc.tpr[i] })) });
      } else if (canvas.dataset.kind === "calibration" && scores.calibration) {
        datasets.push({ label, borderColor: colour, data: scores.calibration.predicted.map((x, i) => ({ x, y: scores.calibration.observed[i] })), pointRadius: 3 });
      }
    }
    const diagonal = canvas.dataset.kind === "roc" ? [{ x: 0, y: 0 }, { x: 1, y: 1 }] : null;
    if (diagonal) datasets.push({ label: "chance", borderColor: "#bbb", borderDash: [4, 4], data: diagonal });
    if (canvas.dataset.kind === "calibration") {
      const top = Math.max(...datasets.flatMap((d) => d.data.map((p) => Math.max(p.x, p.y))), 0.01);
      datasets.push({ label: "perfect", borderColor: "#bbb", borderDash: [4, 4], data: [{ x: 0, y: 0 }, { x: top, y: top }] });
    }
    lineChart(canvas, datasets, { xTitle: canvas.dataset.kind === "roc" ? "false positive rate" : "mean predicted" });
  }
}

function usageCharts() {
  const source = document.getElementById("usage-data");
  if (!source) return;
  const data = JSON.parse(source.textContent);
  const cost = document.getElementById("chart-cost");
  new Chart(cost, {
    type: "bar",
    data: { labels: data.teams, datasets: [{ label: "cost", data: data.cost, backgroundColor: COLOURS[0] }] },
    options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { display: false } } },
  });
  new Chart(document.getElementById("chart-hours"), {
    type: "bar",
    data: {
      labels: data.teams,
      datasets: [
        { label: "CPU-hours", data: data.cpu_hours, backgroundColor: COLOURS[0] },
        { label: "memory GiB-hours", data: data.memory_gib_hours, backgroundColor: COLOURS[2] },
        { label: "GPU-hours", data: data.gpu_hours, backgroundColor: COLOURS[1] },
      ],
    },
    options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { position: "bottom" } } },
  });
  const gpu = document.getElementById("chart-gpu");
  if (!gpu) return;
  const labels = data.gpu_series.t.map((t) => t.replace("T", " ").slice(5, 16));
  const datasets = [];
  let i = 0;
  const teams = new Set([...Object.keys(data.gpu_series.teams), ...Object.keys(data.quotas)]);
  for (const team of teams) {
    const colour = COLOURS[i++ % COLOURS.length];
    datasets.push({ label: `${team} GPUs in use`, data: data.gpu_series.teams[team] || labels.map(() => 0), borderColor: colour, stepped: true, pointRadius: 0 });
    if (data.quotas[team]) datasets.push({ label: `${team} quota`, data: labels.map(() => data.quotas[team]), borderColor: colour, borderDash: [6, 4], pointRadius: 0 });
  }
  new Chart(gpu, {
    type: "line",
    data: { labels, datasets },
    options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true, suggestedMax: 1, ticks: { precision: 0 } } }, plugins: { legend: { position: "bottom" } } },
  });
}

function fixed(value, digits) {
  return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
}

function followCompare() {
  const section = document.getElementById("compare");
  if (!section) return;
  const charts = {
    rps: lineChart(document.getElementById("chart-rps"), [], { xTitle: "seconds" }),
    errors: lineChart(document.getElementById("chart-errors"), [], { xTitle: "seconds" }),
    latency: lineChart(document.getElementById("chart-latency"), [], { xTitle: "seconds" }),
    prediction: lineChart(document.getElementById("chart-prediction"), [], { xTitle: "seconds" }),
  };
  const started = Date.now();
  const last = {};
  function series(chart, label, colour, dash) {
    let found = chart.data.datasets.find((d) => d.label === label);
    if (!found) {
      found = { label, borderColor: colour, borderDash: dash || [], data: [] };
      chart.data.datasets.push(found);
    }
    return found;
  }
  async function poll() {
    const { ok, data } = await getJSON(section.dataset.compareUrl);
    const state = document.getElementById("compare-state");
    const body = document.querySelector("#compare-table tbody");
    if (!ok) {
      state.textContent = "";
      body.innerHTML = "";
      const row = body.insertRow();
      const cell = row.insertCell();
      cell.colSpan = 9;
      cell.className = "muted";
      cell.textContent = data.error;
      return;
    }
    state.textContent = `(router generation ${data.generation}, updated ${new Date().toLocaleTimeString()})`;
    if (data.rolled_back) state.textContent += ` · auto-rollback: ${data.rolled_back}`;
    body.innerHTML = "";
    const t = (Date.now() - started) / 1000;
    data.versions.forEach((v) => {
      const row = body.insertRow();
      row.dataset.version = v.version;
      for (const text of [`v${v.version}`, v.stage, `${v.weight}%`, v.requests, v.errors, fixed(v.error_rate, 4), fixed(v.p50_ms, 2), fixed(v.p99_ms, 2), fixed(v.mean_prediction, 4)]) {
        row.insertCell().textContent = text;
      }
      const colour = COLOURS[(v.version - 1) % COLOURS.length];
      const name = `v${v.version}`;
      const previous = last[v.version];
      if (previous) {
        const rate = Math.max(0, (v.requests - previous.requests) / Math.max(0.001, t - previous.t));
        series(charts.rps, name, colour).data.push({ x: t, y: rate });
      }
      last[v.version] = { t, requests: v.requests };
      series(charts.errors, name, colour).data.push({ x: t, y: v.error_rate });
      if (v.p50_ms !== null) series(charts.latency, `${name} p50`, colour).data.push({ x: t, y: v.p50_ms });
      if (v.p99_ms !== null) series(charts.latency, `${name} p99`, colour, [5, 4]).data.push({ x: t, y: v.p99_ms });
      if (v.mean_prediction !== null) series(charts.prediction, name, colour).data.push({ x: t, y: v.mean_prediction });
    });
    Object.values(charts).forEach((chart) => chart.update());
  }
  poll();
  setInterval(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  confirmations();
  followJobLog();
  followFlow();
  evaluationCharts();
  usageCharts();
  followCompare();
});
