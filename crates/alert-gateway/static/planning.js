// Vue « Planning des techniciens » : techniciens × jours de la semaine, un ordre = une barre
// colorée par priorité, surcharge en rouge, l'alerte à l'origine d'une replanification en lien.
// Données : GET /api/planning/view (POST /api/planning/plan quand aucun plan n'existe encore).
// Rafraîchie à chaque ordre de travail notifié (événement « proact:work-order » ou minuterie).
(() => {
  "use strict";
  const PRIO = { critical: ["critique", "#c62828"], high: ["haute", "#b45309"], medium: ["moyenne", "#1565c0"], low: ["basse", "#5f6b7a"] };
  const DAY = new Intl.DateTimeFormat("fr-FR", { weekday: "short", day: "2-digit", month: "2-digit", timeZone: "UTC" });
  const style = document.createElement("style");
  style.textContent = `
    #planning-panel { grid-column: 1 / -1; }
    #planning-panel .plan-tools { margin-left:auto; display:flex; gap:.5rem; align-items:center; font-weight:400; }
    #plan-wrap { overflow-x:auto; padding:.5rem .8rem; }
    #plan-grid { border-collapse:collapse; width:100%; font-size:.85rem; }
    #plan-grid th, #plan-grid td { border:1px solid var(--line, #e3e6ea); padding:.25rem; vertical-align:top; text-align:left; }
    #plan-grid td.over { background:#fdecea; outline:2px solid #c62828; outline-offset:-2px; }
    #plan-grid .load { display:block; color:var(--muted, #5f6b7a); font-weight:400; font-variant-numeric:tabular-nums; }
    #plan-grid .bar { display:block; margin:.15rem 0; padding:.1rem .35rem; border-radius:3px; color:#fff; border:0;
                      font:inherit; text-align:left; width:100%; cursor:pointer; }
    #plan-grid .bar:focus-visible { outline:3px solid var(--focus, #1565c0); outline-offset:1px; }
    #plan-grid .bar.moved { box-shadow:inset 0 0 0 2px #fff; font-style:italic; }
    #plan-msg, #plan-trigger, #plan-detail { padding:0 .8rem .5rem; margin:0; }
    #plan-trigger:empty, #plan-detail:empty { display:none; }`;
  document.head.appendChild(style);

  const main = document.querySelector("main") || document.body;
  const panel = document.getElementById("planning-panel") || main.appendChild(Object.assign(document.createElement("section"), { id: "planning-panel" }));
  panel.setAttribute("aria-labelledby", "plan-title");
  panel.innerHTML = `
    <h2 id="plan-title">Planning des techniciens <span class="sub" id="plan-week">—</span>
      <span class="plan-tools"><button type="button" id="plan-refresh">Replanifier la semaine</button></span></h2>
    <p id="plan-trigger" role="status" aria-live="polite"></p>
    <div id="plan-wrap"><table id="plan-grid" aria-describedby="plan-msg"></table></div>
    <p id="plan-msg">Chargement du planning…</p>
    <p id="plan-detail" aria-live="polite"></p>`;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  async function call(path, opts = {}) {
    const headers = { "Content-Type": "application/json" };
    const token = localStorage.getItem("proact-token") || "";
    if (token) headers.Authorization = "Bearer " + token;
    const r = await fetch(path, { ...opts, headers });
    const body = await r.json().catch(() => ({}));
    if (r.status === 401 && typeof window.askToken === "function") window.askToken();
    if (!r.ok) { const e = new Error(body.error || "HTTP " + r.status); e.status = r.status; throw e; }
    return body;
  }

  // The ISO week of today; on Saturday and Sunday the coming one (what the supervisor
  // prepares for Monday morning).
  function isoWeek(d = new Date()) {
    const t = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
    if (t.getUTCDay() === 6 || t.getUTCDay() === 0) t.setUTCDate(t.getUTCDate() + (t.getUTCDay() === 6 ? 2 : 1));
    const day = t.getUTCDay() || 7;
    t.setUTCDate(t.getUTCDate() + 4 - day);
    const y = t.getUTCFullYear();
    const w = Math.ceil(((t - Date.UTC(y, 0, 1)) / 86400000 + 1) / 7);
    return `${y}-W${String(w).padStart(2, "0")}`;
  }

  function render({ plan, orders }) {
    const byId = new Map(orders.map((o) => [o.id, o]));
    const moved = new Set((plan.moves || []).map((m) => m.order_id));
    $("plan-week").textContent = `semaine ${plan.week}`;
    const trigger = plan.trigger_alert_id;
    $("plan-trigger").innerHTML = trigger
      ? `Replanifié suite à l'alerte <a href="#alert-${encodeURIComponent(trigger)}" data-alert="${esc(trigger)}">${esc(trigger)}</a> : ${plan.moves.length} ordre(s) déplacé(s).`
      : "";
    const head = `<thead><tr><th scope="col">Technicien</th>${plan.days.map((d) => `<th scope="col">${esc(DAY.format(new Date(d + "T00:00:00Z")))}</th>`).join("")}</tr></thead>`;
    const rows = plan.loads.map((l) => {
      const pct = l.capacity_hours > 0 ? Math.round((100 * l.planned_hours) / l.capacity_hours) : 0;
      const cells = plan.days.map((day, i) => {
        const here = plan.assignments.filter((a) => a.technician_id === l.technician_id && a.day === day);
        const over = (l.day_hours[i] || 0) > (l.day_capacity[i] || 0) + 1e-6;
        const bars = here.map((a) => {
          const o = byId.get(a.order_id) || {};
          const [label, colour] = PRIO[o.priority] || PRIO.medium;
          const text = `${a.order_id} · ${o.equipement_id || ""} · ${a.hours} h`;
          return `<button type="button" class="bar${moved.has(a.order_id) ? " moved" : ""}" style="background:${colour}" data-order="${esc(a.order_id)}"
            data-priority="${esc(o.priority || "medium")}" aria-label="${esc(`${text}, priorité ${label}${a.lateness_days > 0 ? `, ${a.lateness_days} j de retard` : ""}`)}">${esc(text)}</button>`;
        }).join("");
        const hours = `${(l.day_hours[i] || 0).toFixed(1)} / ${(l.day_capacity[i] || 0).toFixed(1)} h`;
        return `<td class="${over ? "over" : ""}" data-day="${esc(day)}"${over ? ` aria-label="surcharge : ${hours}"` : ""}><span class="load">${hours}${over ? " — surcharge" : ""}</span>${bars}</td>`;
      }).join("");
      return `<tr data-technician="${esc(l.technician_id)}"><th scope="row">${esc(l.technician_id)}<span class="load">${pct} %</span></th>${cells}</tr>`;
    }).join("");
    $("plan-grid").innerHTML = head + `<tbody>${rows}</tbody>`;
    const left = plan.unplanned.length ? ` ${plan.unplanned.length} ordre(s) non planifié(s) : ${plan.unplanned.join(", ")}.` : "";
    $("plan-msg").textContent = `${plan.assignments.length} affectation(s), retard pondéré ${plan.weighted_lateness}, écart de charge ${Math.round(plan.load_spread_pct)} %.${left}`;
  }

  async function load(force = false) {
    try {
      let view;
      try {
        if (force) throw Object.assign(new Error("replanifier"), { status: 409 });
        view = await call("/api/planning/view");
      } catch (e) {
        if (e.status !== 409) throw e;
        await call("/api/planning/plan", { method: "POST", body: JSON.stringify({ week: isoWeek() }) });
        view = await call("/api/planning/view");
      }
      render(view);
    } catch (e) {
      $("plan-msg").textContent = `Planning indisponible : ${e.message}`;
    }
  }

  // Enter/Space on a bar (a button) says why the order went there.
  $("plan-grid").addEventListener("click", async (ev) => {
    const bar = ev.target.closest(".bar");
    if (!bar) return;
    try {
      const e = await call(`/api/planning/explain/${encodeURIComponent(bar.dataset.order)}`);
      $("plan-detail").textContent = e.text;
    } catch (err) {
      $("plan-detail").textContent = `Explication indisponible : ${err.message}`;
    }
  });
  // Arrow keys move between bars, as in a grid.
  $("plan-grid").addEventListener("keydown", (ev) => {
    if (!ev.target.classList.contains("bar") || !["ArrowDown", "ArrowUp", "ArrowRight", "ArrowLeft"].includes(ev.key)) return;
    const bars = [...$("plan-grid").querySelectorAll(".bar")];
    const i = bars.indexOf(ev.target) + (ev.key === "ArrowDown" || ev.key === "ArrowRight" ? 1 : -1);
    if (bars[i]) { bars[i].focus(); ev.preventDefault(); }
  });
  $("plan-refresh").addEventListener("click", () => load(true));
  // A work order changed (a critical one re-plans on the gateway): the page's socket handler
  // may dispatch this event; the timer covers pages that do not.
  window.addEventListener("proact:work-order", () => setTimeout(load, 300));
  // The page passes every WebSocket notice that is not an alert as « proact:notice ».
  document.addEventListener("proact:notice", (e) => {
    if (e.detail && (e.detail.type === "work_order" || e.detail.type === "work_orders_resync")) setTimeout(load, 300);
  });
  setInterval(load, 15000);
  load();
})();
