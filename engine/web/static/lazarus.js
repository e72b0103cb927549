// Lazarus dashboard behaviour, with no inline script (the CSP allows only this file):
// the CSRF token on every htmx request, errors shown where the person acted, a refresh
// that never pulls the page from under them, dialogs, select-all, and local times.
(function () {
  "use strict";
  var pointerInTable = false;

  function token() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = token();
  });

  function notice(text, near) {
    var box = document.getElementById("notice");
    if (!box) { return; }
    box.textContent = text;
    box.hidden = !text;
    var dialog = near && near.closest ? near.closest("#dialog, .dialog") : null;
    if (text && dialog) {  // inside a dialog: say it there
      var p = document.createElement("p");
      p.className = "flash bad";
      p.textContent = text;
      dialog.appendChild(p);
    }
  }
  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    if (event.detail.successful) { notice(""); return; }
    var text;
    if (!xhr || xhr.status === 0) {
      text = "The admin server did not answer: is it running?";
    } else {
      text = xhr.status + " " + xhr.statusText;
      try { text += ": " + JSON.parse(xhr.responseText).error; } catch (e) { /* not JSON */ }
      if (xhr.status === 401) { text += " (log in again: reload the page)"; }
    }
    notice(text, event.detail.elt);
  });

  // The 5 s refresh waits while the person is reading or choosing: text selected, the
  // pointer over a table, rows ticked, a dialog open, or the tab hidden.
  function busy() {
    var selected = window.getSelection && String(window.getSelection()).length > 0;
    var ticked = document.querySelector("input.pick:checked") !== null;
    var dialog = document.getElementById("dialog");
    var open = dialog !== null && dialog.children.length > 0;
    return document.hidden || selected || ticked || open || pointerInTable;
  }
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    var polling = elt && elt.id === "panel" && !event.detail.requestConfig.triggeringEvent;
    if (polling && busy()) { event.preventDefault(); }
  });
  document.addEventListener("pointerover", function (event) {
    pointerInTable = !!(event.target.closest && event.target.closest("#panel table"));
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target.matches && target.matches("[data-close-dialog]")) {
      var dialog = target.closest("#dialog");
      if (dialog) { dialog.innerHTML = ""; }
    }
    if (target.matches && target.matches("[data-close-detail]")) {
      var detail = document.getElementById("detail");
      if (detail) { detail.innerHTML = ""; }
    }
    if (target.id === "check-all") {
      document.querySelectorAll("input.pick").forEach(function (box) { box.checked = target.checked; });
    }
  });

  // Absolute times are rendered in UTC; add the reader's local time beside them.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) { return; }
      el.setAttribute("data-local", "");
      el.title = "local: " + when.toLocaleString();
      var local = document.createElement("small");
      local.className = "local";
      local.textContent = " (local " + when.toLocaleTimeString() + ")";
      el.after(local);
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSettle", function (event) { localTimes(event.detail.elt); });
})();
