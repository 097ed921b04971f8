// Service worker: keeps a copy of every file of the site, so that once it has been opened
// the app starts with no network at all. The build fills in the file list and a version
// that changes whenever any file does; a new version replaces the old copy.
"use strict";

const CACHE = "qidicom-{{CACHE_VERSION}}";
const FILES = {{PRECACHE}};

// No skipWaiting: a new version waits until no open tab still runs the old one, so a running
// app never finds its remaining files (loaded after the first paint) replaced by another build's.
self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(FILES)));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("qidicom-") && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  // Cached copy first (Panel adds ?v=... to stylesheet URLs, hence ignoreSearch); the network
  // only for anything not cached.
  event.respondWith(caches.match(request, { ignoreSearch: true }).then((hit) => hit || fetch(request)));
});
