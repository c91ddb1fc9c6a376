// The csvbus page, part 2 of 4: the upload view, each file followed live to its end.

// ---------- upload ----------

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


let chosen = [];
function choose(files) {
  chosen = Array.from(files);
  $("#chosen").replaceChildren(...chosen.map((f) => el("li", {}, `${f.name} (${size(f.size)})`)));
  schedulePreview();
}

// ---------- preview: how the first file would be read, before it is sent ----------

/** The most of a file a preview sends (the service reads its first 20 records). */
const PREVIEW_BYTES = 256 * 1024;
let previewTimer = null;
let previewRun = 0;

function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(() => preview().catch((e) => showPreviewError(e.message)), 300);
}

function showPreviewError(message) {
  const box = $("#preview");
  box.hidden = false;
  box.replaceChildren(el("p", { class: "error" }, `Preview: ${message}`));
}

/** POSTs the first file's beginning with dry_run=true and shows the rows as they would land. */
async function preview() {
  const box = $("#preview");
  const file = chosen[0];
  if (!file || !$("#table").value.trim()) { box.hidden = true; return; }
  const run = ++previewRun;
  const q = uploadQuery();
  q.set("dry_run", "true");
  const res = await fetch(`/v1/imports?${q}`, {
    method: "POST",
    headers: { "Content-Type": "text/csv", ...authHeaders() },
    body: file.slice(0, PREVIEW_BYTES),
  });
  const body = await res.json().catch(() => null);
  if (run !== previewRun) return; // a newer preview is on its way
  if (!res.ok) { showPreviewError(new ApiFailure(res.status, body).message); return; }
  const cols = body.columns;
  const lines = [
    ...body.rows.map((r) => [r.line, el("tr", {}, el("td", {}, r.line),
      ...cols.map((c) => el("td", {}, r.values[c] === null ? "NULL" : r.values[c])))]),
    ...body.rejected.map((r) => [r.line, el("tr", { class: "rejected" }, el("td", {}, r.line),
      el("td", { colspan: cols.length }, `rejected: ${r.reason}`))]),
  ].sort((a, b) => a[0] - b[0]);
  box.hidden = false;
  box.replaceChildren(
    el("h3", {}, `Preview of ${file.name} into ${body.table}: nothing stored yet`),
    el("p", { class: "read-as" }, describeReadAs(body.read_as)),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "line"), ...cols.map((c) => el("th", {}, c)))),
      el("tbody", {}, ...lines.map(([, tr]) => tr))),
    el("p", { class: "hint" }, `The first ${body.records_read} records, as they would be written.`));
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
  if ($("#delimiter").value !== "auto") q.set("delimiter", $("#delimiter").value);
  if ($("#encoding").value !== "utf-8") q.set("encoding", $("#encoding").value);
  if ($("#skip_lines").value !== "") q.set("skip_lines", $("#skip_lines").value);
  for (const name of ["null", "conflict", "key", "max_rejected", "columns"]) {
    const v = $(`#${name}`).value.trim();
    if (v !== "") q.set(name, v);
  }
  if ($("#trim").checked) q.set("trim", "true");
  if ($("#no_header").checked) q.set("header", "false");
  if ($("#extra_columns").checked) q.set("extra_columns", "ignore");
  if ($("#create").checked) q.set("create", "true");
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
    readAs: el("p", { class: "read-as" }),
    error: el("p", { class: "error", role: "alert", hidden: "" }),
  };
  c.root.append(el("h3", {}, file.name),
    el("div", { class: "bar" }, el("span", {}, "Upload: "), c.uploadText, upload),
    el("div", { class: "bar" }, el("span", {}, "Into the table: "), c.sinkText, sink),
    c.readAs, c.status, c.error);
  return c;
}

/** How the service read the file, in a line: what it detected, renamed, dropped, created, widened, added. */
function describeReadAs(r) {
  if (!r) return "";
  const parts = [`delimiter ${r.delimiter}${r.delimiter_detected ? " (detected)" : ""}`,
    `${r.encoding}${r.encoding_detected ? " (detected)" : ""}`];
  for (const m of r.mapping) parts.push(m.column ? `${m.field} → ${m.column}` : `${m.field} dropped`);
  parts.push(...r.notes);
  if (r.created) parts.push(`created: ${r.created}`);
  for (const w of r.widened || []) parts.push(`widened: ${w}`);
  for (const a of r.added || []) parts.push(`added: ${a}`);
  return "Read as: " + parts.join("; ");
}

function showRecord(c, rec) {
  c.readAs.textContent = describeReadAs(rec.read_as);
  const done = rec.rows_written + rec.rows_write_rejected + rec.rows_skipped;
  c.sink.max = Math.max(rec.rows_produced, 1);
  c.sink.value = done;
  c.sinkText.textContent = `${rec.rows_written} written, ${rec.rows_rejected + rec.rows_write_rejected} rejected` +
    (rec.rows_skipped ? `, ${rec.rows_skipped} skipped` : "") + ` of ${rec.rows_produced} `;
  c.status.className = `status ${rec.outcome}`;
  c.status.replaceChildren(`${outcomeLabel(rec)} · `, el("a", { href: `#/imports/${rec.id}` }, "details"));
  if (rec.error) { c.error.hidden = false; c.error.textContent = rec.error; }
}

/** POSTs one file with XHR (for upload progress), watching its import while it is sent. */
function send(file, c, idemKey) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const q = uploadQuery();
    q.set("name", file.name);
    xhr.open("POST", `/v1/imports?${q}`);
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

