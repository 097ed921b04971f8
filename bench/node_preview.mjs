// The preview's library part under Pyodide (dist/'s build, in Node): a series folder read and
// decoded (qidicom.preview.read_series_volume), the three first slices made, and the
// per-change slice cost. node bench/node_preview.mjs DIST SERIES_FOLDER
import { readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [dist, folder] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(resolve(dist, "pyodide/pyodide.mjs")).href);
const pyodide = await loadPyodide({ indexURL: resolve(dist, "pyodide") + "/" });
await pyodide.loadPackage(["qidicom", "pillow"], { messageCallback: () => {} });
pyodide.runPython("import qidicom.preview");
const names = readdirSync(folder).sort();
const t0 = performance.now();
// The files into Pyodide's memory file system; Python takes them as (name, bytes) pairs,
// as the app's worker hands them over.
pyodide.FS.mkdirTree("/series");
for (const name of names) pyodide.FS.writeFile(`/series/${name}`, readFileSync(join(folder, name)));
console.log(pyodide.runPython(`
import json, time, statistics
import numpy as np
from qidicom import preview as qp
started = time.perf_counter()
from pathlib import Path
pairs = [(p.name, p.read_bytes()) for p in sorted(Path("/series").iterdir())]
from qidicom.readers import read_dicom_series
series = read_dicom_series(pairs)  # what the app's state does when the files arrive
parse_s = time.perf_counter() - started
volume = qp.series_volume(series, dict(pairs))  # what the preview adds: the pixels
read_s = time.perf_counter() - started
planes = {p: qp.plane_geometry(volume.affine, volume.shape, p) for p in qp.PLANES}
first = [qp.real_slice(volume, g, g.count // 2) for g in planes.values()]
first_s = time.perf_counter() - started
costs = {}
rng = np.random.default_rng(0)
for name, g in planes.items():
    times = []
    for _ in range(20):
        t = time.perf_counter(); qp.real_slice(volume, g, int(rng.integers(0, g.count))); times.append((time.perf_counter() - t) * 1000)
    costs[name] = {"median_ms": round(statistics.median(times), 1), "p95_ms": round(float(np.percentile(times, 95)), 1)}
json.dumps({"parse_headers_s": round(parse_s, 2), "decode_pixels_s": round(read_s - parse_s, 2), "read_and_decode_s": round(read_s, 2), "read_to_three_slices_s": round(first_s, 2), "slice_ms": costs,
            "shape": list(volume.shape)})
`));
console.log(JSON.stringify({ total_with_handover_s: ((performance.now() - t0) / 1000).toFixed(2) }));
