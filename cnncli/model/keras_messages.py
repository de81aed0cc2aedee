"""The sentence of a Keras error a user needs, without Keras' wrapping (used where
Keras builds a layer or loads weights, so the message names what is wrong)."""

from __future__ import annotations

import re


def keras_reason(exc: BaseException) -> str:
    """The sentence of a Keras error that says what is wrong: Keras wraps it in "Exception
    encountered when calling X.call()", terminal colour codes and the arguments received.

    >>> keras_reason(ValueError("Exception encountered when calling Reshape.call().\\n\\n"
    ...                         "\\x1b[1mThe total size must be unchanged.\\x1b[0m\\n\\n"
    ...                         "Arguments received by Reshape.call():"))
    'The total size must be unchanged.'

    A weights file that does not fit: how many layers, and the first one's reason.

    >>> keras_reason(ValueError("A total of 3 objects could not be loaded. Example error "
    ...                         "message for object <Conv2D name=c1, built=True>:\\n\\n"
    ...                         "The shape of the target variable ... must match. "
    ...                         "variable.shape=(3, 3, 1, 8), Received: value.shape=(3, 3, "
    ...                         "1, 4). Target variable: <Variable ... value=[[0.1 ...\\n"))
    "3 layers could not be loaded; the first, 'c1', needs (3, 3, 1, 8), the file holds (3, 3, 1, 4)"
    """
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    many = re.match(r"A total of (\d+) objects could not be loaded", lines[0] if lines else "")
    if many and len(lines) > 1:
        layer = re.search(r"<\w+ name=([^,>]+)", lines[0])
        reason = ": " + lines[1].split(" Target variable:")[0]
        shapes = re.search(r"variable\.shape=(\(.*?\)), Received: value\.shape=(\(.*?\))",
                           reason)
        if shapes:
            reason = f", needs {shapes[1]}, the file holds {shapes[2]}"
        if many[1] == "1":
            return f"{f'layer {layer[1]!r}' if layer else 'a layer'} could not be loaded{reason}"
        first = f"the first, '{layer[1]}'" if layer else "the first"
        return f"{many[1]} layers could not be loaded; {first}{reason}"
    for line in lines:
        if not line.startswith(("Exception encountered when calling",
                                "Arguments received by")):
            return line
    return type(exc).__name__
