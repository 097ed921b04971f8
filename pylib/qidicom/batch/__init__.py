"""Batch conversion of whole collections: a manifest of cases, run on a local process pool
or a Dask cluster, resumable, with a report per case.

    from qidicom.batch import run_batch
    report = run_batch("cases.csv", "out/")                   # local processes
    report = run_batch(dataframe, "s3://bucket/out", client)   # an existing distributed.Client

The command line is ``qidicom batch MANIFEST --output-directory DIR``. Dask, fsspec and
tqdm come with the ``batch`` extra; the rest of qidicom never imports them.
"""

from qidicom.batch.cases import Case, CaseResult, run_case
from qidicom.batch.manifest import ManifestError, load_cases, read_rows
from qidicom.batch.report import BatchReport
from qidicom.batch.run import run_batch

__all__ = ["BatchReport", "Case", "CaseResult", "ManifestError", "load_cases", "read_rows", "run_batch", "run_case"]
