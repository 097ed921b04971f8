"""The site's later package stages (app/packages.json), loaded when first needed.

The slice preview needs pandas (Bokeh's ColumnDataSource imports it), which the page's
start-up does not: the build puts it in the "preview" stage and the worker loads that stage
only when a preview is first opened (``qidicomLoadStage`` in worker.js). Under CPython or
``panel serve`` every package is installed already, and these calls return at once.
"""

from __future__ import annotations

import importlib.util

#: The module each stage provides, to tell whether it is installed outside the worker.
PROVIDES = {"preview": "pandas"}

#: Stages whose load has finished in this worker.
_LOADED: set[str] = set()


def _worker_loader():
    try:
        from js import qidicomLoadStage  # the worker's loader (absent outside the app's worker)
    except ImportError:
        return None
    return qidicomLoadStage


def is_loaded(stage: str) -> bool:
    """In the worker: only once its load has finished. A package's files appear while the
    stage is still loading (pandas before its dependencies), and importing it then leaves
    a half-initialised pandas behind for good; elsewhere: when the module is importable."""
    if stage in _LOADED:
        return True
    if _worker_loader() is not None:
        return False
    return importlib.util.find_spec(PROVIDES[stage]) is not None


async def load(stage: str) -> None:
    """Load a stage's packages in the worker (once; later calls wait for the same load)."""
    if is_loaded(stage):
        return
    await _worker_loader()(stage)  # the same promise for every caller while it loads
    importlib.invalidate_caches()
    _LOADED.add(stage)


def run_with(stage: str, schedule, action, waiting=None, failed=None) -> None:
    """Call ``action()`` with ``stage`` loaded: at once when it is, else after loading it
    (scheduled with ``schedule``, the state's ``run_later``), telling ``waiting()`` first
    and ``failed(message)`` if the packages could not be loaded."""
    if is_loaded(stage):
        action()
        return
    if waiting is not None:
        waiting()

    async def load_then_act() -> None:
        try:
            await load(stage)
        except Exception:
            from base import log_exception

            log_exception(f"loading the {stage} packages failed")
            if failed is not None:
                failed(f"The {stage} could not be loaded in this browser (details are in the browser console).")
            return
        try:
            action()
        except Exception:
            from base import log_exception

            log_exception(f"showing the {stage} failed")
            if failed is not None:
                failed(f"The {stage} failed unexpectedly (details are in the browser console).")

    schedule(load_then_act)
