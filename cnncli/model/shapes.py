"""The lecture's output-size formula, (W - F + 2P)/S + 1, as Keras applies it.

Used by the builder (to explain a shape error before Keras raises an obscure
one) and by ``cnncli summary --explain``.

>>> w = window_output(32, 5, 1, "valid")
>>> w.size, w.formula
(28, '(32 - 5 + 0)/1 + 1 = 28')
>>> window_output(7, 2, 2, "valid").note
'(7 - 2 + 0) = 5 is not divisible by 2: Keras rounds down (padding valid), giving 3'
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowOutput:
    """One spatial dimension of a convolution or pooling layer."""

    w: int  # input size W
    f: int  # (effective) receptive field F
    s: int  # stride S
    p: float  # zero-padding P per side (may be fractional with padding "same")
    size: int  # output size, as Keras computes it
    formula: str  # the lecture's formula with the numbers filled in
    note: str | None  # rounding explained, when (W - F + 2P) is not divisible by S


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def window_output(w: int, f: int, s: int = 1, padding: str = "valid", dilation: int = 1,
                  *, pooling: bool = False):
    """Output size of a window of size `f` sliding with stride `s` over `w` values (of a
    `pooling` layer: its padded cells are left out of each window, not zeros)."""
    f_eff = (f - 1) * dilation + 1
    if padding == "same":
        size = math.ceil(w / s)
        total = max((size - 1) * s + f_eff - w, 0)
        p = total / 2
    elif padding == "causal":
        p = (f_eff - 1) / 2  # F - 1 zeros, all of them on the left
        size = math.ceil(w / s)
    else:  # valid
        p = 0
        size = math.floor((w - f_eff) / s) + 1
    numerator = w - f_eff + 2 * p
    exact = numerator / s + 1
    formula = f"({w} - {f_eff} + {_num(2 * p)})/{s} + 1 = {_num(exact)}"
    note = None
    if not float(numerator / s).is_integer():
        how = "up" if size > exact else "down"
        why = f"padding {padding}" if padding == "valid" else \
            f"padding {padding} gives ceil(W/S) = ceil({w}/{s})"
        note = (
            f"({w} - {f_eff} + {_num(2 * p)}) = {_num(numerator)} is not divisible by {s}: "
            f"Keras rounds {how} ({why}), giving {size}"
        )
    if padding != "valid" and not float(p).is_integer():
        cells = "cell" if 2 * p == 1 else "cells"
        what = (f"{cells} in all, so Keras pads {math.floor(p)} before and {math.ceil(p)} "
                "after (pooling leaves them out of its windows: they are not zeros)") \
            if pooling else (f"{'zero' if 2 * p == 1 else 'zeros'} in all, so Keras puts "
                             f"{math.floor(p)} before and {math.ceil(p)} after")
        note = f"padding {padding} needs {_num(2 * p)} {what}" + (f"; {note}" if note else "")
    return WindowOutput(w=w, f=f_eff, s=s, p=p, size=size, formula=formula, note=note)


def transposed_output(w: int, f: int, s: int = 1, padding: str = "valid",
                      dilation: int = 1, output_padding: int | None = None) -> str:
    """A transposed convolution's output size, which grows: the formula run backwards
    (with an `output_padding` OP, Keras' other formula: P is F // 2 for ``same``).

    >>> transposed_output(3, 3, 2, "same"), transposed_output(3, 3, 2, "valid")
    ('W x S = 3 x 2 = 6', 'W x S + max(F - S, 0) = 3 x 2 + 1 = 7')
    >>> transposed_output(9, 3, 2, "valid", output_padding=1)
    '(W - 1) x S + F - 2P + OP = 8 x 2 + 3 - 0 + 1 = 20'
    """
    f_eff = (f - 1) * dilation + 1
    if output_padding is not None:
        p = f_eff // 2 if padding == "same" else 0
        return (f"(W - 1) x S + F - 2P + OP = {w - 1} x {s} + {f_eff} - {2 * p} + "
                f"{output_padding} = {(w - 1) * s + f_eff - 2 * p + output_padding}")
    if padding == "same":
        return f"W x S = {w} x {s} = {w * s}"
    return f"W x S + max(F - S, 0) = {w} x {s} + {max(f_eff - s, 0)} = " \
           f"{w * s + max(f_eff - s, 0)}"


def as_tuple(value, n: int) -> tuple[int, ...]:
    """Keras' int-or-tuple arguments (``kernel_size: 3`` or ``[3, 5]``) as an n-tuple."""
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),) * n
