// Runs Pyodide, Panel and qidicom off the main thread, so the page stays responsive while a
// conversion runs. Talks to page.js by messages:
//   to the page:   status, render, patch, idle, ready, conversions, stack-ready, stage-loaded, files-read,
//                  sample-loaded, notice, fatal
//   from the page: rendered, patch, mode, files, sample
"use strict";

importScripts("pyodide/pyodide.js");

const t0 = performance.now();
let pyodide = null;
let app = null; // the qidicom_app Python module
let conversionStackReady = null; // resolves once qidicom and its dependencies are imported
let fileBatches = Promise.resolve();
let stages = null; // app/packages.json: the packages of each stage, and the app's modules
const stageLoads = {}; // stage name -> the promise of its loading (each is loaded once)

function post(type, fields = {}) {
  self.postMessage({ type, ...fields });
}

function status(message, stage) {
  const elapsed = performance.now() - t0;
  console.debug(`[qidicom worker ${Math.round(elapsed)} ms] ${message}`);
  post("status", { message, stage, elapsed });
}

// Called from Python (webapp/panel_bridge.py) for every document change, or once for all the
// changes made in answer to one change in the page: a JSON patch as text, parsed here (off
// the page's thread), and its binary buffers (a Map of ArrayBuffers).
function sendPatch(patch, buffers) {
  post("patch", { patch: JSON.parse(patch), buffers });
}

// A blob: URL of a Python bytes object (a conversion's result), usable by the page: the
// bytes are copied once, from Python's memory straight into the Blob.
self.qidicomDownloadURL = (data, type) => {
  const buffer = data.getBuffer("u8");
  try {
    return URL.createObjectURL(new Blob([buffer.data], { type }));
  } finally {
    buffer.release();
  }
};

async function fetchJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function start() {
  status("Starting Python", "start");
  const plan = fetchJSON("app/packages.json");
  pyodide = await loadPyodide({ indexURL: new URL("pyodide/", self.location).href });
  status("Loading the interface", "python");
  stages = await plan;
  const { ui, convert, modules } = stages;
  await pyodide.loadPackage(ui, { messageCallback: () => {} });
  // The app's modules, packages (the metadata editor) included, beside Python's working directory.
  await Promise.all(modules.map(async (name) => {
    const response = await fetch(`app/${name}`);
    if (!response.ok) throw new Error(`app/${name}: HTTP ${response.status}`);
    const text = await response.text();
    const path = `/home/pyodide/${name}`;
    pyodide.FS.mkdirTree(path.slice(0, path.lastIndexOf("/")));
    pyodide.FS.writeFile(path, text);
  }));
  status("Drawing the page", "packages");
  app = pyodide.pyimport("qidicom_app");
  const rendered = await app.render();
  const [docs_json, render_items, root_ids] = rendered.toJs();
  rendered.destroy();
  post("render", { docs_json, render_items, root_ids, elapsed: performance.now() - t0 });
  // Load the DICOM stack in the background; inputs wait for it.
  conversionStackReady = (async () => {
    await pyodide.loadPackage(convert, { messageCallback: () => {} });
    // The conversions' description (qidicom.conversions): the page makes its pickers from it.
    post("conversions", { description: app.load_conversion_stack() });
    console.debug(`[qidicom worker] conversion stack ready after ${Math.round(performance.now() - t0)} ms`);
    post("stack-ready", { elapsed: performance.now() - t0 });
  })();
}

// A later stage's packages (e.g. "preview": pandas, which Bokeh's ColumnDataSource imports),
// loaded when Python first needs them (qidicom's webapp/stages.py awaits this), never at start-up.
self.qidicomLoadStage = (name) => {
  if (!stageLoads[name]) {
    const started = performance.now();
    stageLoads[name] = pyodide.loadPackage(stages[name] || [], { messageCallback: () => {} }).then(() => {
      console.debug(`[qidicom worker] stage ${name} loaded in ${Math.round(performance.now() - started)} ms`);
      post("stage-loaded", { stage: name, elapsed: performance.now() - t0 });
    });
  }
  return stageLoads[name];
};

let mounts = 0; // batches of chosen files mounted so far

// The chosen files are mounted read-only in Python's file system (Emscripten's WORKERFS: a
// file's bytes are read from its File object, synchronously, only when Python reads them),
// one folder per batch, and Python is given [name, path] pairs. A series' files are then
// never all in memory: their headers are parsed from their first 64 KiB, and the preview
// reads one file at a time into its volume, which is the one copy of the pixel data.
async function receiveFiles(mode, role, files) {
  await conversionStackReady;
  const folder = `/qidicom-files/${++mounts}`;
  pyodide.FS.mkdirTree(folder);
  pyodide.FS.mount(pyodide.FS.filesystems.WORKERFS,
    { blobs: files.map((file, index) => ({ name: String(index), data: file })) }, folder);
  app.receive_files(mode, role, files.map((file, index) => [file.webkitRelativePath || file.name, `${folder}/${index}`]));
  post("files-read", { mode, role, count: files.length });
}

// "Load sample data": the phantom study is made by qidicom.samples here, in Python, and taken
// as if its files had been chosen.
async function loadSample(mode) {
  await conversionStackReady;
  const counts = app.load_sample(mode);
  for (const [role, count] of counts.toJs()) post("files-read", { mode, role, count });
  counts.destroy();
  post("sample-loaded", { mode, elapsed: performance.now() - t0 });
}

const started = start().catch((error) => {
  console.error(error);
  post("fatal", { message: `The app could not start in this browser: ${String(error.message || error).split("\n").slice(-2).join(" ")}` });
  throw error;
});

self.onmessage = async (event) => {
  const msg = event.data;
  await started;
  try {
    if (msg.type === "rendered") {
      app.link(sendPatch);
      post("ready", { elapsed: performance.now() - t0 });
    } else if (msg.type === "patch") {
      app.apply_patch(msg.patch);
      post("idle");
    } else if (msg.type === "mode") {
      // In the same queue as files, so files chosen after switching go to the new mode's view.
      fileBatches = fileBatches.then(() => app.set_mode(msg.mode)).catch((error) => console.error(error));
    } else if (msg.type === "files") {
      // One batch at a time, in the order chosen: a later choice always wins.
      fileBatches = fileBatches
        .then(() => receiveFiles(msg.mode, msg.role, msg.files))
        .catch((error) => {
          console.error(error);
          post("notice", { message: "The chosen files could not be read (details are in the browser console)." });
        });
    } else if (msg.type === "sample") {
      fileBatches = fileBatches.then(() => loadSample(msg.mode)).catch((error) => {
        console.error(error);
        post("sample-loaded", { failed: true });
        post("notice", { message: "The sample data could not be made in this browser (details are in the browser console)." });
      });
    }
  } catch (error) {
    // Python errors are handled in qidicom_app; anything reaching here is a bug: log it, keep going.
    console.error(error);
    if (msg.type === "patch") post("idle");
  }
};
