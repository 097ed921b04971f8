// Runs first on every page of the tutorials site (the build adds it to each page's <head>).
//
// JupyterLite's ServiceWorkerManager unregisters *every* service worker of the origin when
// it finds the page controlled by a worker whose version it has not recorded in
// localStorage: on the second visit to a fresh site (its own worker, never recorded), or
// when the app's worker (dist/sw.js, whose scope includes lite/) controls the page. That
// would remove the app's offline copy, and, with the network gone, leave the kernel no
// worker to load Pyodide from. Recording the version first keeps every worker in place.
"use strict";
(function () {
  const root = new URL(".", document.currentScript.src).href;
  const appVersion = "{{APP_VERSION}}";
  const workerUrl = root + "service-worker.js?enableCache=false";
  const isLanding = new URL(".", location.href).href === root;

  function recordVersion() {
    const controller = navigator.serviceWorker && navigator.serviceWorker.controller;
    if (controller) localStorage.setItem(controller.scriptURL + "-version", appVersion);
  }

  function showStatus(text) {
    const status = document.getElementById("offline-status");
    if (status) status.textContent = text;
  }

  if (!("serviceWorker" in navigator)) {
    document.addEventListener("DOMContentLoaded", () => showStatus("This browser cannot keep the tutorials for offline use."));
    return;
  }
  recordVersion();
  navigator.serviceWorker.addEventListener("controllerchange", recordVersion);
  // The same URL JupyterLite registers, so there is one registration, not two. Registering
  // here too lets the landing page make everything available offline before a notebook is
  // opened; once the worker is active it is asked to keep a copy of every file.
  navigator.serviceWorker.addEventListener("message", (event) => {
    if (event.data.precached) showStatus("The tutorials are available offline in this browser.");
    if (event.data.precacheFailed) showStatus("The tutorials could not be kept for offline use: " + event.data.precacheFailed);
  });
  navigator.serviceWorker.register(workerUrl)
    .then(() => navigator.serviceWorker.ready)
    .then((registration) => {
      showStatus("Keeping a copy of the tutorials for offline use…");
      // On a notebook's page, after the kernel has had its start (the files it loads are
      // kept as they are fetched anyway); on the landing page at once.
      setTimeout(() => registration.active.postMessage({ precache: true }), isLanding ? 0 : 20000);
    })
    .catch((error) => showStatus("The tutorials could not be kept for offline use: " + error.message));
})();
