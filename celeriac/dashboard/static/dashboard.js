// celeriac dashboard: fills the pages from the JSON API and keeps them current by polling.
// Task data is only ever written with textContent (never innerHTML), so arguments and
// results show as text whatever they contain.
"use strict";

const POLL_MS = 1500;
const csrfToken = () => document.querySelector('meta[name="csrf-token"]').content;

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

// -- small DOM helpers ------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = String(value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function stateBadge(state) {
  return el("span", { class: `state state-${state}`, text: state });
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

function when(timestamp) {
  if (!timestamp) return "—";
  const date = new Date(timestamp * 1000);
  return date.toLocaleTimeString([], { hour12: false }) + "." + String(date.getMilliseconds()).padStart(3, "0");
}

function seconds(value) {
  if (value === null || value === undefined) return "";
  if (value < 0.001) return `${Math.round(value * 1e6)} µs`;
  return value < 1 ? `${(value * 1000).toFixed(1)} ms` : `${Number(value).toFixed(3)} s`;
}

function flash(message, isError) {
  const box = document.getElementById("flash");
  box.textContent = message;
  box.className = isError ? "error" : "ok";
  box.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => (box.hidden = true), 6000);
}

function setLive(ok) {
  const dot = document.getElementById("live");
  dot.className = ok ? "live" : "live down";
  dot.title = ok ? "live updates" : "can't reach the dashboard's API";
}

// A confirmation dialog with optional input fields; resolves to their values, or null if cancelled.
function confirmAction(text, fields) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const box = document.getElementById("confirm-fields");
  box.replaceChildren(
    ...(fields || []).map((f) =>
      el("label", {}, f.label, el("input", { name: f.name, value: f.value ?? "", type: f.type || "text" })),
    ),
  );
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (dialog.returnValue !== "ok") return resolve(null);
        const values = {};
        for (const input of box.querySelectorAll("input")) values[input.name] = input.value;
        resolve(values);
      },
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function act(text, fields, path, body) {
  const values = await confirmAction(text, fields);
  if (values === null) return null;
  try {
    const result = await post(path, body(values));
    flash(result.message, false);
    return result;
  } catch (error) {
    flash(error.message, true);
    return null;
  }
}

function poll(refresh) {
  const tick = async () => {
    try {
      await refresh();
      setLive(true);
    } catch (error) {
      setLive(false);
    }
    setTimeout(tick, POLL_MS);
  };
  tick();
}

// -- workers ----------------------------------------------------------------------------
function workerActions(w) {
  const base = `/api/workers/${encodeURIComponent(w.hostname)}`;
  const button = (label, handler, cls) => el("button", { type: "button", class: cls || "small", onclick: handler, text: label });
  return el(
    "div",
    { class: "row-actions" },
    button("Rate limit", () =>
      act(`Set a task's rate limit on ${w.hostname}`, [
        { name: "task_name", label: "Task name" },
        { name: "rate_limit", label: "Rate (10/m, 5/s, 0 = none)" },
      ], `${base}/rate-limit`, (v) => ({ task_name: v.task_name, rate_limit: v.rate_limit || null })),
    ),
    button("Grow", () =>
      act(`Add pool processes to ${w.hostname}?`, [{ name: "n", label: "How many", value: "1", type: "number" }],
        `${base}/pool/grow`, (v) => ({ n: parseInt(v.n, 10) })),
    ),
    button("Shrink", () =>
      act(`Remove pool processes from ${w.hostname}?`, [{ name: "n", label: "How many", value: "1", type: "number" }],
        `${base}/pool/shrink`, (v) => ({ n: parseInt(v.n, 10) })),
    ),
    button("Shut down", () => act(`Shut ${w.hostname} down (warm shutdown)?`, [], `${base}/shutdown`, () => ({})), "small danger"),
  );
}

async function refreshWorkers() {
  const { workers } = await api("/api/workers");
  const online = workers.filter((w) => w.online).length;
  document.getElementById("worker-summary").textContent = `${online} online, ${workers.length - online} offline`;
  const rows = workers.map((w) =>
    el(
      "tr",
      { "data-worker": w.hostname, class: w.online ? "" : "offline" },
      el("td", {}, el("a", { href: `/tasks?worker=${encodeURIComponent(w.hostname)}`, text: w.hostname })),
      el("td", {}, el("span", { class: w.online ? "badge online" : "badge offline", text: w.online ? "online" : "offline" })),
      el("td", { text: age(w.heartbeat_age) }),
      el("td", { text: w.pool || "—" }),
      el("td", { class: "num", text: w.concurrency ?? "—" }),
      el("td", { class: "num", text: w.active ?? "—" }),
      el("td", { class: "num", text: w.processed ?? "—" }),
      el("td", { class: "num", text: w.succeeded }),
      el("td", { class: "num", text: w.failed }),
      el("td", { text: (w.loadavg || []).map((x) => x.toFixed(2)).join(" ") || "—" }),
      el("td", { text: (w.queues || []).join(", ") || "—" }),
      el("td", {}, workerActions(w)),
    ),
  );
  const body = document.querySelector("#workers tbody");
  body.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: 12, text: "No workers seen yet." }))]));
}

// -- tasks ------------------------------------------------------------------------------
const PAGE_SIZE = 50;

function taskQuery() {
  const params = new URLSearchParams(location.search);
  for (const key of [...params.keys()]) if (!params.get(key)) params.delete(key);
  return params;
}

function setupTaskFilters() {
  const form = document.getElementById("filters");
  const params = taskQuery();
  for (const input of form.elements) if (input.name && params.has(input.name)) input.value = params.get(input.name);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams(new FormData(form));
    for (const key of [...next.keys()]) if (!next.get(key)) next.delete(key);
    history.replaceState(null, "", `/tasks${next.toString() ? "?" + next : ""}`);
    refreshTasks();
  });
  const move = (delta) => {
    const q = taskQuery();
    const offset = Math.max(0, parseInt(q.get("offset") || "0", 10) + delta);
    q.set("offset", String(offset));
    history.replaceState(null, "", `/tasks?${q}`);
    refreshTasks();
  };
  document.getElementById("prev").addEventListener("click", () => move(-PAGE_SIZE));
  document.getElementById("next").addEventListener("click", () => move(PAGE_SIZE));
}

async function refreshTasks() {
  const q = taskQuery();
  q.set("limit", String(PAGE_SIZE));
  const page = await api(`/api/tasks?${q}`);
  document.getElementById("task-total").textContent = `${page.total} in history`;
  const last = Math.min(page.total, page.offset + page.tasks.length);
  document.getElementById("page-info").textContent = page.total ? `${page.offset + 1}–${last} of ${page.total}` : "";
  document.getElementById("prev").disabled = page.offset === 0;
  document.getElementById("next").disabled = last >= page.total;
  const rows = page.tasks.map((t) =>
    el(
      "tr",
      { "data-task": t.uuid, "data-state": t.state },
      el("td", {}, el("a", { href: `/tasks/${encodeURIComponent(t.uuid)}`, class: "mono", text: t.uuid })),
      el("td", { text: t.name || "?" }),
      el("td", {}, stateBadge(t.state)),
      el("td", { class: "mono clip", text: t.args ?? "", title: t.args ?? "" }),
      el("td", { class: "mono clip", text: t.kwargs ?? "", title: t.kwargs ?? "" }),
      el("td", { class: "num", text: seconds(t.runtime) }),
      el("td", { text: t.worker || "" }),
      el("td", { text: when(t.first_seen) }),
    ),
  );
  const body = document.querySelector("#tasks tbody");
  body.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colspan: 8, text: "No tasks match." }))]));
}

// -- one task ---------------------------------------------------------------------------
async function refreshTask(taskId) {
  const t = await api(`/api/tasks/${encodeURIComponent(taskId)}`);
  const set = (field, value) => {
    const node = document.querySelector(`[data-field="${field}"]`);
    if (node && field !== "worker") node.textContent = value;
  };
  set("name", t.name || "");
  const badge = document.querySelector('[data-field="state"]');
  badge.textContent = t.state;
  badge.className = `state state-${t.state}`;
  set("args", t.args ?? "");
  set("kwargs", t.kwargs ?? "");
  set("result", t.result ?? "");
  set("exception", t.exception ?? "");
  set("traceback", t.traceback ?? "");
  set("retries", t.retries ?? 0);
  set("runtime", seconds(t.runtime));
  set("times", [t.sent, t.received, t.started, t.finished].map(when).join(" / "));
  const worker = document.querySelector('[data-field="worker"]');
  if (t.worker && worker.textContent !== t.worker) {
    worker.replaceChildren(el("a", { href: `/tasks?worker=${encodeURIComponent(t.worker)}`, text: t.worker }));
  }
}

function setupTask() {
  const box = document.querySelector(".actions[data-task]");
  if (!box) {
    // Not in the history yet: show it as soon as its first event arrives.
    const taskId = document.getElementById("task-id").textContent;
    const wait = () => api(`/api/tasks/${encodeURIComponent(taskId)}`).then(() => location.reload(), () => setTimeout(wait, POLL_MS));
    wait();
    return;
  }
  const taskId = box.dataset.task;
  const times = document.querySelector('[data-field="times"]');
  times.textContent = ["sent", "received", "started", "finished"].map((k) => when(parseFloat(times.dataset[k]))).join(" / ");
  const base = `/api/tasks/${encodeURIComponent(taskId)}`;
  box.addEventListener("click", async (event) => {
    const action = event.target.dataset && event.target.dataset.action;
    if (action === "revoke") await act(`Revoke task ${taskId}? Workers won't run it.`, [], `${base}/revoke`, () => ({}));
    if (action === "terminate")
      await act(`Revoke task ${taskId} and terminate it if it is running?`, [{ name: "signal", label: "Signal", value: "SIGTERM" }],
        `${base}/revoke`, (v) => ({ terminate: true, signal: v.signal || "SIGTERM" }));
    if (action === "retry") {
      const result = await act(`Send task ${taskId} again, as a new task with the same arguments?`, [], `${base}/retry`, () => ({}));
      if (result && result.task_id) setTimeout(() => (location.href = `/tasks/${encodeURIComponent(result.task_id)}`), 800);
    }
  });
  poll(() => refreshTask(taskId));
}

// -- queues -----------------------------------------------------------------------------
async function refreshQueues() {
  const { queues } = await api("/api/queues");
  const rows = queues.map((q) =>
    el(
      "tr",
      { "data-queue": q.name },
      el("td", { class: "mono", text: q.name }),
      el("td", { class: "num", text: q.messages ?? "n/a" }),
      el("td", { text: Object.entries(q.by_priority || {}).map(([p, n]) => `${p}: ${n}`).join("  ") || "—" }),
      el("td", { text: (q.consumers || []).join(", ") || "none" }),
      el("td", {}, el("button", {
        type: "button", class: "small danger", text: "Purge",
        onclick: () => act(`Delete every waiting message of queue ${q.name}? There is no undo.`, [],
          `/api/queues/${encodeURIComponent(q.name)}/purge`, () => ({})),
      })),
    ),
  );
  document.querySelector("#queues tbody").replaceChildren(...rows);
}

// -- charts (inline SVG) ----------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function lineChart(container, points, series) {
  const width = 720, height = 180, pad = 34;
  const values = points.flatMap((p) => series.map((s) => p[s])).filter((v) => v !== null && v !== undefined);
  const top = Math.max(1e-9, ...values) * 1.1;
  const x = (i) => pad + (i * (width - pad - 8)) / Math.max(1, points.length - 1);
  const y = (v) => height - pad + 8 - (v / top) * (height - pad - 4);
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", class: "svg-chart" });
  for (const frac of [0, 0.5, 1]) {
    const value = top * frac / 1.1;
    chart.append(svg("line", { x1: pad, x2: width - 8, y1: y(value), y2: y(value), class: "gridline" }));
    const label = svg("text", { x: 2, y: y(value) + 4, class: "axis" });
    label.textContent = value >= 10 ? value.toFixed(0) : value.toPrecision(2);
    chart.append(label);
  }
  series.forEach((name, k) => {
    const coords = points.map((p, i) => (p[name] === null ? null : `${x(i).toFixed(1)},${y(p[name]).toFixed(1)}`));
    chart.append(svg("polyline", { points: coords.filter(Boolean).join(" "), class: `series k${k}` }));
    // Dots too: a lone point between gaps draws no line.
    points.forEach((p, i) => {
      if (p[name] !== null && p[name] > 0) chart.append(svg("circle", { cx: x(i), cy: y(p[name]), r: 2.5, class: `dot k${k}` }));
    });
  });
  const first = svg("text", { x: pad, y: height - 4, class: "axis" });
  first.textContent = points.length ? when(points[0].time).slice(0, 8) : "";
  const last = svg("text", { x: width - 60, y: height - 4, class: "axis" });
  last.textContent = points.length ? when(points[points.length - 1].time).slice(0, 8) : "";
  chart.append(first, last);
  container.replaceChildren(chart);
}

async function refreshCharts() {
  const { points } = await api("/api/stats?window=900&step=10");
  lineChart(document.getElementById("chart-throughput"), points, ["throughput"]);
  lineChart(document.getElementById("chart-failures"), points, ["failed"]);
  lineChart(document.getElementById("chart-runtime"), points, ["p50", "p90", "p99"]);
}

// -- start ------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "workers") poll(refreshWorkers);
  if (page === "tasks") {
    setupTaskFilters();
    poll(refreshTasks);
  }
  if (page === "task") setupTask();
  if (page === "queues") poll(refreshQueues);
  if (page === "charts") poll(refreshCharts);
});
