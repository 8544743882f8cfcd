// flowgate admin UI: one page over /_admin/api. The token lives in sessionStorage
// for this tab only. Every value from the server is written with textContent.
"use strict";

const API = "/_admin/api";
const REFRESH_MS = 3000;
const state = { view: null, tenant: null, trigger: null, cursor: null, next: null, open: new Set(), openDeliveries: new Set(), timer: null, subLog: null, role: null };

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function token() { return sessionStorage.getItem("flowgate-admin-token"); }

async function api(path, options) {
  const res = await fetch(API + path, {
    ...(options || {}),
    headers: { "authorization": "Bearer " + token(), "content-type": "application/json" },
  });
  const body = await res.json().catch(() => null);
  if (res.status === 401) { logout(); throw new Error("the admin token was refused"); }
  if (!res.ok) {
    const msg = body && body.errors ? body.errors.map((e) => e.message).join("; ") : res.statusText;
    throw new Error(msg);
  }
  return body;
}

function showError(e) { $("#error").textContent = e ? String(e.message || e) : ""; }

function time(s) { return s ? s.replace("T", " ").replace(/\.(\d{3})\d*Z$/, ".$1") : ""; }
function ms(v) { return v === null || v === undefined ? "" : v < 1000 ? v.toFixed(1) + " ms" : (v / 1000).toFixed(2) + " s"; }
function status(s) { return el("span", { class: "status status-" + s }, s); }
function pretty(v) { return el("pre", {}, JSON.stringify(v, null, 2)); }

function show(view) {
  for (const v of ["login", "triggers", "log", "deliveries", "subscriptions", "keys"]) $("#" + v + "-view").hidden = v !== view;
  $("#nav").hidden = view === "login";
  state.view = view;
}

function logout() {
  sessionStorage.removeItem("flowgate-admin-token");
  state.role = null;
  show("login");
}

// What the token may do: a `read` token is shown no button that changes anything
// (the API would refuse it with 403 read_only_token).
async function whoAmI() {
  if (state.role) return;
  const me = await api("/me");
  state.role = me.role;
  $("#role").textContent = me.role === "read" ? me.label + " (read-only)" : me.label;
  document.body.classList.toggle("read-only", me.role === "read");
}
function operates() { return state.role === "operate"; }

async function login(ev) {
  ev.preventDefault();
  sessionStorage.setItem("flowgate-admin-token", $("#token").value.trim());
  $("#token").value = "";
  try {
    await api("/triggers");
    $("#login-error").textContent = "";
    route();
  } catch (e) {
    $("#login-error").textContent = e.message;
  }
}

// Loads overlap: a click or a filter change while the refresh timer's load is
// still waiting for its answers. Only the newest may draw; an older one finishing
// last would put back what was on screen before (the tenant chosen, the rows).
let loads = 0;
function newestLoad() {
  const mine = ++loads;
  return () => mine === loads;
}

// ---- the trigger table ----

async function loadTriggers() {
  const newest = newestLoad();
  const doc = await api("/triggers");
  if (!newest()) return;
  const body = $("#triggers tbody");
  body.replaceChildren(...doc.triggers.map((t) => {
    const key = t.tenant + "/" + t.trigger;
    const counts = Object.entries(t.counts).map(([s, n]) => el("div", {}, status(s), " " + n));
    const copy = el("button", { type: "button", class: "copy", on: { click: () => navigator.clipboard && navigator.clipboard.writeText(t.url) } }, "Copy");
    const auth = t.auth.none ? "open"
      : t.auth.api_keys ? t.auth.api_keys.join(", ")
      : t.auth.basic ? "basic: " + t.auth.basic.join(", ")
      : t.auth.hmac ? "signed (" + t.auth.hmac.header + ")"
      : "";
    const delivery = t.ordered ? "ordered" + (t.ordering_key ? " by " + t.ordering_key : "") : "concurrency " + t.concurrency;
    const stateCell = el("td", {},
      t.enabled ? "enabled" : el("span", { class: "muted" }, "disabled"),
      t.blocked_lanes.length ? el("span", { class: "badge" }, t.blocked_lanes.length + " lane(s) blocked") : null,
      t.load_error ? el("div", { class: "error" }, t.load_error) : null);
    return el("tr", { "data-trigger": key },
      el("td", {}, el("a", { href: "#/log/" + key, class: "open-log" }, key), t.description ? el("div", { class: "muted" }, t.description) : null),
      el("td", {}, el("code", {}, t.url), " ", copy),
      el("td", {}, t.methods.join(", ")),
      el("td", {}, auth),
      el("td", {}, t.mode + (t.mode === "sync" ? " (" + t.timeout_ms + " ms)" : "")),
      el("td", {}, delivery),
      el("td", {}, counts),
      stateCell);
  }));
  $("#load-errors").replaceChildren(...doc.load_errors.map((e) => el("p", { class: "error" }, e)));
}

// ---- the log history of one trigger ----

function query() {
  const p = new URLSearchParams({ tenant: state.tenant, trigger: state.trigger, limit: "50" });
  const s = $("#status-filter").value;
  if (s) p.set("status", s);
  const lane = $("#lane-filter").value;
  if (lane) p.set("lane", lane);
  const consumer = $("#consumer-filter").value.trim();
  if (consumer) p.set("consumer", consumer);
  if (state.cursor) p.set("cursor", state.cursor);
  return p.toString();
}

async function loadLog() {
  const newest = newestLoad();
  $("#log-title").textContent = "Log history: " + state.tenant + "/" + state.trigger;
  const [page, lanes] = await Promise.all([
    api("/messages?" + query()),
    api("/lanes?tenant=" + encodeURIComponent(state.tenant) + "&trigger=" + encodeURIComponent(state.trigger)),
  ]);
  if (!newest()) return;
  $("#lanes").replaceChildren(...lanes.lanes.map((l) => el("div", { class: "lane-blocked", "data-lane": l.lane },
    "Lane ", el("code", {}, l.lane || "(the trigger)"), " is blocked by message ",
    el("code", {}, l.message_id), " (" + l.status + ")")));
  const rows = [];
  for (const m of page.messages) {
    rows.push(el("tr", { class: "msg", "data-id": m.message_id, "data-status": m.status, on: { click: () => toggle(m.message_id) } },
      el("td", { class: "id" }, m.message_id, m.replay_of ? el("div", { class: "muted" }, "replay of " + m.replay_of) : null),
      el("td", {}, time(m.received_at)),
      el("td", { class: "consumer" }, m.consumer === null ? "" : m.consumer,
        m.key_id === null ? null : el("div", { class: "muted" }, "key " + m.key_id)),
      el("td", { class: "lane" }, m.lane === null ? "" : el("code", {}, m.lane)),
      el("td", {}, status(m.status), m.blocking ? el("span", { class: "badge" }, "blocks its lane") : null),
      el("td", {}, m.attempts),
      el("td", {}, ms(m.duration_ms)),
      el("td", {}, m.response_status === null ? "" : m.response_status),
      el("td", { class: "error-cell", title: m.error || "" }, m.error || "")));
    if (state.open.has(m.message_id)) rows.push(await detailRow(m.message_id));
  }
  if (!newest()) return;
  $("#messages tbody").replaceChildren(...rows);
  state.next = page.next_cursor;
  $("#older").hidden = !page.next_cursor;
}

async function toggle(id) {
  if (state.open.has(id)) state.open.delete(id); else state.open.add(id);
  await loadLog().catch(showError);
}

async function action(id, what) {
  try {
    await api("/messages/" + id + "/" + what, { method: "POST" });
    state.cursor = null;
    await loadLog();
  } catch (e) { showError(e); }
}

async function detailRow(id) {
  const d = await api("/messages/" + id);
  const attempts = el("table", { class: "attempts" },
    el("tr", {}, el("th", {}, "#"), el("th", {}, "Started"), el("th", {}, "Finished"), el("th", {}, "Duration"), el("th", {}, "Outcome"), el("th", {}, "Error")),
    d.attempts.map((a) => el("tr", { class: "attempt", "data-outcome": a.outcome },
      el("td", {}, a.number), el("td", {}, time(a.started_at)), el("td", {}, time(a.finished_at)),
      el("td", {}, ms(a.duration_ms)), el("td", {}, a.outcome ? status(a.outcome) : "running"),
      el("td", {}, (a.error_code ? "[" + a.error_code + "] " : "") + (a.error || "")))));
  const trace = el("table", { class: "trace" },
    el("tr", {}, el("th", {}, "Step"), el("th", {}, "Kind"), el("th", {}, "At"), el("th", {}, "Took"), el("th", {}, "Outcome"), el("th", {}, "Detail")),
    (Array.isArray(d.trace) ? d.trace : []).map((s) => el("tr", {},
      el("td", {}, s.name || s.step), el("td", {}, s.kind), el("td", {}, ms(s.offset_us / 1000)), el("td", {}, ms(s.duration_us / 1000)),
      el("td", {}, s.outcome), el("td", {}, s.error || s.detail || "",
        s.vars_after ? el("details", {}, el("summary", {}, "variables"), pretty({ before: s.vars_before, after: s.vars_after })) : null))));
  const act = operates();
  const buttons = el("div", { class: "actions" },
    act ? el("button", { type: "button", class: "replay primary", on: { click: (e) => { e.stopPropagation(); action(id, "replay"); } } }, "Replay") : null,
    act && d.blocking ? el("button", { type: "button", class: "skip", on: { click: (e) => { e.stopPropagation(); action(id, "skip"); } } }, "Skip") : null,
    act && d.blocking ? el("button", { type: "button", class: "unblock", on: { click: (e) => { e.stopPropagation(); action(id, "unblock"); } } }, "Unblock") : null);
  const cell = el("td", { colSpan: 9 },
    buttons,
    d.consumer === null ? null : el("p", { class: "consumer" }, "Sent by " + d.consumer + (d.key_id === null ? "" : " with key " + d.key_id)),
    d.error ? el("p", { class: "error" }, d.error) : null,
    el("h4", {}, "Attempts"), attempts,
    el("h4", {}, "Trace"), trace,
    el("h4", {}, "Input"), pretty(d.input),
    el("h4", {}, "Response"), d.response ? pretty(d.response) : el("p", { class: "muted" }, "none"));
  return el("tr", { class: "detail", "data-id": id }, cell);
}

// Fills the tenant picker `sel` with the tenants the token sees, keeping the
// one chosen (the first at first), and answers it: null when a newer load
// started meanwhile (see newestLoad) or when there is no tenant.
async function pickTenant(newest, sel) {
  const tenants = (await api("/tenants")).tenants.map((t) => t.tenant);
  if (!newest()) return null;
  const select = $(sel);
  const current = select.value || tenants[0];
  select.replaceChildren(...tenants.map((t) => el("option", { value: t, selected: t === current }, t)));
  return current || null;
}

// ---- event deliveries ----

async function loadDeliveries() {
  const newest = newestLoad();
  const current = await pickTenant(newest, "#delivery-tenant");
  if (!current) return;
  const page = await api("/deliveries?tenant=" + encodeURIComponent(current));
  const rows = [];
  for (const d of page.deliveries) {
    const redeliver = operates() ? el("button", { type: "button", class: "redeliver", on: { click: (e) => {
      e.stopPropagation();
      api("/deliveries/" + d.delivery_id + "/redeliver", { method: "POST" }).then(loadDeliveries).catch(showError);
    } } }, "Redeliver") : null;
    rows.push(el("tr", { class: "msg", "data-id": d.delivery_id, "data-status": d.status, on: { click: () => toggleDelivery(d.delivery_id) } },
      el("td", { class: "id" }, d.delivery_id), el("td", {}, time(d.created_at)), el("td", {}, d.subscription),
      el("td", {}, d.event), el("td", {}, status(d.status)),
      el("td", {}, d.attempts.map((a) => el("div", {}, "#" + a.number + " " + time(a.at) + " ", a.status === null ? "" : String(a.status), a.error ? " " + a.error : ""))),
      el("td", {}, redeliver)));
    if (state.openDeliveries.has(d.delivery_id)) rows.push(await deliveryRow(d.delivery_id));
  }
  if (!newest()) return;
  $("#deliveries tbody").replaceChildren(...rows);
}

async function toggleDelivery(id) {
  if (state.openDeliveries.has(id)) state.openDeliveries.delete(id); else state.openDeliveries.add(id);
  await loadDeliveries().catch(showError);
}

async function deliveryRow(id) {
  const d = await api("/deliveries/" + id);
  const attempts = el("table", { class: "attempts" },
    el("tr", {}, el("th", {}, "#"), el("th", {}, "At"), el("th", {}, "Status"), el("th", {}, "Error"), el("th", {}, "Response headers"), el("th", {}, "Response body")),
    d.attempts.map((a) => el("tr", { class: "attempt" },
      el("td", {}, a.number), el("td", {}, time(a.at)), el("td", {}, a.status === null ? "" : a.status), el("td", {}, a.error || ""),
      el("td", {}, pretty(a.headers)), el("td", {}, el("pre", {}, a.body || "")))));
  return el("tr", { class: "detail", "data-id": id }, el("td", { colSpan: 7 },
    el("h4", {}, "Payload"), pretty(d.payload), el("h4", {}, "Attempts"), attempts));
}

// ---- event subscriptions ----

const list = (s) => s.split(",").map((x) => x.trim()).filter((x) => x);

async function loadSubscriptions() {
  const newest = newestLoad();
  const current = await pickTenant(newest, "#subscription-tenant");
  if (!newest()) return;
  $("#subscription-form").hidden = !operates();
  if (!current) return;
  const [doc, log] = await Promise.all([
    api("/subscriptions?tenant=" + encodeURIComponent(current)),
    state.subLog ? api("/deliveries?tenant=" + encodeURIComponent(current) + "&subscription=" + encodeURIComponent(state.subLog)) : null,
  ]);
  if (!newest()) return;
  const button = (cls, text, f) => el("button", { type: "button", class: cls, on: { click: (e) => { e.stopPropagation(); f(); } } }, text);
  $("#subscriptions tbody").replaceChildren(...doc.subscriptions.map((s) => {
    const api_ = s.source === "api" && operates();
    const one = "/subscriptions/" + s.subscription_id;
    return el("tr", { class: "sub", "data-name": s.name, "data-enabled": String(s.enabled), "data-source": s.source },
      el("td", {}, s.name, s.description ? el("div", { class: "muted" }, s.description) : null),
      el("td", {}, el("code", {}, s.url)),
      el("td", {}, s.events.join(", "), s.triggers ? el("div", { class: "muted" }, "only " + s.triggers.join(", ")) : null),
      el("td", {}, s.source),
      el("td", {}, s.enabled ? "on" : el("span", { class: "muted" }, "off")),
      el("td", { class: "actions" },
        api_ ? button("toggle", s.enabled ? "Switch off" : "Switch on", () => subAct(api(one, { method: "PATCH", body: JSON.stringify({ enabled: !s.enabled }) }))) : null,
        api_ ? button("edit", "Edit", () => editSubscription(s)) : null,
        api_ ? button("rotate", "Rotate secret", () => subAct(api(one + "/rotate-secret", { method: "POST" }).then((r) => showSecret(s.name, r.secret)))) : null,
        operates() ? button("test", "Send test", () => subAct(api(one + "/test", { method: "POST" }).then(showTest))) : null,
        button("log", "Delivery log", () => { state.subLog = s.name; refresh(); }),
        api_ ? button("delete", "Delete", () => confirm("Delete " + s.name + "?") && subAct(api(one, { method: "DELETE" }))) : null));
  }));
  $("#sub-log").hidden = !log;
  if (!log) return;
  $("#sub-log-title").textContent = "Delivery log: " + state.subLog;
  $("#sub-deliveries tbody").replaceChildren(...log.deliveries.map((d) => el("tr", { class: "msg", "data-event": d.event, "data-status": d.status },
    el("td", {}, time(d.created_at)), el("td", {}, d.event), el("td", {}, status(d.status)),
    el("td", {}, d.attempts.map((a) => el("div", { class: "attempt" }, "#" + a.number + " " + time(a.at) + " " + a.url + " ",
      a.status === null ? "" : String(a.status), " " + ms(a.duration_ms),
      a.error_kind ? " [" + a.error_kind + "] " + (a.error || "") : ""))))));
}

function subAct(promise) {
  return promise.then(() => refresh()).catch(showError);
}

function showSecret(name, secret) {
  const p = $("#sub-secret");
  p.replaceChildren("Secret of " + name + " (shown this once): ", el("code", {}, secret));
  p.hidden = false;
}

function showTest(t) {
  const p = $("#sub-test-result");
  p.textContent = t.ok ? "Test ping delivered: " + t.status + " in " + ms(t.duration_ms)
    : "Test ping failed" + (t.status === null ? "" : " (" + t.status + ")") + ": [" + t.error_kind + "] " + t.error;
  p.className = t.ok ? "notice" : "error";
  p.hidden = false;
}

function editSubscription(s) {
  $("#sub-form-title").textContent = s ? "Edit " + s.name : "New subscription";
  $("#sub-id").value = s ? s.subscription_id : "";
  $("#sub-name").value = s ? s.name : "";
  $("#sub-url").value = s ? s.url : "";
  $("#sub-events").value = s ? s.events.join(", ") : "";
  $("#sub-description").value = s && s.description ? s.description : "";
  $("#sub-triggers").value = s && s.triggers ? s.triggers.join(", ") : "";
  $("#sub-retry").value = s && s.retry ? s.retry.join(", ") : "";
  $("#sub-include").value = s ? s.include : "ids";
  $("#sub-username").value = s && s.auth.username ? s.auth.username : "";
  $("#sub-password").value = "";
  $("#sub-enabled").checked = s ? s.enabled : false;
}

async function saveSubscription(ev) {
  ev.preventDefault();
  const id = $("#sub-id").value;
  const body = {
    name: $("#sub-name").value.trim(),
    url: $("#sub-url").value.trim(),
    events: list($("#sub-events").value),
    description: $("#sub-description").value.trim() || null,
    triggers: list($("#sub-triggers").value).length ? list($("#sub-triggers").value) : null,
    retry: list($("#sub-retry").value).length ? list($("#sub-retry").value) : null,
    include: $("#sub-include").value,
    enabled: $("#sub-enabled").checked,
  };
  const user = $("#sub-username").value.trim();
  const password = $("#sub-password").value;
  if (!user) body.auth = { type: "none" };
  else if (password || !id) body.auth = { type: "basic", username: user, password };
  try {
    if (id) {
      await api("/subscriptions/" + id, { method: "PATCH", body: JSON.stringify(body) });
    } else {
      body.tenant = $("#subscription-tenant").value;
      const made = await api("/subscriptions", { method: "POST", body: JSON.stringify(body) });
      showSecret(made.name, made.secret);
    }
    editSubscription(null);
    await refresh();
  } catch (e) { showError(e); }
}

// ---- consumers and their keys ----

async function loadKeys() {
  const newest = newestLoad();
  const current = await pickTenant(newest, "#keys-tenant");
  if (!current) return;
  const doc = await api("/keys?tenant=" + encodeURIComponent(current));
  if (!newest()) return;
  $("#keys-day").textContent = "Counts of " + doc.day + " (UTC); 401s naming no consumer: " + doc.unattributed_unauthorized_today;
  $("#keys tbody").replaceChildren(...doc.consumers.map((c) => {
    const keys = c.keys.map((k) => el("div", { class: "key" + (k.expired ? " expired" : ""), "data-key": k.id || "" },
      el("code", {}, k.id || "(no id)"),
      k.expires_at ? " expires " + time(k.expires_at) + (k.expired ? " (expired)" : "") : "",
      el("span", { class: "muted" }, " last used " + (k.last_used_at ? time(k.last_used_at) : "never"))));
    const rate = c.rate ? c.rate.limit + ", burst " + c.rate.burst : el("span", { class: "muted" }, "none");
    const quota = c.quota ? c.quota.used_today + " of " + c.quota.limit + " (" + c.quota.remaining + " left)" : el("span", { class: "muted" }, "none");
    return el("tr", { "data-consumer": c.label },
      el("td", {}, c.label), el("td", {}, keys), el("td", { class: "requests" }, c.requests_today),
      el("td", {}, c.limited_today), el("td", { class: "unauthorized" }, c.unauthorized_today),
      el("td", { class: "rate" }, rate), el("td", { class: "quota" }, quota));
  }));
}

// ---- routing and refresh ----

async function refresh() {
  try {
    if (state.view !== "login") await whoAmI();
    if (state.view === "triggers") await loadTriggers();
    else if (state.view === "log") await loadLog();
    else if (state.view === "deliveries") await loadDeliveries();
    else if (state.view === "subscriptions") await loadSubscriptions();
    else if (state.view === "keys") await loadKeys();
    showError(null);
  } catch (e) { showError(e); }
}

function route() {
  if (!token()) { show("login"); return; }
  const hash = location.hash.replace(/^#\/?/, "");
  const parts = hash.split("/");
  if (parts[0] === "log" && parts.length === 3) {
    if (state.tenant !== parts[1] || state.trigger !== parts[2]) {
      state.open.clear();
      state.cursor = null;
      $("#lane-filter").value = "";
      $("#consumer-filter").value = "";
    }
    state.tenant = parts[1];
    state.trigger = parts[2];
    show("log");
  } else if (parts[0] === "deliveries") {
    show("deliveries");
  } else if (parts[0] === "subscriptions") {
    show("subscriptions");
  } else if (parts[0] === "keys") {
    show("keys");
  } else {
    show("triggers");
  }
  refresh();
}

function schedule() {
  clearInterval(state.timer);
  state.timer = setInterval(() => {
    // Only the newest page refreshes by itself: older pages stay put.
    if ($("#auto-refresh").checked && !state.cursor && state.view !== "login") refresh();
  }, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  $("#status-filter").addEventListener("change", () => { state.cursor = null; refresh(); });
  $("#lane-filter").addEventListener("change", () => { state.cursor = null; refresh(); });
  $("#consumer-filter").addEventListener("change", () => { state.cursor = null; refresh(); });
  $("#newest").addEventListener("click", () => { state.cursor = null; refresh(); });
  $("#older").addEventListener("click", () => { state.cursor = state.next; refresh(); });
  $("#delivery-tenant").addEventListener("change", refresh);
  $("#subscription-tenant").addEventListener("change", () => { state.subLog = null; refresh(); });
  $("#subscription-form").addEventListener("submit", saveSubscription);
  $("#sub-new").addEventListener("click", () => editSubscription(null));
  $("#keys-tenant").addEventListener("change", refresh);
  window.addEventListener("hashchange", route);
  schedule();
  route();
});
