// Service worker of the tutorials site (dist/lite/), in place of JupyterLite's own.
//
// Keeps JupyterLite's protocol: the kernel's file-system calls (/api/drive) and input()
// (/api/stdin/) are relayed to the page over a BroadcastChannel, and the heartbeat is
// answered. Unlike JupyterLite's worker it keeps a copy of every file of the site and of the
// app's files the kernel loads, serves them cache-first, and drops older copies when the site
// changes, so that after one visit the tutorials open with no network.
//
// It becomes active at once (nothing is downloaded before): JupyterLite starts the kernel as
// soon as the worker is registered, and the kernel's drive only works through an active
// worker. The copy is then made in the background when a page asks for it (qidicom-lite.js),
// and every file fetched meanwhile is kept as it goes by. The enableCache parameter JupyterLite
// adds to this file's URL is ignored: keeping files is always on.
"use strict";

const CACHE = "qidicom-lite-{{CACHE_VERSION}}";
const FILES = {{PRECACHE}};
const broadcast = new BroadcastChannel("/sw-api.v1");

self.addEventListener("install", () => self.skipWaiting());

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("qidicom-lite-") && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

// {precache: true} from a page: fetch whatever is not kept yet, then answer with the count.
self.addEventListener("message", (event) => {
  if (!event.data || !event.data.precache) return;
  event.waitUntil(keepAll().then(
    (count) => event.source.postMessage({ precached: count, of: FILES.length }),
    (error) => event.source.postMessage({ precacheFailed: String(error) }),
  ));
});

async function keepAll() {
  const cache = await caches.open(CACHE);
  const missing = [];
  for (const file of FILES) {
    if (!(await cache.match(new URL(file, self.location.href).href, { ignoreSearch: true }))) missing.push(file);
  }
  await cache.addAll(missing);
  return FILES.length;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.endsWith("/api/service-worker-heartbeat")) {
    event.respondWith(new Response("ok"));
  } else if (url.pathname.includes("/api/drive") || url.pathname.includes("/api/stdin/")) {
    event.respondWith(relay(request, url));
  } else if (request.method === "GET") {
    event.respondWith(fromCacheOrNetwork(request));
  }
});

// JupyterLite adds ?_=<hash> and the like to its URLs: the path names the file.
async function fromCacheOrNetwork(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request, { ignoreSearch: true });
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok && response.type === "basic") await cache.put(request, response.clone());
  return response;
}

// One drive or stdin request, answered by the page that made it (same browsingContextId).
async function relay(request, url) {
  const message = await request.json();
  const answer = new Promise((resolve) => {
    const listener = (event) => {
      if (event.data.browsingContextId !== message.browsingContextId) return;
      broadcast.removeEventListener("message", listener);
      resolve(new Response(JSON.stringify(event.data.response)));
    };
    broadcast.addEventListener("message", listener);
  });
  message.pathname = url.pathname;
  broadcast.postMessage(message);
  return answer;
}
