"""``--help`` that folds a long word at 80 columns instead of cutting it (issue 15, "Low").

Why: typer draws the options as a rich table whose columns cut a word wider than the column
with an ellipsis, so at 80 columns ``--holdout-speak…``, ``$SPEECHVAULT_MODEL_CA…`` and
``pip install 'speechvault[encrypt-in…`` could not be read or copied. Typer creates those
columns itself (``Table.add_row`` on a table without columns) and offers no setting, so this
gives it a ``Table`` whose implicit columns fold (break the word onto the next line) instead.
Applied only when help is being printed: the table module is not imported otherwise.
"""

from __future__ import annotations

__all__ = ["fold_long_words", "wants_help"]


def wants_help(argv: list[str]) -> bool:
    """Whether this command line prints help (``-h``/``--help``, or no arguments at all)."""
    return len(argv) <= 1 or any(a in ("-h", "--help") for a in argv[1:])


def fold_long_words() -> None:
    import typer.rich_utils as ru
    from rich.columns import Columns
    from rich.table import Table
    from rich.text import Text

    if getattr(ru.Table, "_folds", False):
        return

    class FoldingTable(Table):
        _folds = True

        def add_row(self, *renderables, **kwargs):
            while len(self.columns) < len(renderables):
                self.add_column(overflow="fold")
            for column, cell in zip(self.columns, renderables):
                if isinstance(cell, Text) and cell.plain.startswith("-"):
                    column.no_wrap = True  # an option's name stays whole: it is copied as is
            return super().add_row(*renderables, **kwargs)

    def joined(items, *args, **kwargs):
        """An option's help parts (text, env var, default) as one text that wraps and folds;
        typer puts them in ``rich.columns.Columns``, which cuts a long word."""
        if args or kwargs or not all(isinstance(i, Text) for i in items):
            return Columns(items, *args, **kwargs)
        text = Text(" ").join(items)
        text.overflow = "fold"
        return text

    ru.Table = FoldingTable
    ru.Columns = joined
