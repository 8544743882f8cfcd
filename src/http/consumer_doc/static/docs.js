// The consumer page: asks for the API key (or reads it from the URL's
// `#key=` fragment, which browsers never send), fetches `_openapi.json` with
// it and renders the triggers the key may call. Everything from the document
// is put in as text, never as markup.
"use strict";

// One saved key per tenant: a key is never sent to another tenant's document.
const KEY = "flowgate-docs-key:" + location.pathname.split("/")[1];
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// Text with `code` spans, as the document's descriptions write it.
function inline(text) {
  return String(text || "").split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part));
}

// A description: paragraphs and "- " list items.
function prose(text) {
  const out = [];
  let list = null;
  for (const line of String(text || "").split("\n")) {
    if (line.startsWith("- ")) {
      if (!list) out.push((list = el("ul")));
      list.append(el("li", {}, inline(line.slice(2))));
    } else if (line.trim()) {
      list = null;
      out.push(el("p", {}, inline(line)));
    }
  }
  return out;
}

let doc = null;

// `#/components/schemas/X` -> its schema; anything else as it is.
function resolve(schema) {
  for (let i = 0; schema && schema.$ref && i < 10; i++) {
    const m = /^#\/components\/schemas\/([^/]+)$/.exec(schema.$ref);
    if (!m) break;
    schema = doc.components.schemas[decodeURIComponent(m[1])];
  }
  return schema || {};
}

function bounds(s) {
  const parts = [];
  if (s.minimum !== undefined) parts.push(`≥ ${s.minimum}`);
  if (s.maximum !== undefined) parts.push(`≤ ${s.maximum}`);
  if (s.minLength !== undefined) parts.push(`at least ${s.minLength} characters`);
  if (s.maxLength !== undefined) parts.push(`at most ${s.maxLength} characters`);
  if (s.pattern !== undefined) parts.push(`matches ${s.pattern}`);
  return parts.join(", ");
}

// A value to show in an example: the default, else the first allowed, else a
// placeholder of the type.
function sample(name, s) {
  if (s.default !== undefined) return s.default;
  if (Array.isArray(s.enum) && s.enum.length) return s.enum[0];
  if (s.type === "integer" || s.type === "number") return s.minimum !== undefined ? s.minimum : 1;
  if (s.type === "boolean") return true;
  return `<${name}>`;
}

// An example JSON body from a schema: its required properties, one level deep.
function sampleBody(schema) {
  const s = resolve(schema);
  if (s.type !== "object" || !s.properties) return {};
  const body = {};
  const names = Array.isArray(s.required) && s.required.length ? s.required : Object.keys(s.properties);
  for (const name of names) {
    const p = resolve(s.properties[name] || {});
    const type = Array.isArray(p.type) ? p.type[0] : p.type;
    body[name] = sample(name, { ...p, type });
  }
  return body;
}

function quote(text) {
  return "'" + String(text).replace(/'/g, "'\\''") + "'";
}

function curl(method, path, op) {
  const query = (op.parameters || [])
    .filter((p) => p.in === "query" && p.required)
    .map((p) => {
      const v = sample(p.name, p.schema || {});
      // A placeholder stays readable, to be replaced; a real value is encoded.
      const text = typeof v === "string" && v.startsWith("<") ? v : encodeURIComponent(v);
      return `${encodeURIComponent(p.name)}=${text}`;
    });
  const url = location.origin + path + (query.length ? "?" + query.join("&") : "");
  const keyed = !(Array.isArray(op.security) && op.security.length === 0);
  const parts = ["curl", "-s"];
  if (method !== "get") parts.push("-X", method.toUpperCase());
  if (keyed) parts.push("-H", quote("X-Api-Key: $FLOWGATE_KEY").replace(/^'|'$/g, '"'));
  if (op.requestBody) {
    const json = op.requestBody.content["application/json"];
    parts.push("-H", quote("Content-Type: application/json"));
    parts.push("-d", quote(JSON.stringify(sampleBody(json && json.schema))));
  }
  parts.push(quote(url));
  return parts.join(" ");
}

function paramsTable(params) {
  const rows = params.map((p) => {
    const s = p.schema || {};
    return el("tr", { "data-param": p.name },
      el("td", {}, el("code", {}, p.name), p.in === "header" ? el("span", { class: "muted" }, " (header)") : null),
      el("td", {}, s.type || "", el("div", { class: "muted" }, bounds(s))),
      el("td", {}, p.required ? "yes" : "no"),
      el("td", {}, s.default !== undefined ? el("code", {}, JSON.stringify(s.default)) : ""),
      el("td", {}, Array.isArray(s.enum) ? s.enum.map((v) => el("code", { class: "enum" }, JSON.stringify(v))) : ""),
      el("td", { class: "param-description" }, inline(p.description || "")));
  });
  return el("table", { class: "params" },
    el("thead", {}, el("tr", {}, ["Parameter", "Type", "Required", "Default", "Allowed", "Description"].map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function schemaBlock(label, schema) {
  const s = schema && schema.$ref ? resolve(schema) : schema;
  return el("details", { class: "schema" }, el("summary", {}, label),
    el("pre", {}, JSON.stringify(s, null, 2)));
}

function answers(responses) {
  const rows = Object.entries(responses || {}).map(([status, r]) => {
    const content = r.content || {};
    const json = content["application/json"];
    const ok = status.startsWith("2");
    return el("tr", { class: ok ? "ok" : "not-ok" },
      el("td", {}, el("strong", {}, status)),
      el("td", {}, prose(r.description),
        ok && json && json.schema ? schemaBlock("Body schema", json.schema) : null));
  });
  return el("table", { class: "answers" },
    el("thead", {}, el("tr", {}, el("th", {}, "Status"), el("th", {}, "Meaning"))),
    el("tbody", {}, rows));
}

function operation(path, method, op) {
  const name = op.summary || path;
  const params = op.parameters || [];
  const mode = op["x-flowgate-mode"];
  const open = Array.isArray(op.security) && op.security.length === 0;
  const section = el("section", { class: "trigger", id: "trigger-" + op.operationId, "data-trigger": name },
    el("h2", {}, el("span", { class: "method" }, method.toUpperCase()), " ", el("span", { class: "name" }, name),
      mode ? el("span", { class: "tag" }, mode === "sync" ? "answers at once" : "queued (202)") : null,
      op["x-flowgate-ordered"] ? el("span", { class: "tag" }, "ordered") : null,
      open ? el("span", { class: "tag" }, "no key needed") : null),
    el("p", { class: "url" }, el("code", {}, `${method.toUpperCase()} ${path}`)),
    op.description ? el("div", { class: "description" }, prose(op.description)) : null,
    el("h3", {}, "Parameters"), paramsTable(params));
  if (op.requestBody) {
    const types = Object.keys(op.requestBody.content || {});
    const json = op.requestBody.content["application/json"];
    section.append(el("h3", {}, "Body"),
      el("p", {}, op.requestBody.required ? "Required. " : "Optional. ", inline(op.requestBody.description)),
      el("p", {}, "Content types: ", types.map((t) => el("code", { class: "ctype" }, t))),
      json && json.schema && json.schema.$ref ? schemaBlock("Body schema", json.schema) : null);
  }
  section.append(el("h3", {}, "Answers"), answers(op.responses),
    el("h3", {}, "Example"),
    open ? null : el("p", { class: "muted" }, "With your key in ", el("code", {}, "FLOWGATE_KEY"), ":"),
    el("pre", { class: "curl" }, curl(method, path, op)));
  const status = `${path}/messages/{message_id}`;
  if (doc.paths[status]) {
    section.append(el("p", { class: "muted" }, "Status of a message: ",
      el("code", {}, `GET ${status}`), open ? "" : " (same key)"));
  }
  return section;
}

function render() {
  $("title").textContent = doc.info.title;
  document.title = doc.info.title;
  $("version").textContent = "version " + doc.info.version;
  $("about").replaceChildren(...prose(doc.info.description));
  const sections = [];
  const toc = [];
  for (const [path, item] of Object.entries(doc.paths || {})) {
    if (path.endsWith("/messages/{message_id}")) continue;
    for (const method of ["get", "post"]) {
      if (!item[method]) continue;
      const op = item[method];
      sections.push(operation(path, method, op));
      toc.push(el("li", {}, el("a", { href: "#trigger-" + op.operationId }, `${method.toUpperCase()} ${op.summary}`)));
    }
  }
  $("toc").replaceChildren(sections.length
    ? el("ul", {}, toc)
    : el("p", { class: "empty" }, "This key may call no trigger."));
  $("triggers").replaceChildren(...sections);
  const blob = new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" });
  $("download").href = URL.createObjectURL(blob);
  $("doc-url").textContent = new URL("_openapi.json", location.href).pathname;
  $("doc").hidden = false;
}

async function show(key) {
  $("problem").textContent = "";
  let res;
  try {
    res = await fetch("_openapi.json", { headers: { "X-Api-Key": key }, cache: "no-store" });
  } catch (e) {
    $("problem").textContent = "The server cannot be reached: " + e.message;
    return;
  }
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const why = body && body.errors && body.errors[0] ? body.errors[0].message : res.statusText;
    $("problem").textContent = `${res.status}: ${why}`;
    $("doc").hidden = true;
    if (res.status === 401) sessionStorage.removeItem(KEY);
    return;
  }
  sessionStorage.setItem(KEY, key);
  $("forget").hidden = false;
  doc = body;
  render();
}

// A key given in the URL's fragment (`#key=...`) is taken, and leaves the
// address bar and the history. Whether there was one.
function keyFromFragment() {
  const m = /(?:^#|&)key=([^&]+)/.exec(location.hash);
  if (!m) return false;
  sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}

function showSaved() {
  const saved = sessionStorage.getItem(KEY);
  if (saved) {
    $("key").value = saved;
    show(saved);
  }
}

function start() {
  keyFromFragment();
  window.addEventListener("hashchange", () => {
    if (keyFromFragment()) showSaved();
  });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    show($("key").value.trim());
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("key").value = "";
    $("doc").hidden = true;
    $("forget").hidden = true;
  });
  showSaved();
}

start();
