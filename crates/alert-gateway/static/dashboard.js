// The dashboard's own script: alerts, fleet, chart, live feed (the capabilities' panels are in
// their own files under static/). A file, not inline, so the page's Content-Security-Policy
// allows scripts from the gateway only.
"use strict";
const $ = (id) => document.getElementById(id);
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("token")) { localStorage.setItem("proact-token", hash.get("token")); history.replaceState(null, "", location.pathname); }
let token = localStorage.getItem("proact-token") || "";
const STATES = { open: "ouverte", acknowledged: "acquittée", cleared: "levée" };
const SEVERITIES = { critical: "critique", warning: "alerte", info: "info" };
const STATUS = { ok: "normal", warning: "alerte", critical: "critique", silent: "muet" };
const alerts = new Map();           // alert_id → alert (latest state)
let lastEventId = "";               // resume point of the WebSocket
let selected = localStorage.getItem("proact-equipment") || "";
let equipment = [];

/// Today: the time; before: the day too.
const fmtTime = (ts) => {
  if (!ts) return "";
  const d = new Date(ts);
  const today = d.toDateString() === new Date().toDateString();
  return today ? d.toLocaleTimeString("fr-FR") : d.toLocaleString("fr-FR", { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" });
};
const user = () => localStorage.getItem("proact-user") || "";

async function api(path, opts = {}) {
  const headers = { "Content-Type": "application/json", ...(opts.headers || {}) };
  if (token) headers["Authorization"] = "Bearer " + token;
  const r = await fetch(path, { ...opts, headers });
  if (r.status === 401) { askToken(); const e = new Error("jeton requis"); e.auth = true; throw e; }
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
  return body;
}

function askToken() {
  const d = $("token-dialog");
  if (!d.open) d.showModal();
}
$("token-form").addEventListener("submit", () => {
  token = $("token-input").value.trim();
  localStorage.setItem("proact-token", token);
  start();
});

// ---- alerts ------------------------------------------------------------------------------

/// Keeps the newest state of each alert; an event without operator fields (the detector's)
/// keeps those already known, and an acknowledged alert does not go back to open.
function upsert(a) {
  const known = alerts.get(a.alert_id);
  if (known) {
    if ((a.updated || "") < (known.updated || "")) return false;
    for (const f of ["acknowledged_by", "comment", "assigned_to"]) if (!a[f]) a[f] = known[f];
    if (a.state === "open" && known.state === "acknowledged") a.state = "acknowledged";
  }
  alerts.set(a.alert_id, a);
  return true;
}

function renderAlerts() {
  const rows = [...alerts.values()].sort((a, b) =>
    (a.state === "cleared") - (b.state === "cleared") || (b.priority ?? -1) - (a.priority ?? -1)
    || (b.start || "").localeCompare(a.start || ""));
  const tbody = $("alerts");
  // Rows are reused by id: focus stays on the button an operator is on.
  const existing = new Map([...tbody.children].map(tr => [tr.dataset.alertId, tr]));
  const next = rows.slice(0, 300).map(a => {
    const tr = existing.get(a.alert_id) || document.createElement("tr");
    fillRow(tr, a);
    return tr;
  });
  next.forEach((tr, i) => { if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null); });
  while (tbody.children.length > next.length) tbody.lastChild.remove();
  $("alerts-empty").hidden = rows.length > 0;
  $("open-count").querySelector("b").textContent = rows.filter(a => a.state !== "cleared").length;
}

function fillRow(tr, a) {
  const key = [a.state, a.updated, a.assigned_to, a.acknowledged_by, a.priority].join("|");
  if (tr.dataset.key === key) return;
  tr.dataset.key = key;
  tr.dataset.alertId = a.alert_id;
  tr.dataset.equipment = a.equipement_id;
  tr.dataset.rule = a.rule;
  tr.dataset.state = a.state;
  tr.className = a.severity + (a.state === "cleared" ? " cleared" : "");
  const who = a.state === "acknowledged" || a.assigned_to
    ? [a.acknowledged_by && ("par " + a.acknowledged_by), a.assigned_to && ("→ " + a.assigned_to)].filter(Boolean).join(" ") : "";
  const cells = [
    [fmtTime(a.start), "cell-start"], [a.equipement_id, "cell-eq"], [(a.priority_band ? a.priority_band + " · " : "") + (SEVERITIES[a.severity] || a.severity), "sev " + a.severity],
    [a.reason + (a.comment ? " — « " + a.comment + " »" : ""), "cell-reason"],
    [STATES[a.state] || a.state, "state " + a.state], [a.model_version, "cell-model"],
  ];
  tr.replaceChildren();
  for (const [text, cls] of cells) {
    const td = document.createElement("td");
    td.className = cls; td.title = text + (cls.startsWith("state") && who ? " " + who : "");
    if (cls === "cell-eq") {
      // The equipment opens its chart (a button: reachable with Tab, Enter/Space).
      const b = button(text, "eq-link", "Afficher la télémétrie de " + text, () => select(a.equipement_id, true));
      td.appendChild(b);
    } else td.textContent = text;
    tr.appendChild(td);
  }
  const td = document.createElement("td");
  const box = document.createElement("div"); box.className = "actions";
  const label = `${a.equipement_id} (${fmtTime(a.start)})`;
  box.appendChild(button("Dossier", "act-open", "Ouvrir le dossier de l'alerte " + label, () => openCase(a.alert_id)));
  if (a.state === "open") box.appendChild(button("Acquitter", "act-ack", "Acquitter l'alerte " + label, () => openAck(a.alert_id)));
  if (a.state !== "cleared") {
    box.appendChild(button("Assigner", "act-assign", "Assigner l'alerte " + label, () => openAssign(a.alert_id)));
    box.appendChild(button("Lever", "act-clear", "Lever l'alerte " + label, () => clearAlert(a.alert_id)));
  }
  td.appendChild(box); tr.appendChild(td);
}

function button(text, cls, aria, onClick) {
  const b = document.createElement("button");
  b.type = "button"; b.textContent = text; b.className = cls; b.setAttribute("aria-label", aria);
  b.addEventListener("click", onClick);
  return b;
}

async function act(id, action, body) {
  const a = await api(`/api/alerts/${encodeURIComponent(id)}/${action}`, { method: "POST", body: JSON.stringify(body) });
  if (upsert(a)) renderAlerts();
  return a;
}

for (const d of document.querySelectorAll("dialog")) {
  d.querySelector("[data-close]")?.addEventListener("click", () => d.close());
}

let ackId = "";
function openAck(id) {
  ackId = id;
  const a = alerts.get(id);
  $("ack-what").textContent = a ? `${a.equipement_id} — ${a.reason}` : id;
  $("ack-by").value = user(); $("ack-comment").value = ""; $("ack-error").textContent = "";
  $("ack-dialog").showModal();
  (user() ? $("ack-comment") : $("ack-by")).focus();
}
$("ack-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const by = $("ack-by").value.trim();
  localStorage.setItem("proact-user", by);
  try { await act(ackId, "ack", { by, comment: $("ack-comment").value.trim() }); $("ack-dialog").close(); }
  catch (err) { $("ack-error").textContent = err.message; }
});

let assignId = "";
async function openAssign(id) {
  assignId = id;
  const a = alerts.get(id);
  $("assign-what").textContent = a ? `${a.equipement_id} — ${a.reason}` : id;
  $("assign-by").value = user(); $("assign-comment").value = ""; $("assign-error").textContent = "";
  $("assign-mode").replaceChildren();
  $("assign-dialog").showModal();
  await loadTechs("");
}
async function loadTechs(mode) {
  const box = $("assign-techs");
  [...box.querySelectorAll("label, p")].forEach(n => n.remove());
  try {
    const s = await api(`/api/alerts/${encodeURIComponent(assignId)}/technicians` + (mode ? "?failure_mode=" + encodeURIComponent(mode) : ""));
    const sel = $("assign-mode");
    if (!sel.options.length) {
      sel.appendChild(new Option("Modes probables", ""));
      for (const m of s.failure_modes) sel.appendChild(new Option(`${m.name} — ${m.component} (IPR ${m.rpn}, ${m.skill || "?"})${m.likely ? " ★" : ""}`, m.code));
    }
    s.technicians.forEach((t, i) => {
      const l = document.createElement("label");
      if (!t.matching.length) l.className = "nomatch";
      const r = document.createElement("input");
      r.type = "radio"; r.name = "tech"; r.value = t.technician_id; r.checked = i === 0;
      const load = t.load_pct == null ? "charge ?" : `charge ${Math.round(t.load_pct)} %`;
      const span = document.createElement("span");
      span.textContent = `${t.technician_id} — ${t.name}`;
      const small = document.createElement("small");
      small.textContent = `${t.skills.join(", ")} · ${t.open_assignments} en cours · ${load}` + (t.matching.length ? "" : " · compétence non requise");
      span.appendChild(small);
      l.append(r, span);
      box.appendChild(l);
    });
    if (!s.technicians.length) { const p = document.createElement("p"); p.textContent = "Aucun technicien dans les données de charge."; box.appendChild(p); }
  } catch (err) { $("assign-error").textContent = err.message; }
}
$("assign-mode").addEventListener("change", (e) => loadTechs(e.target.value));
$("assign-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const tech = document.querySelector("#assign-techs input[name=tech]:checked");
  if (!tech) { $("assign-error").textContent = "Choisissez un technicien."; return; }
  const by = $("assign-by").value.trim();
  localStorage.setItem("proact-user", by);
  try { await act(assignId, "assign", { by, technician_id: tech.value, comment: $("assign-comment").value.trim() }); $("assign-dialog").close(); }
  catch (err) { $("assign-error").textContent = err.message; }
});

async function clearAlert(id) {
  try { await act(id, "clear", { by: user(), comment: "" }); }
  catch (err) { alert("Impossible de lever l'alerte : " + err.message); }
}

// ---- live feed ---------------------------------------------------------------------------

let ws = null;
async function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const qs = new URLSearchParams();
  if (lastEventId) qs.set("after", lastEventId);
  // The token never goes in a URL: it buys a single-use ticket for this connection.
  try {
    qs.set("ticket", (await api("/api/ws-ticket", { method: "POST" })).ticket);
  } catch (e) {
    $("conn").textContent = "reconnexion…"; $("conn").className = "";
    setTimeout(connect, e.auth ? 5000 : 1000);
    return;
  }
  ws = new WebSocket(`${proto}//${location.host}/ws/alerts?${qs}`);
  const conn = $("conn");
  let pending = false;
  ws.onopen = () => {
    conn.textContent = "en direct"; conn.className = "live";
    // Notices have no resume: what was missed while disconnected is reloaded.
    document.dispatchEvent(new CustomEvent("proact:notice", { detail: { type: "work_orders_resync" } }));
  };
  ws.onmessage = (m) => {
    const ev = JSON.parse(m.data);
    if (ev.type !== "alert") { document.dispatchEvent(new CustomEvent("proact:notice", { detail: ev })); return; }
    lastEventId = ev.event_id;
    if (!registryModel && ev.alert.model_version) $("model").querySelector("b").textContent = ev.alert.model_version;
    if (upsert(ev.alert) && !pending) {
      // One render per frame however many events arrive.
      pending = true;
      requestAnimationFrame(() => { pending = false; renderAlerts(); });
    }
    if (ev.alert.equipement_id === selected) scheduleChart();
    scheduleFleet();
  };
  ws.onclose = (e) => {
    conn.textContent = e.code === 4008 ? "rattrapage…" : "reconnexion…"; conn.className = "";
    // The gateway refuses the upgrade without a valid token: ask for it once.
    setTimeout(() => fetchAlerts().catch(() => {}).finally(connect), 1000);
  };
}

async function fetchAlerts() {
  const r = await api("/api/alerts?limit=300");
  for (const a of r.alerts) upsert(a);
  // Follow the feed from the position the list is at least as new as: nothing is missed.
  if (!lastEventId && r.last_event_id) lastEventId = r.last_event_id;
  renderAlerts();
}

// ---- fleet -------------------------------------------------------------------------------

let fleetTimer = null;
function scheduleFleet() { if (!fleetTimer) fleetTimer = setTimeout(() => { fleetTimer = null; loadFleet(); }, 400); }

async function loadFleet() {
  try {
    const r = await api("/api/equipment");
    equipment = r.equipment;
    renderFleet();
    $("fleet-sub").textContent = `${equipment.length} équipements · muet après ${r.silent_after_s} s`;
  } catch (err) { $("fleet-sub").textContent = "indisponible : " + err.message; }
}

function renderFleet() {
  const box = $("fleet");
  const existing = new Map([...box.children].map(b => [b.dataset.id, b]));
  equipment.forEach((e, i) => {
    let b = existing.get(e.equipement_id);
    if (!b) {
      b = document.createElement("button");
      b.type = "button"; b.className = "tile"; b.dataset.id = e.equipement_id;
      b.innerHTML = '<span class="id"></span><span class="st"></span><span class="meta"></span>';
      b.addEventListener("click", () => select(e.equipement_id, false));
    }
    b.className = "tile " + e.status;
    b.querySelector(".id").textContent = e.equipement_id;
    b.querySelector(".st").textContent = STATUS[e.status] + (e.open_alerts ? ` (${e.open_alerts})` : "");
    b.querySelector(".meta").textContent = [e.equipment_type, e.last_reading ? "lu " + fmtTime(e.last_reading) : "aucune lecture"].filter(Boolean).join(" · ");
    b.setAttribute("aria-pressed", String(e.equipement_id === selected));
    b.setAttribute("aria-label", `${e.equipement_id} : ${STATUS[e.status]}${e.open_alerts ? ", " + e.open_alerts + " alerte(s) ouverte(s)" : ""}`);
    if (box.children[i] !== b) box.insertBefore(b, box.children[i] || null);
  });
  while (box.children.length > equipment.length) box.lastChild.remove();
  const sel = $("chart-select");
  const ids = equipment.map(e => e.equipement_id);
  if (sel.options.length !== ids.length + 1) {
    sel.replaceChildren(new Option("—", ""), ...ids.map(id => new Option(id, id)));
  }
  if (!selected && ids.length) select(ids[0], false);
  sel.value = selected;
}

function select(id, scroll) {
  selected = id;
  localStorage.setItem("proact-equipment", id);
  $("chart-select").value = id;
  for (const b of $("fleet").children) b.setAttribute("aria-pressed", String(b.dataset.id === id));
  loadChart();
  if (scroll) $("chart-panel").scrollIntoView({ block: "nearest" });
}
$("chart-select").addEventListener("change", (e) => select(e.target.value, false));
$("chart-window").addEventListener("change", () => loadChart());

// ---- chart -------------------------------------------------------------------------------

let chartTimer = null;
function scheduleChart() { if (!chartTimer) chartTimer = setTimeout(() => { chartTimer = null; loadChart(); }, 700); }

const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, text) {
  const n = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text != null) n.textContent = text;
  return n;
}

async function loadChart() {
  const svg = $("chart"), msg = $("chart-msg");
  $("chart-eq").textContent = selected || "—";
  if (!selected) { svg.replaceChildren(); msg.textContent = "Choisissez un équipement."; return; }
  const minutes = $("chart-window").value;
  try {
    const d = await api(`/api/equipment/${encodeURIComponent(selected)}/telemetry?minutes=${minutes}`);
    if (d.equipement_id !== selected) return;
    draw(d);
    msg.textContent = d.points.length ? "" : "Aucune lecture sur la période.";
  } catch (err) { svg.replaceChildren(); msg.textContent = "Historique indisponible : " + err.message; }
}

function draw(d) {
  const W = 900, H = 300, L = 48, R = 52, T = 12, B = 28;
  const svg = $("chart");
  const nodes = [];
  const x = (t) => L + (t - d.from) / Math.max(1, d.to - d.from) * (W - L - R);
  const range = (vals, pad) => {
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const p = (hi - lo) * pad; return [lo - p, hi + p];
  };
  const [t0, t1] = range(d.points.map(p => p.temperature), 0.08);
  const [v0, v1] = range(d.points.map(p => p.vibration), 0.08);
  const yT = (v) => T + (1 - (v - t0) / (t1 - t0)) * (H - T - B);
  const yV = (v) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);
  // Alert spans first, under the lines.
  for (const a of d.alerts) {
    const x0 = Math.max(L, x(a.start)), x1 = Math.min(W - R, x(a.end || d.to));
    if (x1 < L || x0 > W - R) continue;
    const color = a.severity === "critical" ? "198,40,40" : a.severity === "warning" ? "180,83,9" : "21,101,192";
    nodes.push(el("rect", { x: x0, y: T, width: Math.max(3, x1 - x0), height: H - T - B, fill: `rgba(${color},.16)`, stroke: `rgba(${color},.55)`, "stroke-dasharray": "3 3", "data-alert-id": a.alert_id }));
    nodes.push(el("text", { x: x0 + 4, y: T + 14, style: `fill:rgb(${color})` }, SEVERITIES[a.severity] || a.severity));
  }
  // Axes and grid.
  for (let i = 0; i <= 4; i++) {
    const y = T + i * (H - T - B) / 4;
    nodes.push(el("line", { x1: L, x2: W - R, y1: y, y2: y, stroke: "#e3e6ea" }));
    nodes.push(el("text", { x: L - 6, y: y + 4, "text-anchor": "end", style: "fill:#c62828" }, (t1 - i * (t1 - t0) / 4).toFixed(1)));
    nodes.push(el("text", { x: W - R + 6, y: y + 4, style: "fill:#1565c0" }, (v1 - i * (v1 - v0) / 4).toFixed(1)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = d.from + i * (d.to - d.from) / 4;
    const label = new Date(t).toLocaleTimeString("fr-FR", { hour: "2-digit", minute: "2-digit" });
    nodes.push(el("text", { x: x(t), y: H - 8, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" }, label));
  }
  const path = (f) => d.points.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + " " + f(p).toFixed(1)).join("");
  if (d.points.length) {
    nodes.push(el("path", { d: path(p => yV(p.vibration)), fill: "none", stroke: "#1565c0", "stroke-width": 1.5, opacity: .8 }));
    nodes.push(el("path", { d: path(p => yT(p.temperature)), fill: "none", stroke: "#c62828", "stroke-width": 2 }));
    if (d.points.length < 80) for (const p of d.points) nodes.push(el("circle", { cx: x(p.t), cy: yT(p.temperature), r: 2.5, fill: "#c62828" }));
  }
  svg.replaceChildren(...nodes);
}

// ---- header ------------------------------------------------------------------------------

let registryModel = "";
async function loadStatus() {
  try {
    const s = await api("/api/status");
    const active = s.model.active.map(m => `${m.name} ${m.version}`).join(", ");
    registryModel = active;
    $("model").querySelector("b").textContent = active || s.model.last_alert_model_version || "règles";
    $("model").title = "Modèle utilisé par la détection" + (s.model.registry_error ? " (registre : " + s.model.registry_error + ")" : "");
    const r = s.ingest.readings_per_s;
    $("rate").querySelector("b").textContent = r == null ? "–" : r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString("fr-FR");
  } catch (err) { /* the header keeps its last values */ }
}

let started = false;
async function start() {
  try { await fetchAlerts(); }
  catch (err) { if (err.auth) return; /* the list failed (database?): the live feed still works */ }
  if (started) return;
  started = true;
  connect();
  loadFleet(); loadStatus();
  setInterval(loadFleet, 10000);
  setInterval(loadStatus, 5000);
  setInterval(() => { if (selected) loadChart(); }, 15000);
}
start();
