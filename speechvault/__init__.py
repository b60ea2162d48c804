"""speechvault: shared kernel (paper parameters, errors, version) of the speechvault packages.

The data flow lives in the sibling packages: ``hashing`` (audio -> features -> model -> code),
``store`` (code + encrypted blob <-> DuckDB), ``model_export`` (training and TFLite export),
and the thin front ends ``cli`` and ``tui``.
"""

__version__ = "0.1.0"
