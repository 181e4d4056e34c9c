// gitops-hub dashboard: plain DOM, no build step. Data from the JSON API (docs/status.md);
// live updates from /api/events (server-sent events), polling if that stream fails.
// Every value from the API is put in the page with textContent, never as HTML.
// Access: the token given in the header form is kept in sessionStorage (this tab only) and
// sent as a Bearer token with every request; /api/v1/session says who it is and which
// Applications it may sync, so write buttons show only where the policy allows them.
// (EventSource cannot send a header: with a token the page polls instead.)
"use strict";

const TOKEN_KEY = "gitops-hub-token";
const POLL_MS = 5000;
const ERRORS_POLL_MS = 5000;
const state = { status: null, route: "", events: null, pollTimer: null, pending: null, diff: null, session: null };

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { "Authorization": "Bearer " + t } : {};
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = Object.assign({}, authHeaders(), opts.headers || {});
  const response = await fetch(path, opts);
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    const err = new Error(message);
    err.status = response.status;
    throw err;
  }
  return body;
}

function appLink(name) {
  return el("a", { href: "#/app/" + encodeURIComponent(name), class: "app-link", dataset: { app: name } }, name);
}

// ------------------------------------------------------------------ overview

function renderTotals(status) {
  const t = status.totals.applications;
  const box = $("totals");
  box.replaceChildren(
    el("div", { class: "stat", id: "total-clusters" }, el("b", {}, status.totals.clusters), "clusters"),
    el("div", { class: "stat", id: "total-apps" }, el("b", {}, t.total), "applications"),
    el("div", { class: "stat", id: "total-synced" }, el("b", {}, t.sync.Synced || 0), "Synced"),
    el("div", { class: "stat" + (t.sync.OutOfSync ? " bad" : ""), id: "total-outofsync" }, el("b", {}, t.sync.OutOfSync || 0), "OutOfSync"),
    el("div", { class: "stat", id: "total-healthy" }, el("b", {}, t.health.Healthy || 0), "Healthy"),
    el("div", { class: "stat" + (t.health.Degraded ? " bad" : ""), id: "total-degraded" }, el("b", {}, t.health.Degraded || 0), "Degraded"),
    el("div", { class: "stat", id: "total-unknown" }, el("b", {}, (t.sync.Unknown || 0)), "sync Unknown"),
  );
}

function renderMatrix(status) {
  const table = $("matrix");
  const clusters = status.matrix.clusters;
  const head = el("tr", {}, el("th", {}, "ApplicationSet"), clusters.map((c) => el("th", { scope: "col" }, c)));
  const rows = status.matrix.rows.map((row) => {
    const label = row.appset === null ? "(no ApplicationSet)" : row.appset;
    const cells = clusters.map((cluster) => {
      const cell = row.cells.find((c) => c.cluster === cluster);
      if (!cell) return el("td", { class: "empty" }, "–");
      return el(
        "td",
        {
          class: `cell sync-${cell.sync} health-${cell.health}`,
          dataset: { appset: row.appset === null ? "" : row.appset, cluster, sync: cell.sync, health: cell.health },
          title: `${cell.applications.join(", ")}: ${cell.sync} / ${cell.health}`,
        },
        cell.applications.map((name, i) => [i ? ", " : "", appLink(name)]),
        el("span", { class: "state" }, `${cell.sync} · ${cell.health}`),
      );
    });
    const head = row.appset === null ? label : el("a", { href: `#/appset/${encodeURIComponent(row.appset)}` }, label);
    return el("tr", { dataset: { appset: row.appset === null ? "" : row.appset } }, el("th", { scope: "row" }, head), cells);
  });
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
}

function ago(time) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(time)) / 1000));
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
    if (seconds >= size) return `${Math.floor(seconds / size)}${unit} ago`;
  }
  return `${seconds}s ago`;
}

function renderClusters(status) {
  const table = $("clusters");
  const top = el("tr", {},
    ["Cluster", "Connection", "Apps"].map((h) => el("th", { rowspan: "2" }, h)),
    el("th", { colspan: "3", class: "group" }, "Sync"),
    el("th", { colspan: "6", class: "group" }, "Health"),
    el("th", { rowspan: "2" }, "Last sync"));
  const sub = el("tr", {}, ["Synced", "OutOfSync", "Unknown", "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"].map((h) => el("th", { class: "sub" }, h)));
  const rows = status.clusters.map((c) => {
    const a = c.applications;
    const last = c.lastSync
      ? el("span", { title: `${c.lastSync.time} ${c.lastSync.app} ${c.lastSync.phase} at ${c.lastSync.revision}` },
        `${ago(c.lastSync.time)} ${c.lastSync.revision.slice(0, 7)}`, c.lastSync.phase === "Succeeded" ? "" : ` (${c.lastSync.phase})`)
      : "never";
    return el(
      "tr",
      { dataset: { cluster: c.name, connection: c.connection.state } },
      el("td", {}, el("b", {}, c.name), el("br"), el("small", {}, c.server)),
      el("td", {}, el("span", { class: `badge conn-${c.connection.state}`, title: c.connection.message }, c.connection.state)),
      el("td", { class: "num", dataset: { count: "total" } }, a.total),
      el("td", { class: "num", dataset: { count: "Synced" } }, a.sync.Synced),
      el("td", { class: "num", dataset: { count: "OutOfSync" } }, a.sync.OutOfSync),
      el("td", { class: "num", dataset: { count: "SyncUnknown" } }, a.sync.Unknown),
      el("td", { class: "num", dataset: { count: "Healthy" } }, a.health.Healthy),
      el("td", { class: "num", dataset: { count: "Progressing" } }, a.health.Progressing),
      el("td", { class: "num", dataset: { count: "Degraded" } }, a.health.Degraded),
      el("td", { class: "num", dataset: { count: "Suspended" } }, a.health.Suspended),
      el("td", { class: "num", dataset: { count: "Missing" } }, a.health.Missing),
      el("td", { class: "num", dataset: { count: "HealthUnknown" } }, a.health.Unknown),
      el("td", {}, last),
    );
  });
  table.replaceChildren(el("thead", {}, top, sub), el("tbody", {}, rows));
}

function renderOverview(status) {
  state.status = status;
  renderTotals(status);
  renderProblems(status);
  renderMatrix(status);
  renderClusters(status);
  document.body.dataset.generatedAt = status.generatedAt;
}

async function loadOverview() {
  try {
    renderOverview(await api("/api/v1/status"));
    showError("");
  } catch (err) {
    showError("cannot read the fleet status: " + err.message);
  }
}

// A source whose newest revision is not applied (a bad file, a revision held by the
// deletion guard) or an ApplicationSet in error keeps its Applications (and so looks fine
// in the matrix): say so above it.
function renderProblems(status) {
  const items = (status.problems || []).map((p) => el(
    "li",
    { dataset: p.kind === "appset" ? { appset: p.name } : { source: p.name } },
    `${p.kind === "appset" ? "ApplicationSet" : "Source"} ${p.name}: ${p.message}`,
  ));
  $("appset-errors").replaceChildren(...items);
}

// ------------------------------------------------------------------ ApplicationSet page

// The state of one step of a RollingSync rollout (hub.rollout's status): done before the
// current step, waiting after it; the current one says whether it is paused or halted.
function stepState(rollout, step) {
  const current = rollout.currentStep === null ? null : Number(rollout.currentStep);
  if (current === null || step < current) return "Done";
  if (step > current) return "Waiting";
  if (rollout.paused) return "Paused";
  if (rollout.haltedBy) return "Halted";
  return "Current";
}

function renderRollout(rollout) {
  const box = $("rollout");
  if (!rollout) {
    box.replaceChildren(el("p", { class: "legend" }, "no RollingSync strategy: every Application syncs on its own"));
    return;
  }
  const byStep = new Map();
  for (const a of rollout.applicationStatus) {
    const key = a.step === null ? "none" : a.step;
    if (!byStep.has(key)) byStep.set(key, []);
    byStep.get(key).push(a);
  }
  const appItem = (a) => el(
    "li",
    { dataset: { app: a.application, status: a.status } },
    appLink(a.application),
    el("span", { class: `badge rollout-${a.status}` }, ` ${a.status}`),
    a.message ? ` — ${a.message}` : "",
  );
  const steps = [];
  for (let n = 1; n <= rollout.steps; n++) {
    const state = stepState(rollout, n);
    const halted = state === "Halted" ? ` by ${rollout.haltedBy}` : "";
    steps.push(el(
      "li",
      { class: `step step-${state}`, dataset: { step: n, state } },
      el("strong", {}, `Step ${n}: ${state}${halted}`),
      el("ul", {}, (byStep.get(String(n)) || []).map(appItem)),
    ));
  }
  const none = byStep.get("none") || [];
  box.replaceChildren(
    el("p", { id: "rollout-message" }, rollout.message + (rollout.promotedStep ? ` (step ${rollout.promotedStep} promoted)` : "")),
    el("ol", { class: "steps" }, steps),
    none.length ? el("p", {}, "Selected by no step:", el("ul", {}, none.map(appItem))) : "",
  );
}

async function loadAppSet(name) {
  try {
    const doc = await api(`/api/v1/applicationsets/${encodeURIComponent(name)}`);
    $("appset-name").textContent = `ApplicationSet ${name}`;
    $("appset-conditions").replaceChildren(...(doc.conditions || []).map((c) => el("li", {}, `${c.type}: ${c.message}`)));
    renderRollout(doc.rollout);
    showError("");
  } catch (err) {
    showError(`cannot read ApplicationSet ${name}: ${err.message}`);
  }
}

// ------------------------------------------------------------------ application page

function renderApp(app) {
  $("app-name").textContent = app.name;
  const summary = $("app-summary");
  const pairs = [
    ["ApplicationSet", app.appset || "—"],
    ["Cluster", app.cluster || "(unresolved)"],
    ["Namespace", app.destination.namespace || "—"],
    ["Sync", el("span", { class: `badge sync-${app.sync}`, id: "app-sync" }, app.sync)],
    ["Health", el("span", { class: `badge cell health-${app.health}`, id: "app-health" }, app.health)],
    ["Revision", (app.syncedSha || "—").slice(0, 12) + (app.desiredSha && app.desiredSha !== app.syncedSha ? ` → ${app.desiredSha.slice(0, 12)}` : "")],
    ["Operation", app.operation ? `${app.operation.phase}: ${app.operation.message}` : (app.operationState ? `${app.operationState.phase || ""} ${app.operationState.message || ""}` : "—")],
  ];
  summary.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("app-conditions").replaceChildren(...app.conditions.map((c) => el("li", {}, `${c.type}: ${c.message}`)));
  const resources = [...app.resources].sort((a, b) => a.wave - b.wave || a.kind.localeCompare(b.kind) || a.name.localeCompare(b.name));
  const head = el("tr", {}, ["Kind", "Name", "Namespace", "Wave", "Sync", "Health", "Message"].map((h) => el("th", {}, h)));
  const rows = resources.map((r) => el(
    "tr",
    { class: `resource res-health-${r.health || "None"}`, dataset: { key: resourceKey(r) } },
    el("td", {}, r.group ? `${r.kind}.${r.group}` : r.kind),
    el("td", {}, r.name + (r.hook ? " (hook)" : "")),
    el("td", {}, r.namespace),
    el("td", { class: "num" }, r.wave),
    el("td", { class: "sync" }, r.sync),
    el("td", {}, r.health || ""),
    el("td", {}, r.message),
  ));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "7" }, "no resources recorded yet")));
  $("resources").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
}

function renderHistory(items) {
  const head = el("tr", {}, ["ID", "Finished", "Revision", "Trigger", "Phase", "Message"].map((h) => el("th", {}, h)));
  const rows = [...items].reverse().map((e) => el(
    "tr",
    { dataset: { id: e.id } },
    el("td", { class: "num" }, e.id),
    el("td", {}, e.finishedAt),
    el("td", {}, e.revision.slice(0, 12)),
    el("td", {}, e.trigger),
    el("td", {}, e.phase),
    el("td", {}, e.message),
  ));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "6" }, "no syncs yet")));
  $("history").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
}

function resourceKey(r) { return [r.group, r.kind, r.namespace, r.name].join("/"); }

// The resource table comes from the last operation; the diff is the live comparison, so
// its per-resource status replaces the Sync column (and adds what the operation missed).
function mergeLive(diff) {
  const body = $("resources").querySelector("tbody");
  if (!body || !diff.resources) return;
  for (const r of diff.resources) {
    let row = [...body.querySelectorAll("tr.resource")].find((tr) => tr.dataset.key === resourceKey(r));
    if (!row) {
      row = el("tr", { class: "resource", dataset: { key: resourceKey(r) } },
        el("td", {}, r.group ? `${r.kind}.${r.group}` : r.kind), el("td", {}, r.name),
        el("td", {}, r.namespace), el("td", { class: "num" }, ""), el("td", { class: "sync" }, ""),
        el("td", {}, ""), el("td", {}, r.reason));
      body.append(row);
    }
    const cell = row.querySelector("td.sync");
    cell.textContent = r.sync;
    cell.className = `sync live sync-${r.sync}`;
    cell.title = r.reason ? `live: ${r.reason}` : "live";
  }
}

function renderDiff(diff) {
  mergeLive(diff);
  const pre = $("diff");
  if (!diff.diff) {
    pre.textContent = `in sync with ${diff.revision.slice(0, 12)}`;
    return;
  }
  pre.replaceChildren(...diff.diff.split("\n").map((line) => el(
    "span",
    { class: line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "" },
    line + "\n",
  )));
}

// first: a new page (says it is comparing); later refreshes keep the shown diff until the
// new one arrives. The diff is fetched again on every refresh: it is the live state.
async function loadApp(name, first) {
  const base = "/api/v1/applications/" + encodeURIComponent(name);
  try {
    const [app, history] = await Promise.all([api(base), api(base + "/history")]);
    if (state.route !== "app/" + name) return;
    renderApp(app);
    renderHistory(history.items);
    if (!first && state.diff && state.diff.name === name) mergeLive(state.diff.diff);
    showError("");
  } catch (err) {
    showError(`cannot read application ${name}: ${err.message}`);
    return;
  }
  if (first) {
    state.diff = null;
    $("diff").textContent = "comparing with the cluster…";
  }
  api(base + "/diff").then((diff) => {
    if (state.route !== "app/" + name) return;
    state.diff = { name, diff };
    renderDiff(diff);
  }, (err) => { $("diff").textContent = "diff unavailable: " + err.message; });
}

// ------------------------------------------------------------------ actions and the token

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function askToken(message, pending) {
  state.pending = pending || null;  // the action to run once the token is given
  $("token-form").hidden = false;
  $("token-input").focus();
  if (message) $("action-result").textContent = message;
}

// Who the token is and what it may do; anonymous: buttons stay and ask for a token.
async function loadSession() {
  try {
    state.session = await api("/api/v1/session");
  } catch (err) {
    state.session = null;
    if (err.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      askToken(token() ? "the token was refused" : "this hub needs a token to show anything");
    }
  }
  const s = state.session;
  const signedIn = s && !s.anonymous;
  $("whoami").textContent = signedIn ? "signed in as " + s.subject : "";
  $("token-button").textContent = signedIn ? "change token" : "log in with a token";
  updateButtons();
}

function updateButtons() {
  const s = state.session;
  const name = state.route.startsWith("app/") ? state.route.slice(4) : null;
  const can = s && !s.anonymous ? (s.applications[name] || []) : null;
  $("sync-button").hidden = can !== null && !can.includes("sync");
  $("refresh-button").hidden = can !== null && !can.includes("refresh");
}

async function action(kind) {
  const name = state.route.slice("app/".length);
  const t = token();
  if (!t) { askToken("enter the API token first", kind); return; }
  $("action-result").textContent = `${kind}…`;
  try {
    await api(`/api/v1/applications/${encodeURIComponent(name)}/${kind}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    $("action-result").textContent = `${kind} queued`;
    setTimeout(() => loadApp(name, false), 1000);
  } catch (err) {
    if (err.status === 401) { sessionStorage.removeItem(TOKEN_KEY); askToken("the token was refused", kind); return; }
    $("action-result").textContent = `${kind} failed: ${err.message}`;
  }
}

// ------------------------------------------------------------------ routing and live updates

function route() {
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  state.route = hash;
  const onApp = hash.startsWith("app/");
  const onSet = hash.startsWith("appset/");
  $("overview-page").hidden = onApp || onSet;
  $("app-page").hidden = !onApp;
  $("appset-page").hidden = !onSet;
  updateButtons();
  if (onApp) loadApp(hash.slice(4), true);
  else if (onSet) loadAppSet(hash.slice(7));
  else if (state.status) renderOverview(state.status);
  else loadOverview();
}

function live(on) {
  const badge = $("live");
  badge.className = "live " + (on ? "on" : "off");
  badge.textContent = on ? "live" : "polling";
}

function onStatus(status) {
  renderOverview(status);
  if (state.route.startsWith("app/")) loadApp(state.route.slice(4), false);
  if (state.route.startsWith("appset/")) loadAppSet(state.route.slice(7));
}

function startPolling() {
  if (state.pollTimer) return;
  live(false);
  state.pollTimer = setInterval(async () => {
    try { onStatus(await api("/api/v1/status")); } catch (err) { showError(err.message); }
  }, POLL_MS);
}

function startEvents() {
  if (!window.EventSource || token()) { startPolling(); return; }
  const source = new EventSource("/api/events");
  state.events = source;
  source.addEventListener("status", (ev) => { live(true); onStatus(JSON.parse(ev.data)); });
  source.addEventListener("open", () => live(true));
  source.addEventListener("error", () => {
    // EventSource reconnects by itself; poll meanwhile so the page never goes stale.
    if (source.readyState === EventSource.CLOSED) startPolling();
    else live(false);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token-input").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    $("token-form").hidden = true;
    $("action-result").textContent = value ? "token set for this tab" : "";
    const pending = state.pending;
    state.pending = null;
    if (value && state.events) { state.events.close(); state.events = null; startPolling(); }
    loadSession().then(() => { state.status = null; route(); });
    if (value && pending && state.route.startsWith("app/")) action(pending);
  });
  $("token-button").addEventListener("click", () => askToken(""));
  $("sync-button").addEventListener("click", () => action("sync"));
  $("refresh-button").addEventListener("click", () => action("refresh"));
  window.addEventListener("hashchange", route);
  loadSession().then(() => loadOverview()).then(route);
  startEvents();
  // Problems may not change the counts the event stream watches: read them on a timer too.
  setInterval(() => { if (!state.route.startsWith("app/")) loadOverview(); }, ERRORS_POLL_MS);
});
