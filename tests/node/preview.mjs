// Pyodide (dist/'s own build and packages) decodes reference series for the slice preview:
//   node preview.mjs DIST FOLDER   (FOLDER holds one sub-folder per series)
// Prints, per series, what qidicom.preview read: shape, dtype, a checksum of the stored
// pixels and a few values, or why the preview is unavailable.
import { readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [dist, inputs] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(resolve(dist, "pyodide/pyodide.mjs")).href);
const pyodide = await loadPyodide({ indexURL: resolve(dist, "pyodide") + "/" });
await pyodide.loadPackage(["qidicom", "pillow"], { messageCallback: () => {} });
for (const series of readdirSync(inputs)) {
  pyodide.FS.mkdirTree(`/in/${series}`);
  for (const name of readdirSync(join(inputs, series))) {
    pyodide.FS.writeFile(`/in/${series}/${name}`, readFileSync(join(inputs, series, name)));
  }
}
console.log(pyodide.runPython(`
import json
from pathlib import Path
import numpy as np
from qidicom import preview

result = {}
for folder in sorted(Path("/in").iterdir()):
    pairs = [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
    try:
        volume = preview.read_series_volume(pairs)
    except preview.PreviewUnavailable as error:
        result[folder.name] = {"unavailable": str(error)}
        continue
    result[folder.name] = {"shape": list(volume.shape), "dtype": str(volume.stored.dtype),
                           "sum": int(volume.stored.astype(np.int64).sum()),
                           "values": volume.array[::5, ::7, :].astype(np.int64).ravel().tolist()}
json.dumps(result)
`));
