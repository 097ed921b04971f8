"""qidicom: quantitative-imaging results to standard DICOM (SEG, Parametric Map, TID 1500 SR).

One conversion core for the command line, the browser app (Pyodide) and notebooks.
Every reader takes bytes or file-like objects as well as paths, because a browser has
no paths.
"""

from qidicom import _compat  # noqa: F401  (must run before highdicom is imported)
from qidicom.errors import QidicomError

__version__ = "0.1.0"

__all__ = ["QidicomError", "__version__"]
