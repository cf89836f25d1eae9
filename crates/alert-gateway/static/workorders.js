// Work-order panels: the case dialog of an alert (its briefing, then the work order created
// from it, started and closed with its outcome), the open orders per technician kept live
// from the WebSocket notices, and the outcomes per model version beside the model in use.
// Uses the page's globals ($, api, alerts, button, user, fmtTime) and renderBriefing; the
// rest stays inside this file.
(() => {
"use strict";

const WO_STATES = { planned: "planifié", in_progress: "en cours", done: "clos", cancelled: "annulé" };
const OUTCOMES = {
  failure_confirmed: "défaillance confirmée", false_alarm: "fausse alarme", no_fault_found: "aucun défaut constaté",
};
const openOrders = new Map();     // work_order_id → order (planned or in progress)
let caseState = null;             // { alertId, order, modes } of the open dialog

const isOpen = (w) => w.state === "planned" || w.state === "in_progress";

const node = (tag, cls, text) => {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text != null) n.textContent = text;
  return n;
};

function field(label, input) {
  const l = node("label", null, label + " ");
  l.appendChild(input);
  return l;
}

function input(id, type, attrs = {}) {
  const i = document.createElement(type === "textarea" ? "textarea" : "input");
  if (type !== "textarea") i.type = type;
  i.id = id;
  for (const [k, v] of Object.entries(attrs)) i.setAttribute(k, v);
  return i;
}

function selectBox(id, options, value) {
  const s = document.createElement("select");
  s.id = id;
  for (const [v, text] of options) s.appendChild(new Option(text, v));
  if (value != null) s.value = value;
  return s;
}

/// `datetime-local` value of a date in local time.
function localInput(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/// A number field's value, or an error naming the field.
function hours(id, label, required) {
  const raw = $(id).value.trim();
  if (!raw) { if (required) throw new Error(`${label} : obligatoire`); return null; }
  const h = Number(raw.replace(",", "."));
  if (!Number.isFinite(h) || h < 0) throw new Error(`${label} : « ${raw} » n'est pas un nombre d'heures positif`);
  return h;
}

function orderSummary(w) {
  return [
    `${w.work_order_id} — ${WO_STATES[w.state] || w.state}`,
    `${w.priority_band} (${Math.round(w.priority)})`,
    w.failure_mode_code && "mode " + w.failure_mode_code,
    w.technician_id && "technicien " + w.technician_id,
    w.planned_start && "prévu " + fmtTime(w.planned_start),
    w.estimated_duration_h && `${w.estimated_duration_h} h estimées`,
    w.outcome && "résultat : " + (OUTCOMES[w.outcome] || w.outcome),
  ].filter(Boolean).join(" · ");
}

// ---- the case dialog ---------------------------------------------------------------------

function caseError(msg) { $("case-error").textContent = msg || ""; }

/// Opens the case of an alert: briefing, and its work order (or the form to create one).
async function openCase(alertId) {
  const a = alerts.get(alertId);
  const d = $("case-dialog");
  d.replaceChildren();
  const box = node("div", "case");
  const title = node("h3", null, a ? `${a.equipement_id} — ${a.reason}` : alertId); title.id = "case-title";
  const sub = node("p", "sub", a ? `${a.priority_band || "?"} · priorité ${a.priority ?? "?"} · début ${fmtTime(a.start)}` : "");
  const brief = node("div", "briefing"); brief.id = "briefing";
  const order = node("div", "case-order"); order.id = "case-order";
  const err = node("p", "error"); err.id = "case-error"; err.setAttribute("role", "alert");
  const close = button("Fermer", "case-close", "Fermer le dossier", () => d.close());
  const buttons = node("div", "buttons"); buttons.appendChild(close);
  box.append(title, sub, brief, node("h4", null, "Ordre de travail"), order, err, buttons);
  d.appendChild(box);
  caseState = { alertId, order: null, modes: [], priority: a?.priority };
  if (!d.open) d.showModal();
  close.focus();
  renderBriefing(brief, alertId);
  order.replaceChildren(node("p", "empty", "Chargement…"));
  try {
    const [list, suggest] = await Promise.all([
      api(`/api/work-orders?equipement_id=${encodeURIComponent(a ? a.equipement_id : "")}&limit=200`),
      api(`/api/work-orders/suggest?alert_id=${encodeURIComponent(alertId)}`),
    ]);
    if (caseState?.alertId !== alertId) return;
    caseState.modes = suggest.modes;
    caseState.suggest = suggest;
    const mine = list.work_orders.filter(w => w.alert_id === alertId && w.state !== "cancelled");
    caseState.order = mine.find(isOpen) || mine[0] || null;
    renderOrder();
  } catch (err) { order.replaceChildren(); caseError(err.message); }
}

/// Opens the case of a work order from the list (by its alert when it has one).
async function openOrder(id) {
  const w = openOrders.get(id);
  if (w?.alert_id) return openCase(w.alert_id);
  const d = $("case-dialog");
  d.replaceChildren();
  const box = node("div", "case");
  const title = node("h3", null, `${w ? w.equipement_id : ""} — ordre ${id}`); title.id = "case-title";
  const order = node("div", "case-order"); order.id = "case-order";
  const err = node("p", "error"); err.id = "case-error"; err.setAttribute("role", "alert");
  const buttons = node("div", "buttons");
  buttons.appendChild(button("Fermer", "case-close", "Fermer le dossier", () => d.close()));
  box.append(title, order, err, buttons);
  d.appendChild(box);
  caseState = { alertId: "", order: w, modes: [] };
  if (!d.open) d.showModal();
  try {
    const s = await api(`/api/work-orders/suggest?equipement_id=${encodeURIComponent(w.equipement_id)}`);
    caseState.modes = s.modes;
  } catch (err) { caseError(err.message); }
  renderOrder();
}

function modeOptions(first) {
  return [["", first], ...caseState.modes.map(m =>
    [m.failure_mode_code, `${m.failure_mode} — ${m.component} (IPR ${m.rpn})${m.matches_signal ? " ★" : ""}`])];
}

function renderOrder() {
  const box = $("case-order");
  if (!box) return;
  caseError("");
  const w = caseState.order;
  if (!w) return renderCreateForm(box);
  const summary = node("p", "wo-summary", orderSummary(w));
  summary.id = "case-order-summary";
  summary.dataset.state = w.state;
  summary.dataset.workOrderId = w.work_order_id;
  box.replaceChildren(summary);
  if (w.state === "planned") {
    const by = input("wo-start-by", "text", { maxlength: 200, autocomplete: "name" }); by.value = user();
    const form = node("form", "wo-form"); form.id = "wo-start-form";
    const go = node("button", "primary", "Démarrer"); go.type = "submit"; go.id = "wo-start";
    const cancel = button("Annuler l'ordre", "wo-cancel", "Annuler l'ordre de travail", () => change("cancel"));
    const row = node("div", "buttons"); row.append(cancel, go);
    form.append(field("Par", by), row);
    form.addEventListener("submit", (e) => { e.preventDefault(); change("start"); });
    box.appendChild(form);
  } else if (w.state === "in_progress") {
    renderCloseForm(box, w);
  }
}

function renderCreateForm(box) {
  const s = caseState.suggest || {};
  const form = node("form", "wo-form"); form.id = "wo-create-form";
  const mode = selectBox("wo-mode", modeOptions("— mode à préciser —"), s.preselected || "");
  const prio = input("wo-priority", "number", { min: 0, max: 100, step: "0.1", required: "" });
  prio.value = caseState.priority ?? s.priority ?? "";
  const tech = input("wo-tech", "text", { required: "", maxlength: 100, list: "wo-techs", autocomplete: "off" });
  const techs = document.createElement("datalist"); techs.id = "wo-techs";
  const start = input("wo-planned", "datetime-local", { required: "" });
  start.value = localInput(new Date());
  const dur = input("wo-duration", "text", { inputmode: "decimal", required: "", placeholder: "ex. 2,5" });
  const desc = input("wo-description", "textarea", { rows: 2, maxlength: 1000 });
  const by = input("wo-by", "text", { required: "", maxlength: 200, autocomplete: "name" }); by.value = user();
  const submit = node("button", "primary", "Créer l'ordre de travail"); submit.type = "submit"; submit.id = "wo-create";
  const row = node("div", "buttons"); row.appendChild(submit);
  form.append(
    field("Mode de défaillance (AMDEC)", mode), field("Priorité (0–100)", prio), field("Technicien", tech), techs,
    field("Début prévu", start), field("Durée estimée (h)", dur), field("Description", desc), field("Par", by), row,
  );
  box.replaceChildren(form);
  if (caseState.alertId) {
    api(`/api/alerts/${encodeURIComponent(caseState.alertId)}/technicians`).then((r) => {
      for (const t of r.technicians) techs.appendChild(new Option(`${t.name} — ${t.skills.join(", ")}`, t.technician_id));
    }).catch(() => { /* the field still takes an id typed by hand */ });
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    caseError("");
    try {
      const when = new Date($("wo-planned").value);
      if (Number.isNaN(when.getTime())) throw new Error("Début prévu : date invalide");
      const who = $("wo-by").value.trim();
      localStorage.setItem("proact-user", who);
      const body = {
        alert_id: caseState.alertId,
        failure_mode_code: $("wo-mode").value,
        priority: Number($("wo-priority").value),
        technician_id: $("wo-tech").value.trim(),
        planned_start: when.toISOString(),
        estimated_duration_h: hours("wo-duration", "Durée estimée", true),
        description: $("wo-description").value.trim(),
        by: who,
      };
      const w = await api("/api/work-orders", { method: "POST", body: JSON.stringify(body) });
      caseState.order = w;
      keep(w);
      renderOrder();
      $("wo-start")?.focus();
    } catch (err) { caseError(err.message); }
  });
}

function renderCloseForm(box, w) {
  const form = node("form", "wo-form"); form.id = "wo-close-form";
  const outcome = selectBox("wo-outcome", [["", "— choisir —"], ...Object.entries(OUTCOMES)], "");
  outcome.required = true;
  const found = selectBox("wo-found", modeOptions("— aucun / inconnu —"), w.failure_mode_code || "");
  const cause = input("wo-cause", "text", { maxlength: 500 });
  const action = input("wo-action", "textarea", { rows: 2, maxlength: 1000 });
  const parts = input("wo-parts", "text", { maxlength: 500 });
  const dur = input("wo-actual", "text", { inputmode: "decimal", required: "", placeholder: "ex. 1,5" });
  const comment = input("wo-comment", "textarea", { rows: 2, maxlength: 500 });
  const by = input("wo-close-by", "text", { required: "", maxlength: 200, autocomplete: "name" }); by.value = user();
  const submit = node("button", "primary", "Clôturer"); submit.type = "submit"; submit.id = "wo-close";
  const row = node("div", "buttons"); row.appendChild(submit);
  form.append(
    field("Résultat", outcome), field("Mode trouvé", found), field("Cause trouvée", cause), field("Action réalisée", action),
    field("Pièces", parts), field("Durée réelle (h)", dur), field("Commentaire", comment), field("Par", by), row,
  );
  box.appendChild(form);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    caseError("");
    try {
      const who = $("wo-close-by").value.trim();
      localStorage.setItem("proact-user", who);
      const body = {
        by: who,
        outcome: $("wo-outcome").value,
        found_failure_mode_code: $("wo-found").value,
        cause_found: $("wo-cause").value.trim(),
        action_taken: $("wo-action").value.trim(),
        parts: $("wo-parts").value.trim(),
        actual_duration_h: hours("wo-actual", "Durée réelle", true),
        comment: $("wo-comment").value.trim(),
      };
      const done = await api(`/api/work-orders/${encodeURIComponent(w.work_order_id)}/close`,
        { method: "POST", body: JSON.stringify(body) });
      caseState.order = done;
      keep(done);
      renderOrder();
      loadOutcomes();
    } catch (err) { caseError(err.message); }
  });
}

async function change(action) {
  const w = caseState.order;
  caseError("");
  try {
    const by = ($("wo-start-by")?.value || user()).trim();
    const next = await api(`/api/work-orders/${encodeURIComponent(w.work_order_id)}/${action}`,
      { method: "POST", body: JSON.stringify({ by, comment: "" }) });
    caseState.order = next;
    keep(next);
    renderOrder();
    $("wo-outcome")?.focus();
  } catch (err) { caseError(err.message); }
}

// ---- open orders per technician ----------------------------------------------------------

function buildPanel() {
  const p = $("workorders-panel");
  const h = node("h2"); h.id = "wo-title";
  h.append("Ordres de travail ouverts ", node("span", "sub", "par technicien, en direct"));
  const sub = node("span", "sub"); sub.id = "wo-sub"; h.appendChild(sub);
  const list = node("div", "wo-techs"); list.id = "wo-list";
  const out = node("div", "wo-outcomes"); out.id = "wo-outcomes";
  p.append(h, list, out);
}

/// Keeps an order in the open list, or drops it once done or cancelled.
function keep(w) {
  const known = openOrders.get(w.work_order_id);
  if (known && (w.updated_at || "") < (known.updated_at || "")) return;
  if (isOpen(w)) openOrders.set(w.work_order_id, w); else openOrders.delete(w.work_order_id);
  scheduleOrders();
}

let ordersPending = false;
function scheduleOrders() {
  if (ordersPending) return;
  ordersPending = true;
  requestAnimationFrame(() => { ordersPending = false; renderOrders(); });
}

function renderOrders() {
  const box = $("wo-list");
  const byTech = new Map();
  const sorted = [...openOrders.values()].sort((a, b) => b.priority - a.priority
    || (a.planned_start || "").localeCompare(b.planned_start || ""));
  for (const w of sorted) {
    const t = w.technician_id || "non assigné";
    if (!byTech.has(t)) byTech.set(t, []);
    byTech.get(t).push(w);
  }
  $("wo-sub").textContent = ` · ${openOrders.size} ouvert(s)`;
  if (!byTech.size) { box.replaceChildren(node("p", "empty", "Aucun ordre de travail ouvert.")); return; }
  const groups = [...byTech.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([tech, list]) => {
    const g = node("div", "wo-tech"); g.dataset.technician = tech;
    g.appendChild(node("h3", null, `${tech} (${list.length})`));
    const ul = node("ul");
    for (const w of list) {
      const li = node("li", "wo-item " + w.state);
      li.dataset.workOrderId = w.work_order_id;
      li.dataset.state = w.state;
      const label = `${w.priority_band} · ${w.equipement_id} · ${WO_STATES[w.state]}`
        + (w.planned_start ? " · " + fmtTime(w.planned_start) : "");
      li.appendChild(button(label, "wo-open", `Ouvrir l'ordre ${w.work_order_id} (${label})`, () => openOrder(w.work_order_id)));
      ul.appendChild(li);
    }
    g.appendChild(ul);
    return g;
  });
  box.replaceChildren(...groups);
}

async function loadOrders() {
  try {
    const [planned, running] = await Promise.all([
      api("/api/work-orders?state=planned&limit=1000"), api("/api/work-orders?state=in_progress&limit=1000"),
    ]);
    openOrders.clear();
    for (const w of [...planned.work_orders, ...running.work_orders]) openOrders.set(w.work_order_id, w);
    renderOrders();
  } catch (err) { if (!err.auth) $("wo-sub").textContent = " · indisponible : " + err.message; }
}

document.addEventListener("proact:notice", (e) => {
  const ev = e.detail;
  if (ev.type === "work_orders_resync") { loadOrders(); loadOutcomes(); return; }
  if (ev.type !== "work_order" || !ev.event?.work_order) return;
  const w = ev.event.work_order;
  keep(w);
  if (w.state === "done") loadOutcomes();
  // Another operator's change to the order on screen.
  if (caseState?.order?.work_order_id === w.work_order_id && w.state !== caseState.order.state
      && (w.updated_at || "") >= (caseState.order.updated_at || "")) {
    caseState.order = w;
    renderOrder();
  }
});

// ---- outcomes per model version ----------------------------------------------------------

const pct = (p) => p == null ? "–" : Math.round(p * 100) + " %";

async function loadOutcomes() {
  let r;
  try { r = await api("/api/work-orders/outcomes-by-model"); }
  catch (err) { $("wo-outcomes").textContent = "Retours par modèle indisponibles : " + err.message; return; }
  const box = $("wo-outcomes");
  const h = node("h3", null, "Retours terrain par version de modèle");
  if (!r.versions.length) { box.replaceChildren(h, node("p", "empty", "Aucun ordre clos avec un résultat.")); }
  else {
    const t = node("table"); t.id = "wo-outcomes-table";
    const head = node("tr");
    for (const c of ["Modèle", "Confirmées", "Fausses alarmes", "Aucun défaut", "Précision"]) head.appendChild(node("th", null, c));
    t.appendChild(node("thead")).appendChild(head);
    const body = t.appendChild(node("tbody"));
    for (const v of r.versions) {
      const tr = node("tr"); tr.dataset.model = v.model_version;
      for (const c of [v.model_version || "règles", v.failure_confirmed, v.false_alarm, v.no_fault_found, pct(v.precision)]) {
        tr.appendChild(node("td", null, String(c)));
      }
      body.appendChild(tr);
    }
    box.replaceChildren(h, t);
  }
  // Beside the model in use (the header names it; the versions are matched on their name).
  const inUse = $("model").querySelector("b").textContent;
  const v = r.versions.find(v => v.model_version && inUse.includes(v.model_version));
  $("model-outcomes").textContent = v
    ? `Retours : ${v.failure_confirmed} conf. · ${v.false_alarm} fausses · ${v.no_fault_found} sans défaut · précision ${pct(v.precision)}`
    : "";
}

buildPanel();
loadOrders();
loadOutcomes();
setInterval(loadOutcomes, 30000);

window.openCase = openCase;
})();
