// The csvbus page: uploads files with live progress, lists imports, shows rejected rows.
// Uses only the public API (/v1/...); the API key, when one is needed, is asked for once and
// kept in sessionStorage.
"use strict";

const $ = (sel) => document.querySelector(sel);
const KEY = "csvbus-api-key";
const FINAL = new Set(["completed", "failed", "aborted"]);

/** An element with text content and attributes (never innerHTML: values come from files). */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

/** An API error as a person reads it: message, code and line. */
class ApiFailure extends Error {
  constructor(status, body) {
    const line = body && body.line ? ` (line ${body.line})` : "";
    const msg = body && body.message ? body.message : `HTTP ${status}`;
    super(`${msg}${line}`);
    this.status = status;
    this.code = body && body.error;
  }
}

function authHeaders() {
  const k = sessionStorage.getItem(KEY);
  return k ? { Authorization: `Bearer ${k}` } : {};
}

/** Asks for the key in a dialog; resolves when the user gave one. */
function askKey(message) {
  const dialog = $("#key-dialog");
  $("#key-error").hidden = !message;
  $("#key-error").textContent = message || "";
  $("#key-input").value = "";
  return new Promise((resolve) => {
    $("#key-form").onsubmit = () => {
      sessionStorage.setItem(KEY, $("#key-input").value);
      $("#forget-key").hidden = false;
      resolve();
    };
    if (!dialog.open) dialog.showModal();
  });
}

/** GET (or other) a JSON route; a 401 asks for the key and tries again. */
async function api(path, opts = {}) {
  for (;;) {
    const r = await fetch(path, { ...opts, headers: { ...authHeaders(), ...(opts.headers || {}) } });
    if (r.status === 401) {
      await askKey(sessionStorage.getItem(KEY) ? "That key was refused." : "");
      continue;
    }
    if (!r.ok) throw new ApiFailure(r.status, await r.json().catch(() => null));
    return r;
  }
}
const getJson = async (path) => (await api(path)).json();

function showError(e) {
  const b = $("#banner");
  b.textContent = e ? String(e.message || e) : "";
  b.hidden = !e;
}

// ---------- views ----------

function route() {
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/imports\/([0-9a-f-]+)$/);
  const view = m ? "import" : hash.startsWith("#/imports") ? "imports" : "upload";
  for (const v of ["upload", "imports", "import"]) $(`#view-${v}`).hidden = v !== view;
  const current = view === "upload" ? "#nav-upload" : "#nav-imports";
  for (const n of ["#nav-upload", "#nav-imports"]) {
    if (n === current) $(n).setAttribute("aria-current", "page"); else $(n).removeAttribute("aria-current");
  }
  showError(null);
  const run = view === "import" ? showImport(m[1]) : view === "imports" ? showImports(false) : loadTables();
  run.catch(showError);
}

let tables = [];
async function loadTables() {
  tables = await getJson("/v1/tables");
  const list = $("#table-list");
  list.replaceChildren(...tables.map((t) => el("option", { value: t.name })));
  describeTable();
}

function describeTable() {
  const name = $("#table").value.trim();
  const t = tables.find((t) => t.name === name || t.name === `public.${name}`);
  $("#table-columns").textContent = t
    ? "Columns: " + t.columns.map((c) => `${c.name} ${c.type}${c.required ? " (required)" : ""}`).join(", ")
    : "";
}

// ---------- upload ----------

let chosen = [];
function choose(files) {
  chosen = Array.from(files);
  $("#chosen").replaceChildren(...chosen.map((f) => el("li", {}, `${f.name} (${size(f.size)})`)));
}

function size(n) {
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function uploadQuery() {
  const q = new URLSearchParams({ table: $("#table").value.trim() });
  const mode = $("#mode").value;
  if (mode !== "append") q.set("mode", mode);
  if ($("#delimiter").value !== ",") q.set("delimiter", $("#delimiter").value);
  for (const name of ["null", "conflict", "key", "max_rejected"]) {
    const v = $(`#${name}`).value.trim();
    if (v !== "") q.set(name, v);
  }
  return q;
}

function randomKey() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** One file's card: an upload bar, a sink bar, a status line. */
function card(file) {
  const upload = el("progress", { max: file.size || 1, value: 0, "aria-label": `Upload of ${file.name}` });
  const sink = el("progress", { max: 1, value: 0, "aria-label": `Rows of ${file.name} written` });
  const c = {
    root: el("li", { class: "card" }),
    upload, sink,
    uploadText: el("span", {}, "waiting"),
    sinkText: el("span", {}, ""),
    status: el("p", { class: "status" }, "queued"),
    error: el("p", { class: "error", role: "alert", hidden: "" }),
  };
  c.root.append(el("h3", {}, file.name),
    el("div", { class: "bar" }, el("span", {}, "Upload: "), c.uploadText, upload),
    el("div", { class: "bar" }, el("span", {}, "Into the table: "), c.sinkText, sink),
    c.status, c.error);
  return c;
}

function showRecord(c, rec) {
  const done = rec.rows_written + rec.rows_write_rejected + rec.rows_skipped;
  c.sink.max = Math.max(rec.rows_produced, 1);
  c.sink.value = done;
  c.sinkText.textContent = `${rec.rows_written} written, ${rec.rows_rejected + rec.rows_write_rejected} rejected` +
    (rec.rows_skipped ? `, ${rec.rows_skipped} skipped` : "") + ` of ${rec.rows_produced} `;
  c.status.className = `status ${rec.status}`;
  c.status.replaceChildren(`${rec.status} · `, el("a", { href: `#/imports/${rec.id}` }, "details"));
  if (rec.error) { c.error.hidden = false; c.error.textContent = rec.error; }
}

/** POSTs one file with XHR (for upload progress), watching its import while it is sent. */
function send(file, c, idemKey) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/imports?${uploadQuery()}`);
    xhr.setRequestHeader("Content-Type", "text/csv");
    xhr.setRequestHeader("Idempotency-Key", idemKey);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => {
      c.upload.value = e.loaded;
      c.uploadText.textContent = `${size(e.loaded)} of ${size(file.size)} sent `;
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      resolve({ status: xhr.status, body });
    };
    xhr.onerror = () => reject(new Error("the connection failed; nothing was lost, upload again"));
    xhr.send(file);
  });
}

async function uploadOne(file, c) {
  const idemKey = randomKey();
  c.status.textContent = "uploading";
  let sending = true;
  const watch = (async () => {
    while (sending) {
      await new Promise((r) => setTimeout(r, 500));
      const page = await getJson(`/v1/imports?idempotency_key=${idemKey}&limit=1`).catch(() => null);
      const rec = page && page.imports[0];
      if (rec && sending) {
        c.uploadText.textContent = `${size(rec.bytes_received)} received, ${rec.rows_produced} rows produced `;
        showRecord(c, rec);
      }
    }
  })();
  let res;
  try {
    for (;;) {
      res = await send(file, c, idemKey);
      if (res.status !== 401) break;
      await askKey(sessionStorage.getItem(KEY) ? "That key was refused." : "");
    }
  } finally {
    sending = false;
    await watch;
  }
  if (res.status !== 200 && res.status !== 202) throw new ApiFailure(res.status, res.body);
  c.upload.value = c.upload.max;
  c.uploadText.textContent = `${res.body.rows_produced} rows produced, ${res.body.rows_rejected} rejected `;
  let rec = await getJson(`/v1/imports/${res.body.import_id}`);
  showRecord(c, rec);
  while (!FINAL.has(rec.status)) {
    rec = await getJson(`/v1/imports/${rec.id}?wait=2s`);
    showRecord(c, rec);
  }
}

async function uploadAll(ev) {
  ev.preventDefault();
  if (!chosen.length) { showError(new Error("Choose or drop a CSV file first.")); return; }
  showError(null);
  $("#upload-button").disabled = true;
  const files = chosen;
  const cards = files.map(card);
  $("#uploads").prepend(...cards.map((c) => c.root));
  try {
    for (let i = 0; i < files.length; i++) {
      try {
        await uploadOne(files[i], cards[i]);
      } catch (e) {
        cards[i].status.textContent = "refused";
        cards[i].status.className = "status failed";
        cards[i].error.hidden = false;
        cards[i].error.textContent = e.message;
      }
    }
  } finally {
    $("#upload-button").disabled = false;
  }
}

// ---------- imports ----------

let before = null;
async function showImports(more) {
  if (!tables.length) await loadTables();
  if (!more) before = null;
  const q = new URLSearchParams({ limit: "25" });
  if ($("#filter-table").value.trim()) q.set("table", $("#filter-table").value.trim());
  if ($("#filter-status").value) q.set("status", $("#filter-status").value);
  if (before) q.set("before", before);
  const page = await getJson(`/v1/imports?${q}`);
  const rows = page.imports.map((r) => el("tr", {},
    el("td", {}, el("a", { href: `#/imports/${r.id}` }, new Date(r.created_at).toLocaleString())),
    el("td", {}, r.table),
    el("td", { class: `status ${r.status}` }, r.status),
    el("td", {}, r.rows_produced),
    el("td", {}, r.rows_written),
    el("td", {}, r.rows_rejected + r.rows_write_rejected),
    el("td", {}, took(r))));
  const body = $("#imports tbody");
  if (more) body.append(...rows); else body.replaceChildren(...rows);
  before = page.next_before;
  $("#older").hidden = !before;
}

function took(r) {
  const end = r.finished_at ? new Date(r.finished_at) : new Date();
  const s = (end - new Date(r.created_at)) / 1000;
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

// ---------- one import ----------

let current = null;
let after = null;
async function showImport(id) {
  const rec = await getJson(`/v1/imports/${id}`);
  current = rec;
  $("#import-title").textContent = `Import into ${rec.table}`;
  const facts = [["Id", rec.id], ["Status", rec.status], ["Mode", rec.mode],
    ["Columns", rec.columns.join(", ")], ["Rows produced", rec.rows_produced],
    ["Rows written", rec.rows_written], ["Rows skipped", rec.rows_skipped],
    ["Rejected (file)", rec.rows_rejected], ["Rejected (database)", rec.rows_write_rejected],
    ["Bytes", rec.bytes_received], ["Attempts", rec.attempts], ["Took", took(rec)]];
  if (rec.error) facts.push(["Error", rec.error]);
  $("#import-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  after = null;
  $("#rejected tbody").replaceChildren();
  await moreRejected();
}

async function moreRejected() {
  const q = new URLSearchParams({ limit: "50" });
  if (after) q.set("after", after);
  const page = await getJson(`/v1/imports/${current.id}/rejected?${q}`);
  $("#rejected tbody").append(...page.rows.map((r) => el("tr", {},
    el("td", {}, r.line), el("td", {}, r.stage), el("td", {}, r.reason),
    el("td", { class: "values" }, r.raw != null ? r.raw : JSON.stringify(r.fields)))));
  if (!page.rows.length && !after) {
    $("#rejected tbody").append(el("tr", {}, el("td", { colspan: "4" }, "No rejected rows.")));
  }
  after = page.next_after;
  $("#more-rejected").hidden = !after;
}

async function download(format) {
  const r = await api(`/v1/imports/${current.id}/rejected.csv?format=${format}`);
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", { href: url, download: `rejected-${current.id}${format === "reupload" ? "-reupload" : ""}.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---------- wiring ----------

function wire() {
  const drop = $("#drop");
  for (const t of ["dragenter", "dragover"]) {
    drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    choose(e.dataTransfer.files);
  });
  $("#files").addEventListener("change", (e) => choose(e.target.files));
  $("#table").addEventListener("input", describeTable);
  $("#upload-form").addEventListener("submit", uploadAll);
  $("#filter").addEventListener("submit", (e) => { e.preventDefault(); showImports(false).catch(showError); });
  $("#older").addEventListener("click", () => showImports(true).catch(showError));
  $("#more-rejected").addEventListener("click", () => moreRejected().catch(showError));
  $("#download").addEventListener("click", () => download("annotated").catch(showError));
  $("#download-reupload").addEventListener("click", () => download("reupload").catch(showError));
  $("#forget-key").hidden = !sessionStorage.getItem(KEY);
  $("#forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("#forget-key").hidden = true;
  });
  window.addEventListener("hashchange", route);
  route();
}

document.addEventListener("DOMContentLoaded", wire);
