"""Names a model gives its table inputs and the layers that read them, made from the column names.

Why not the column names themselves: Keras refuses a `/` in a layer or input name ("km/h"), and a
SavedModel signature (and so every TFLite file) takes only `[A-Za-z0-9.][A-Za-z0-9_.-]*`: a column
"price ($)" or "1st value" trained, then failed to export. The data's model-facing dicts, the model's
inputs and its layers all use these names; messages and files for people keep the column names."""

from __future__ import annotations

import re
import unicodedata

NOT_ALLOWED = re.compile(r"[^0-9A-Za-z_.-]")
FIRST_ALLOWED = re.compile(r"[0-9A-Za-z.]")


def input_names(columns: list[str]) -> dict[str, str]:
    """Column name -> a unique input name: accents dropped (`größe` -> `gro_e`), every other character
    outside letters, digits and `_.-` made `_`, `c` put before a leading `_` or `-`, a number added to
    a name taken. The same columns in the same order always give the same names."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for i, column in enumerate(columns):
        plain = "".join(ch for ch in unicodedata.normalize("NFKD", str(column)) if not unicodedata.combining(ch))
        name = NOT_ALLOWED.sub("_", plain) or f"column{i}"
        if not FIRST_ALLOWED.match(name):
            name = f"c{name}"
        while name in used:
            name = f"{name}_{i}"
        out[column] = name
        used.add(name)
    return out
