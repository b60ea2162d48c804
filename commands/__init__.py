"""The command-line layer under ``cli.py`` (typer lives here and in ``cli.py`` only): ``kit``
(what every command shares: output, errors, progress, options), ``experiments`` (the paper's
experiments and the benchmarks), ``help_format`` (``--help`` on a terminal)."""
