// Node smoke test of the built site: loads dist/'s Pyodide and packages exactly as listed in
// dist/pyodide/pyodide-lock.json, converts a label map + series + metadata to a SEG with
// qidicom, and writes the SEG for the Python side of the test to check.
//   node smoke.mjs DIST OUT.dcm LABELMAP METADATA DICOM...   [--app]
// With --app it also builds the web app's Panel document (as the worker does), which needs a
// stand-in for XMLHttpRequest: Panel imports it from `js`, though never calls it here.
import { readFileSync, writeFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const args = process.argv.slice(2);
const withApp = args.includes("--app");
const [dist, out, labelmap, metadata, ...series] = args.filter((a) => a !== "--app");
const { loadPyodide } = await import(pathToFileURL(resolve(dist, "pyodide/pyodide.mjs")).href);

const times = {};
let t = performance.now();
const lap = (name) => { const now = performance.now(); times[name] = Math.round(now - t); t = now; };

const pyodide = await loadPyodide({ indexURL: resolve(dist, "pyodide") + "/" });
lap("pyodide");
await pyodide.loadPackage(["qidicom"], { messageCallback: () => {} });
lap("load_qidicom");
pyodide.runPython("import qidicom.seg");
lap("import_qidicom");

// Inputs go through the in-memory file system; Python reads them as (name, bytes) pairs,
// the form the browser app hands to the library.
const copyIn = (path, folder) => {
  pyodide.FS.mkdirTree(folder);
  pyodide.FS.writeFile(`${folder}/${basename(path)}`, readFileSync(path));
  return `${folder}/${basename(path)}`;
};
pyodide.globals.set("labelmap_path", copyIn(labelmap, "/input"));
pyodide.globals.set("metadata_path", copyIn(metadata, "/input"));
pyodide.globals.set("series_paths", pyodide.toPy(series.map((path) => copyIn(path, "/input/series"))));
const result = pyodide.runPython(`
from pathlib import Path
from qidicom.seg import segmentation_from_files

def pair(path):
    return (Path(path).name, Path(path).read_bytes())

import time
steps = []
started = time.perf_counter()
result = segmentation_from_files(
    [pair(labelmap_path)], pair(metadata_path), [pair(p) for p in series_paths],
    progress=lambda message, fraction: steps.append((message, round(time.perf_counter() - started, 3))),
)
(result.data, result.filename, steps)
`).toJs();
lap("convert");
const [data, filename, stepTimes] = result;
const progressSteps = stepTimes.length;
times.steps = stepTimes.map(([message, seconds]) => `${seconds}s ${message}`);
writeFileSync(out, data);

if (withApp) {
  globalThis.XMLHttpRequest = class XMLHttpRequest {};
  await pyodide.loadPackage(["panel", "pyodide-http"], { messageCallback: () => {} });
  lap("load_panel");
  // The app is several modules (and the editor and preview packages): write every one the build lists.
  for (const name of JSON.parse(readFileSync(resolve(dist, "app/packages.json"))).modules) {
    const path = `/home/pyodide/${name}`;
    pyodide.FS.mkdirTree(path.slice(0, path.lastIndexOf("/")));
    pyodide.FS.writeFile(path, readFileSync(resolve(dist, "app", name)));
  }
  const rendered = (await pyodide.runPythonAsync("import qidicom_app\nawait qidicom_app.render()")).toJs();
  lap("app_render");
  times.app_roots = JSON.parse(rendered[2]).length;
}
console.log(JSON.stringify({ filename, bytes: data.length, progressSteps, times }));
