// Loads the console again when its code did not all arrive. A browser on the gateway's own
// host drops requests in flight whenever an address changes on it (ERR_NETWORK_CHANGED),
// and local VMs' networks come and go there: one module lost on the way fails the whole
// console (the browser fires `error` at its <script type="module">), and the page would
// stay at "Loading…". This classic script runs first, reloads the page up to three times
// within ten seconds, and then says what happened instead.
(function () {
  "use strict";
  var KEY = "skyport.console.reloads";
  var WINDOW_MS = 10000;
  var MOST = 3;

  function reloads() {
    try {
      var seen = JSON.parse(sessionStorage.getItem(KEY) || "null");
      if (seen && Date.now() - seen.first < WINDOW_MS) return seen;
    } catch (_) {
      // A damaged or unreadable record counts as none.
    }
    return { first: Date.now(), count: 0 };
  }

  function giveUp() {
    var page = document.getElementById("page");
    if (!page) return;
    var title = document.createElement("h1");
    title.textContent = "The console did not load";
    var text = document.createElement("p");
    text.className = "error";
    text.setAttribute("role", "alert");
    text.textContent = "Part of the console's code did not arrive: the connection to the gateway was interrupted. Reload the page to try again.";
    var again = document.createElement("button");
    again.type = "button";
    again.textContent = "Reload";
    again.addEventListener("click", function () { location.reload(); });
    page.replaceChildren(title, text, again);
  }

  window.addEventListener("error", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLScriptElement) || target.type !== "module") return;
    var seen = reloads();
    if (seen.count >= MOST) {
      giveUp();
      return;
    }
    seen.count += 1;
    try {
      sessionStorage.setItem(KEY, JSON.stringify(seen));
    } catch (_) {
      giveUp();
      return;
    }
    setTimeout(function () { location.reload(); }, 250 * seen.count);
  }, true);
})();
