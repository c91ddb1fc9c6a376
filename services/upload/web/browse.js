// The csvbus page, part 3 of 4: recent imports, one import and its rejected rows.

// ---------- imports ----------

let before = null;
let shown = { rows_written: 0, rows_rejected: 0 };
async function showImports(more) {
  if (!tables.length) await loadTables();
  if (!more) { before = null; shown = { rows_written: 0, rows_rejected: 0 }; }
  const q = new URLSearchParams({ limit: "25" });
  if ($("#filter-table").value.trim()) q.set("table", $("#filter-table").value.trim());
  if ($("#filter-source").value.trim()) q.set("source", $("#filter-source").value.trim());
  const outcome = $("#filter-outcome").value;
  if (outcome === "rejected") q.set("rejected", "true");
  else if (outcome) q.set("outcome", outcome);
  if (before) q.set("before", before);
  const page = await getJson(`/v1/imports?${q}`);
  const rows = page.imports.map((r) => el("tr", {},
    el("td", {}, el("a", { href: `#/imports/${r.id}` }, new Date(r.created_at).toLocaleString())),
    el("td", { class: "source" }, r.source || "—"),
    el("td", {}, r.table),
    el("td", { class: `status ${r.outcome}` }, outcomeLabel(r)),
    el("td", {}, r.rows_produced),
    el("td", {}, r.rows_written),
    el("td", {}, r.rows_rejected + r.rows_write_rejected),
    el("td", {}, took(r))));
  const body = $("#imports tbody");
  if (more) body.append(...rows); else body.replaceChildren(...rows);
  shown.rows_written += page.totals.rows_written;
  shown.rows_rejected += page.totals.rows_rejected;
  $("#imports-totals").textContent =
    `${body.children.length} imports shown: ${shown.rows_written} rows written, ${shown.rows_rejected} rejected`;
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
  const facts = [["Id", rec.id], ["Source", rec.source || "—"], ["Outcome", outcomeLabel(rec)],
    ["Status", rec.status], ["Mode", rec.mode],
    ["Columns", rec.columns.join(", ")], ["Rows produced", rec.rows_produced],
    ["Rows written", rec.rows_written], ["Rows skipped", rec.rows_skipped],
    ["Rejected (file)", rec.rows_rejected], ["Rejected (database)", rec.rows_write_rejected],
    ["Bytes", rec.bytes_received], ["Attempts", rec.attempts], ["Took", took(rec)]];
  if (rec.read_as) facts.push(["Read as", describeReadAs(rec.read_as).replace(/^Read as: /, "")]);
  if (rec.error) facts.push(["Error", rec.error]);
  if (rec.replay_of) facts.push(["Replay of", el("a", { href: `#/imports/${rec.replay_of}` }, rec.replay_of)]);
  for (const d of rec.deliveries || []) facts.push(["Webhook", describeDelivery(d)]);
  $("#import-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k),
    el("dd", k === "Outcome" ? { class: `status ${rec.outcome}` } : {}, v)]));
  after = null;
  $("#rejected tbody").replaceChildren();
  await moreRejected();
}

// One webhook delivery of the import's end, in words.
function describeDelivery(d) {
  const tries = `${d.attempts} attempt${d.attempts === 1 ? "" : "s"}`;
  const why = d.last_error ? `: ${d.last_error}` : "";
  switch (d.state) {
    case "delivered":
      return `import.${d.event} delivered (${tries}, ${new Date(d.delivered_at).toLocaleString()})`;
    case "failed":
      return `import.${d.event} not delivered, gave up after ${tries}${why}`;
    default:
      return d.attempts
        ? `import.${d.event} pending, ${tries} failed${why}; next ${new Date(d.next_attempt_at).toLocaleTimeString()}`
        : `import.${d.event} pending`;
  }
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

