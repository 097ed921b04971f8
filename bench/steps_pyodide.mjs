// bench/steps.py's breakdown of a SEG write under Pyodide in Node: dist/'s Pyodide and
// packages (python3 build/site.py build), with qidicom taken from --pylib (default: this
// work tree's pylib, so no site rebuild is needed to profile a change).
//   node bench/steps_pyodide.mjs [--type binary|labelmap] [--compress none] [--runs 2] [--hd]
//                                [--profile] [--pylib DIR] [--schemas DIR] [--dist DIR]
// --profile: then one more whole library call under cProfile, its top functions printed.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const here = dirname(fileURLToPath(import.meta.url));
const { values: opt } = parseArgs({ options: {
  type: { type: "string", default: "binary" }, compress: { type: "string", default: "none" },
  runs: { type: "string", default: "2" }, hd: { type: "boolean", default: false },
  profile: { type: "boolean", default: false },
  pylib: { type: "string", default: resolve(here, "../pylib") }, schemas: { type: "string" },
  dist: { type: "string", default: resolve(here, "../dist") }, work: { type: "string", default: resolve(here, "work") },
} });
const schemas = opt.schemas ?? resolve(opt.pylib, "../schemas");
const { loadPyodide } = await import(pathToFileURL(resolve(opt.dist, "pyodide/pyodide.mjs")).href);
let t = performance.now();
const pyodide = await loadPyodide({ indexURL: resolve(opt.dist, "pyodide") + "/" });
const boot = (performance.now() - t) / 1000; t = performance.now();
await pyodide.loadPackage(["qidicom"], { messageCallback: () => {} });  // qidicom's dependencies
const packages = (performance.now() - t) / 1000;
const copyTree = (src, dst) => {
  pyodide.FS.mkdirTree(dst);
  for (const name of readdirSync(src)) {
    const path = join(src, name);
    if (statSync(path).isDirectory()) { if (name !== "__pycache__") copyTree(path, `${dst}/${name}`); }
    else pyodide.FS.writeFile(`${dst}/${name}`, readFileSync(path));
  }
};
copyTree(resolve(opt.pylib, "qidicom"), "/live/pylib/qidicom");
copyTree(schemas, "/live/schemas");
pyodide.FS.writeFile("/live/steps.py", readFileSync(join(here, "steps.py")));
const seg = join(opt.work, "seg");
pyodide.FS.mkdirTree("/in/ct");
for (const name of ["labels.nrrd", "seg-meta.json"]) pyodide.FS.writeFile(`/in/${name}`, readFileSync(join(seg, name)));
for (const name of readdirSync(join(seg, "ct"))) pyodide.FS.writeFile(`/in/ct/${name}`, readFileSync(join(seg, "ct", name)));
pyodide.globals.set("options", pyodide.toPy({ type: opt.type, compress: opt.compress, runs: Number(opt.runs), hd: opt.hd,
                                                profile: opt.profile }));
const out = pyodide.runPython(`
import json, sys
from pathlib import Path
sys.path[:0] = ["/live/pylib", "/live"]
for name in [m for m in sys.modules if m.startswith("qidicom")]:
    del sys.modules[name]  # the wheel's copy, if loaded: use the tree given
import steps
parts = steps.time_highdicom_parts() if options["hd"] else {}
pair = lambda path: (Path(path).name, Path(path).read_bytes())
result = steps.breakdown(pair("/in/labels.nrrd"), pair("/in/seg-meta.json"), [pair(p) for p in sorted(Path("/in/ct").iterdir())],
                         options["type"], options["compress"], options["runs"])
result["highdicom_parts"] = {k: round(v, 3) for k, v in parts.items()}
if options["profile"]:
    import cProfile, io, pstats
    from qidicom.seg import segmentation_from_files
    profile = cProfile.Profile()
    profile.runcall(segmentation_from_files, [pair("/in/labels.nrrd")], pair("/in/seg-meta.json"),
                    [pair(p) for p in sorted(Path("/in/ct").iterdir())], segmentation_type=options["type"],
                    compress=options["compress"])
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(25)
    print(text.getvalue())
json.dumps(result)
`);
console.log(JSON.stringify({ boot_s: boot, load_packages_s: packages, ...JSON.parse(out) }));
