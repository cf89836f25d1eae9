// Alert briefing panel: what the knowledge base says about an alert (AMDEC failure modes
// consistent with its signal, similar past interventions, technicians who know the
// equipment), each line with its source so an operator can check it.
// Uses the page's global api; exports renderBriefing.
(() => {
"use strict";

const SIGNALS = {
  temperature: "température", vibration: "vibration", pressure: "pression", electrical: "électrique",
  flow: "débit", "no data": "absence de données", other: "autre",
};

/// The citation of a knowledge line: AMDEC row (file and row) or intervention id.
function citation(hit) {
  const row = hit.row == null ? "?" : hit.row;
  if (hit.source === "amdec") return typeof row === "number" ? `AMDEC ${hit.file}, ligne ${row}` : `AMDEC ${row}`;
  if (hit.source === "work_order") return `ordre de travail ${row}`;
  return `intervention ${row}`;
}

function node(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text != null) n.textContent = text;
  return n;
}

function line(hit, parts) {
  const li = node("li");
  li.dataset.source = hit.source;
  li.appendChild(node("span", "brief-text", parts.filter(Boolean).join(" · ")));
  li.appendChild(node("span", "cite", citation(hit)));
  return li;
}

function modeLine(m) {
  return line(m, [
    `${m.failure_mode || m.failure_mode_code} (${m.failure_mode_code || "?"})`,
    m.component && "composant : " + m.component,
    m.cause && "cause : " + m.cause,
    m.effect && "effet : " + m.effect,
    m.recommended_action && "action recommandée : " + m.recommended_action,
    m.rpn != null && "IPR " + m.rpn,
  ]);
}

function interventionLine(h) {
  const when = h.started_at ? new Date(h.started_at).toLocaleDateString("fr-FR") : "";
  return line(h, [
    when, h.intervention_type, h.failure_mode_code || h.failure_mode, h.description || h.action,
    h.technician_id && "par " + h.technician_id, h.duration_h != null && `${h.duration_h} h`,
  ]);
}

function techLine(t) {
  const li = node("li");
  li.dataset.source = "intervention";
  li.appendChild(node("span", "brief-text",
    `${t.technician_id} · ${t.on_this_equipment} intervention(s) sur cet équipement · ${t.on_this_type} sur ce type`));
  li.appendChild(node("span", "cite", "historique des interventions"));
  return li;
}

function listSection(title, id, items, render, empty) {
  const box = node("div", "brief-section");
  box.appendChild(node("h4", null, title));
  if (!items.length) { box.appendChild(node("p", "empty", empty)); return box; }
  const ul = node("ul", "brief-list"); ul.id = id;
  for (const it of items) ul.appendChild(render(it));
  box.appendChild(ul);
  return box;
}

/// Fills `box` with the briefing of `alertId`; returns it (null when unavailable).
async function renderBriefing(box, alertId) {
  box.replaceChildren(node("p", "empty", "Chargement du briefing…"));
  let b;
  try { b = await api(`/api/alerts/${encodeURIComponent(alertId)}/briefing`); }
  catch (err) { box.replaceChildren(node("p", "error", "Briefing indisponible : " + err.message)); return null; }
  const head = node("p", "sub",
    `Signal : ${SIGNALS[b.signal] || b.signal}` + (b.equipment_type ? ` · type ${b.equipment_type}` : ""));
  box.replaceChildren(
    head,
    listSection("Modes de défaillance (AMDEC) cohérents avec le signal", "briefing-modes", b.failure_modes, modeLine,
      "Aucun mode AMDEC ne correspond à ce signal pour cet équipement."),
    listSection("Interventions passées similaires", "briefing-interventions", b.similar_interventions, interventionLine,
      "Aucune intervention similaire dans l'historique."),
    listSection("Techniciens qui connaissent l'équipement", "briefing-techs", b.technicians, techLine,
      "Aucun technicien dans l'historique de cet équipement."),
  );
  return b;
}

window.renderBriefing = renderBriefing;
})();
