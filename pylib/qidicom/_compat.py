"""Run-time shims that let highdicom import under Pyodide.

Pyodide has no ``_multiprocessing``, so ``concurrent.futures.ProcessPoolExecutor``
cannot be imported there, yet highdicom imports it at module level (it only uses it
when asked for ``workers > 0``, which qidicom never does). Under Pyodide we install a
stand-in that refuses construction. On CPython nothing changes.
"""

import sys

IS_PYODIDE = sys.platform == "emscripten"


def _install_process_pool_stand_in() -> None:
    import concurrent.futures as futures

    try:
        import _multiprocessing  # noqa: F401
        return
    except ImportError:
        pass

    class ProcessPoolExecutor:  # pragma: no cover - exercised under Pyodide only
        def __init__(self, *args, **kwargs):
            raise RuntimeError("process pools are not available in this runtime")

    futures.ProcessPoolExecutor = ProcessPoolExecutor
    sys.modules.setdefault("concurrent.futures.process", type(sys)("concurrent.futures.process"))
    sys.modules["concurrent.futures.process"].ProcessPoolExecutor = ProcessPoolExecutor


if IS_PYODIDE:
    _install_process_pool_stand_in()
