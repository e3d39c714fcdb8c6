// The Leadflow console: four views over the console's JSON API and its server-sent events.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { hot: [], canAnswer: false, offset: 0, answered: new Set() };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function show(view) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== "view-" + view;
  for (const link of document.querySelectorAll("header nav a")) link.classList.toggle("active", link.dataset.view === view);
}

function route() {
  const [view, arg] = (location.hash.slice(1) || "hot").split("/");
  show(view);
  if (view === "contact" && arg) { $("contact-id").value = decodeURIComponent(arg); loadContact(decodeURIComponent(arg)); }
  if (view === "funnel" && !$("funnel-frame").src) $("funnel-frame").src = "/funnel";
}

// -- Hot leads -------------------------------------------------------------------------------
function countdown(respondBy) {
  const left = Math.round((Date.parse(respondBy) - (Date.now() + state.offset)) / 1000);
  const abs = Math.abs(left), h = Math.floor(abs / 3600), m = Math.floor((abs % 3600) / 60), s = abs % 60;
  const text = (h ? h + "h " : "") + String(m).padStart(2, "0") + "m " + String(s).padStart(2, "0") + "s";
  return { left, text: left < 0 ? "overdue " + text : text };
}

function firstTouch(ft) {
  const utm = [ft.utm_source, ft.utm_medium, ft.utm_campaign].filter(Boolean).join(" / ");
  return (ft.source || "(unknown)") + (utm ? " · " + utm : "");
}

async function answer(alert, button) {
  button.disabled = true; button.textContent = "recording…";
  const response = await fetch("/api/answer", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ alert_id: alert.alert_id, contact_id: alert.contact_id }) });
  if (response.ok) { state.answered.add(alert.alert_id); button.textContent = "answered ✓"; }
  else { button.disabled = false; button.textContent = "answered"; alert_(await response.text()); }
}
function alert_(text) { $("hot-error").hidden = false; $("hot-error").textContent = text; }

function renderHot() {
  const rows = $("hot-rows"); rows.replaceChildren();
  for (const a of state.hot) {
    const c = countdown(a.respond_by);
    const reasons = el("td", {}, ...a.reasons.map((r) => el("span", { class: "reason" }, r.event_type + " +" + r.points)));
    const action = el("td", {});
    if (state.canAnswer) {
      const done = state.answered.has(a.alert_id);
      const button = el("button", { class: "answer", "data-alert": a.alert_id }, done ? "answered ✓" : "answered");
      button.disabled = done;
      button.addEventListener("click", () => answer(a, button));
      action.append(button);
    }
    rows.append(el("tr", { class: c.left < 0 ? "overdue" : "", "data-alert": a.alert_id, "data-respond-by": a.respond_by },
      el("td", { class: "countdown" }, c.text),
      el("td", {}, el("a", { href: "#contact/" + encodeURIComponent(a.contact_id) }, a.contact_id)),
      el("td", {}, a.stage), el("td", {}, a.score), reasons, el("td", {}, firstTouch(a.first_touch)), action));
  }
  $("hot-empty").hidden = state.hot.length > 0;
  $("hot-count").textContent = state.hot.length;
}

function tickCountdowns() {
  for (const row of document.querySelectorAll("#hot-rows tr")) {
    const c = countdown(row.dataset.respondBy);
    row.querySelector(".countdown").textContent = c.text;
    row.classList.toggle("overdue", c.left < 0);
  }
}

function onHot(doc) {
  state.hot = doc.alerts; state.canAnswer = doc.can_answer;
  state.offset = Date.parse(doc.server_time) - Date.now();
  if (doc.error) alert_(doc.error); else $("hot-error").hidden = true;
  renderHot();
}

// -- Contact ------------------------------------------------------------------------------------
async function loadContact(id) {
  const body = $("contact-body"); body.replaceChildren(el("p", { class: "muted" }, "loading…"));
  const response = await fetch("/api/contact/" + encodeURIComponent(id));
  const doc = await response.json();
  if (!response.ok) { body.replaceChildren(el("p", { class: "error" }, doc.error)); return; }
  const c = doc.contact || {};
  const list = el("ul", { class: "timeline" });
  for (const entry of doc.timeline || []) {
    const origin = entry.merged_from ? " [" + entry.merged_from + "]" : "";
    if (entry.entry === "alert" || entry.alert_id) {
      list.append(el("li", { class: "alert" }, (entry.occurred_at || "") + "  ALERT " + (entry.type || "became_hot") +
        " respond by " + entry.respond_by + (entry.acknowledged_at ? " · acknowledged " + entry.acknowledged_at : "") + origin));
    } else {
      list.append(el("li", {}, (entry.occurred_at || "") + "  " + entry.kind + "  " + entry.from + " → " + entry.to +
        "  (" + entry.reason + ")" + origin));
    }
  }
  body.replaceChildren(
    el("p", {}, el("strong", {}, doc.contact_id), "  stage ", c.stage || "?", " · ", c.temperature || "?",
      " · score ", c.score ?? "?", " · first touch ", firstTouch(c.first_touch || {})),
    list);
}

// -- Pipeline ----------------------------------------------------------------------------------
function fmt(x, digits = 1) { return x === null || x === undefined ? "-" : Number(x).toFixed(digits); }
function seconds(x) { return x === null || x === undefined ? "-" : x < 1 ? Math.round(x * 1000) + " ms" : x.toFixed(2) + " s"; }

function drawChart(series) {
  const canvas = $("chart"), ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height, pad = 30;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
  const top = Math.max(1, ...series.map((p) => Math.max(p.in, p.out)));
  ctx.strokeStyle = "#e4e7ec"; ctx.fillStyle = "#6b7280"; ctx.font = "11px system-ui";
  for (let i = 0; i <= 4; i++) {
    const y = pad + (h - 2 * pad) * i / 4; ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w - 5, y); ctx.stroke();
    ctx.fillText((top * (4 - i) / 4).toFixed(0), 2, y + 4);
  }
  const line = (key, color) => {
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    series.forEach((p, i) => {
      const x = pad + (w - pad - 5) * i / Math.max(series.length - 1, 1), y = h - pad - (h - 2 * pad) * p[key] / top;
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    });
    ctx.stroke();
  };
  line("in", "#155eef"); line("out", "#f79009");
}

function onPipeline(doc) {
  const last = (doc.series || []).slice(-1)[0] || {};
  $("rate-in").textContent = fmt(last.in); $("rate-out").textContent = fmt(last.out);
  $("lag").textContent = fmt(doc.consumer_lag, 0);
  $("latency").textContent = seconds(doc.alert_latency_p50_seconds) + " / " + seconds(doc.alert_latency_p95_seconds);
  const dead = doc.dead_letters_by_code || {};
  $("dead-total").textContent = Object.values(dead).reduce((a, b) => a + b, 0);
  $("processes").replaceChildren(...Object.entries(doc.up || {}).map(([name, ok]) =>
    el("li", { class: ok ? "" : "error" }, name + ": " + (ok ? "up" : "not answering"))));
  const examples = doc.dead_letter_examples || {};
  const codes = [...new Set([...Object.keys(dead), ...Object.keys(examples)])].sort();
  $("dead-rows").replaceChildren(...codes.map((code) => el("tr", {}, el("td", {}, code), el("td", {}, dead[code] ?? "-"),
    el("td", {}, ...(examples[code] || []).map((e) => el("div", { class: "muted" }, (e.error_detail || "").slice(0, 160)))))));
  drawChart(doc.series || []);
}

// -- live feed ---------------------------------------------------------------------------------
function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => { $("live").className = "live on"; $("live").textContent = "live"; });
  source.addEventListener("error", () => { $("live").className = "live off"; $("live").textContent = "reconnecting"; });
  source.addEventListener("hot", (e) => onHot(JSON.parse(e.data)));
  source.addEventListener("pipeline", (e) => onPipeline(JSON.parse(e.data)));
}

$("contact-form").addEventListener("submit", (e) => {
  e.preventDefault(); location.hash = "contact/" + encodeURIComponent($("contact-id").value.trim());
});
$("funnel-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const params = new URLSearchParams([...new FormData(e.target)].filter(([, v]) => v));
  $("funnel-frame").src = "/funnel?" + params;
});
window.addEventListener("hashchange", route);
setInterval(tickCountdowns, 1000);
route(); connect();
