// Byte-compiles Python sources with Pyodide's own interpreter (CPython 3.12 as built for the
// browser), so the site ships bytecode the browser would otherwise compile at every start.
//   node pycompile.mjs PYODIDE_DIR JOBS.json
// JOBS.json: [{"source": "in.zip", "target": "out.zip", "prefix": "/lib/python3.12/site-packages/",
//              "layout": "pycache" | "beside"}]
// Each target is a zip holding only the .pyc files; build/site.py merges them in. The .pyc
// files are "unchecked hash" ones (PEP 552): valid whatever the unpacked files' timestamps.
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [pyodideDir, jobsFile] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(resolve(pyodideDir, "pyodide.mjs")).href);
const pyodide = await loadPyodide({ indexURL: resolve(pyodideDir) + "/" });
const compileZip = pyodide.runPython(`
import importlib.util, sys, zipfile
from importlib._bootstrap_external import _code_to_hash_pyc

def compile_zip(source, target, prefix, layout):
    count = 0
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for name in sorted(archive.namelist()):
            if not name.endswith(".py") or ".dist-info/" in name or ".data/" in name:
                continue
            data = archive.read(name)
            try:
                code = compile(data, prefix + name, "exec", dont_inherit=True)
            except SyntaxError:
                continue  # not importable anyway (templates, Python 2 leftovers)
            folder, _, base = name.rpartition("/")
            folder = folder + "/" if folder else ""
            if layout == "pycache":
                pyc_name = f"{folder}__pycache__/{base[:-3]}.{sys.implementation.cache_tag}.pyc"
            else:
                pyc_name = name + "c"
            pyc = _code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False)
            out.writestr(zipfile.ZipInfo(pyc_name, (1980, 1, 1, 0, 0, 0)), bytes(pyc))
            count += 1
    return count
compile_zip
`);
const jobs = JSON.parse(readFileSync(jobsFile, "utf8"));
for (const job of jobs) {
  pyodide.FS.writeFile("/tmp/source.zip", readFileSync(job.source));
  const count = compileZip("/tmp/source.zip", "/tmp/target.zip", job.prefix, job.layout);
  writeFileSync(job.target, pyodide.FS.readFile("/tmp/target.zip"));
  console.log(`${job.source.split("/").pop()}: ${count} modules`);
}
