// The csvbus page, part 4 of 4: which view the address shows, and the wiring.

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
  $("#upload-form").addEventListener("input", schedulePreview);
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
