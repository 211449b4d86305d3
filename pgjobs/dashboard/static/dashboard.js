// pgjobs dashboard: keep the page's data fresh and ask before destructive actions.
//
// Every few seconds (the body's data-poll) the page fetches itself and swaps in the new
// #live part, so filters (in the URL) and scroll position stay put. It stops while the
// tab is hidden. The HTML comes from the server escaped; nothing here builds markup.
"use strict";

(function () {
  const every = Number(document.body.dataset.poll || "0") * 1000;

  async function refresh() {
    const live = document.getElementById("live");
    if (!live || document.hidden) return;
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { "X-Requested-With": "pgjobs-dashboard" },
      });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("live");
      if (fresh) {
        // A copy first: moving nodes out of a live NodeList shortens it as it goes.
        live.replaceChildren(...Array.from(fresh.childNodes));
        document.body.dataset.refreshedAt = String(Date.now());
      }
    } catch (error) {
      // The server is restarting or the network dropped: try again at the next tick.
    }
  }

  if (every > 0) {
    const tick = async () => {
      await refresh();
      window.setTimeout(tick, every);
    };
    window.setTimeout(tick, every);
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    const question = form.dataset ? form.dataset.confirm : undefined;
    if (question && !window.confirm(question)) event.preventDefault();
  });
})();
