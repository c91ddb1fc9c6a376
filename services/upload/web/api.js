// The csvbus page, part 1 of 4 (page.rs serves api.js, upload.js, browse.js and app.js as
// one script, /app.js): calls to the public API (/v1/...), with the API key, when one is
// needed, asked for once and kept in sessionStorage.
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


/** What an import came to, in words: a completed import with rejected rows says how many. */
function outcomeLabel(rec) {
  const rejected = rec.rows_rejected + rec.rows_write_rejected;
  switch (rec.outcome) {
    case "completed_with_rejections": return `completed with ${rejected} rejected`;
    case "in_progress": return rec.status;
    default: return rec.outcome;
  }
}
