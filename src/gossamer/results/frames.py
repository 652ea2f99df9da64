"""Tables as pandas DataFrames, for notebooks.

pandas is an optional dependency (``pip install 'gossamer[notebook]'``): a DataFrame is
what notebook users plot, filter and join, and a table type of our own would plug into
none of their tools. It is imported only when a frame is asked for, so gossamer runs
without it, and everything a frame shows is also in the plain numpy columns.

Each column's type comes from the values the table was made of (or, read back, from
the types recorded when it was written), never from how its text looks: booleans
(``pareto_optimal``) are ``bool``, counts ``int64``, measurements ``float64`` (NaN where
there is none), names strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gossamer.results.files import column_types, typed_column

INSTALL = "pip install 'gossamer[notebook]' (or pip install pandas)"


def data_frame(columns: Mapping[str, Sequence[Any]], what: str, plain: str) -> Any:
    """``columns`` as a pandas DataFrame, each column of the type of its values.

    Args:
        columns: named columns of equal length (numpy arrays or sequences of values).
        what: the method asking, named in the error without pandas (``Sweep.frame``).
        plain: where the same table is as numpy columns, named in that error too.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            f"{what} needs pandas, which gossamer does not install by default: {INSTALL}. "
            f"The same table is in {plain} as numpy columns."
        ) from None
    types = column_types(columns)
    return pd.DataFrame({name: typed_column(columns[name], types[name]) for name in columns})
