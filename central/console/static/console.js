// FaceLock console: the live parts (no inline script anywhere; CSP script-src 'self').
// One EventSource per page (main[data-stream]): "feed" rows go on top of #event-rows, "alert" tells
// htmx to refresh whatever listens for it (the alerts table) and bumps the nav badge, "outage" and
// connection errors show a banner until the stream is healthy again.
(function () {
  "use strict";
  var MAX_ROWS = 300;
  function banner(text) {
    var b = document.getElementById("live-banner");
    if (!b) { return; }
    if (text) { b.textContent = text; b.hidden = false; } else { b.hidden = true; b.textContent = ""; }
  }
  function start() {
    var main = document.querySelector("main[data-stream]");
    if (!main || !window.EventSource) { return; }
    var es = new EventSource(main.getAttribute("data-stream"));
    var alerts = 0;
    es.addEventListener("open", function () { banner(""); });
    es.addEventListener("feed", function (ev) {
      banner("");
      var rows = document.getElementById("event-rows");
      if (rows) {
        rows.insertAdjacentHTML("afterbegin", ev.data);
        while (rows.rows.length > MAX_ROWS) { rows.deleteRow(rows.rows.length - 1); }
      }
      document.body.dispatchEvent(new CustomEvent("feed"));
    });
    es.addEventListener("alert", function (ev) {
      banner("");
      alerts += parseInt(ev.data, 10) || 1;
      var badge = document.getElementById("alert-badge");
      if (badge) { badge.textContent = "+" + alerts; badge.hidden = false; }
      document.body.dispatchEvent(new CustomEvent("alert"));
    });
    es.addEventListener("outage", function (ev) { banner("Live feed paused: " + ev.data + "."); });
    es.addEventListener("logout", function () { es.close(); window.location.assign("/login"); });
    es.addEventListener("error", function () {
      if (es.readyState !== EventSource.OPEN) { banner("Live feed disconnected: reconnecting..."); }
    });
    window.addEventListener("pagehide", function () { es.close(); });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
