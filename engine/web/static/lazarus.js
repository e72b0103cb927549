// Lazarus dashboard: every htmx request carries the page's CSRF token, and a request
// that fails says so instead of doing nothing.
(function () {
  "use strict";
  function token() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = token();
  });
  function notice(text) {
    var box = document.getElementById("notice");
    if (!box) { return; }
    box.textContent = text;
    box.hidden = !text;
  }
  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    if (event.detail.successful) { notice(""); return; }
    if (!xhr || xhr.status === 0) { notice("The admin server did not answer: is it running?"); return; }
    var text = xhr.status + " " + xhr.statusText;
    try { text += ": " + JSON.parse(xhr.responseText).error; } catch (e) { /* not JSON */ }
    if (xhr.status === 401) { text += " (log in again: reload the page)"; }
    notice(text);
  });
})();
