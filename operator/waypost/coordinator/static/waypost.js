// The UI's own behaviour, small on purpose: htmx does the requests and swaps.
// Never builds HTML from data: it only toggles checkboxes and checks JSON text.
(function () {
  "use strict";

  // "Select all" in a table header selects the row checkboxes of that table.
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.classList.contains("select-all")) return;
    var table = box.closest("table");
    if (!table) return;
    table.querySelectorAll('tbody input[type="checkbox"]').forEach(function (row) {
      row.checked = box.checked;
    });
  });

  // A live refresh of a list waits while the person has rows selected in it, so a
  // run changing status elsewhere does not clear their selection.
  document.addEventListener("htmx:confirm", function (event) {
    var source = event.target;
    if (!(source instanceof Element)) return;
    var list = source.getAttribute("data-hold-while-selected");
    if (list && document.querySelector(list + ' input[name="run"]:checked')) event.preventDefault();
  });

  // JSON editors: say at once whether the text parses, and block a submit that
  // would send malformed JSON (the server checks again and names the field).
  function checkEditor(area) {
    var note = document.getElementById(area.id + "-state");
    var ok = true;
    var message = "valid JSON";
    if (area.value.trim() !== "" || area.required) {
      try { JSON.parse(area.value); } catch (err) { ok = false; message = String(err.message); }
    }
    area.setAttribute("aria-invalid", ok ? "false" : "true");
    if (note) { note.textContent = message; note.className = ok ? "json-state ok" : "json-state bad"; }
    return ok;
  }
  document.addEventListener("input", function (event) {
    var area = event.target;
    if (area instanceof HTMLTextAreaElement && area.classList.contains("json-editor")) checkEditor(area);
  });
  document.addEventListener("htmx:confirm", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    var bad = Array.prototype.filter.call(form.querySelectorAll("textarea.json-editor:not([disabled])"),
      function (area) { return !checkEditor(area); });
    if (bad.length) { event.preventDefault(); bad[0].focus(); }
  });
})();
