r"""Text that came from a user or a file name, made safe to show: control characters
(ESC starts a terminal's colour, title and clear-screen sequences; a font has no glyph
for them) are shown escaped, as Python writes them.

>>> printable("photo\x1b[2J.png"), printable("a\nb", one_line=True)
('photo\\x1b[2J.png', 'a\\nb')
>>> printable("photo\u202egnp.exe"), printable("\ufeffcat.jpg")
('photo\\u202egnp.exe', '\\ufeffcat.jpg')
>>> printable("แมว\u200bดำ") == "แมว\u200bดำ"  # Thai separates words with U+200B
True
>>> printable(b"\x9b31mred.png".decode("utf-8", "surrogateescape"))  # not UTF-8: a byte
'\\x9b31mred.png'
"""

from __future__ import annotations

import os
import re
import shlex

#: Bidirectional controls: a right-to-left override shows "photo\u202egnp.exe" as
#: "photoexe.png", so a name could be made to look like another.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
#: A byte order mark (U+FEFF, no width) at the start of a name makes one that looks right
#: and is not. (Zero-width spaces are left: Thai and Khmer separate words with them.)
_INVISIBLE = "\ufeff"
_CONTROL = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}{_INVISIBLE}]")
_CONTROL_OR_NEWLINE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI}{_INVISIBLE}]")
#: A file name's bytes that are not UTF-8, which Python holds as lone surrogates: written
#: out as they are, 0x9B is a terminal's CSI (ESC [) on an 8-bit terminal (`as_text`).
_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: str, *, one_line: bool = False) -> str:
    """`text` with control characters escaped (``\\x1b``), and a file name's bytes that
    are not UTF-8 (`as_text`); with `one_line`, newlines too (an error paragraph cannot
    be made to show a forged line).

    >>> printable("a\\x1bb\\u009b2J\\u0085"), printable("a\\nb", one_line=True)
    ('a\\\\x1bb\\\\x9b2J\\\\x85', 'a\\\\nb')
    """
    pattern = _CONTROL_OR_NEWLINE if one_line else _CONTROL
    return pattern.sub(lambda m: repr(m.group())[1:-1], as_text(text))


def as_text(name: str) -> str:
    """`name` (a file name) with the bytes it held that were not UTF-8 as ``\\xNN``: text
    that can be written anywhere (JSON, a model file, a plot), where Python holds such
    bytes as lone surrogates that neither UTF-8 nor a font takes.

    >>> as_text(b"caf\\xe9".decode("utf-8", "surrogateescape")), as_text("thé")
    ('caf\\\\xe9', 'thé')
    """
    if not _SURROGATE.search(name):
        return name
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def from_text(text: str) -> str:
    """`as_text` undone: each ``\\xNN`` of a byte from 0x80 back to the byte a file name
    held (a path a JSON record wrote, to open the file it names).

    >>> name = b"caf\\xe9".decode("utf-8", "surrogateescape")
    >>> as_text(name), from_text(as_text(name)) == name
    ('caf\\\\xe9', True)
    """
    return _ESCAPED_BYTE.sub(lambda m: bytes([int(m[1], 16)]).decode("utf-8", "surrogateescape"),
                             text)


_ESCAPED_BYTE = re.compile(r"\\x([89a-f][0-9a-f])")


def arg(path: object) -> str:
    """`path` as a shell takes it in a command a hint gives to copy: quoted when it holds
    a space, a glob's or the shell's characters; ``./`` before one that begins with ``-``
    (read as an option).

    >>> arg("runs/mnist/1"), arg("runs/my photos/1"), arg("runs/[bold]n/1"), arg("-o/1")
    ('runs/mnist/1', "'runs/my photos/1'", "'runs/[bold]n/1'", './-o/1')
    """
    text = str(path)
    return shlex.quote(f"./{text}" if text.startswith("-") else text)


def cell(text: str) -> str:
    """`text` for a CSV cell a spreadsheet may open: `printable`, and a leading ``'``
    where it would otherwise be read as a formula (``=``, ``+``, ``-``, ``@``, or a tab
    before one), as OWASP advises; a number (-1) is left as it is.

    >>> cell("=1+2"), cell("@SUM(A1)"), cell("-1"), cell("cat")
    ("'=1+2", "'@SUM(A1)", '-1', 'cat')
    >>> cell("+cmd|x!A0"), cell("-2+3+cmd|x!A0"), cell("\\t=1")
    ("'+cmd|x!A0", "'-2+3+cmd|x!A0", "'\\t=1")
    """
    text = printable(text)
    if text[:1] in ("=", "+", "-", "@", "\t") and not reads_as_number(text):
        return "'" + text
    return text


#: A number as cnncli's YAML reads one (YAML 1.2: no ``1_000``, ``nan`` or ``inf``).
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def reads_as_number(text: str) -> bool:
    """True for text that YAML would have read as a number without its quotes (and that
    a spreadsheet reads as one).

    >>> reads_as_number("8"), reads_as_number("1e-3"), reads_as_number("same")
    (True, True, False)
    >>> reads_as_number("nan"), reads_as_number("1_000")
    (False, False)
    """
    return _NUMBER.fullmatch(text.strip()) is not None


def composed(name: object) -> str:
    """`name` in Unicode's composed form (NFC), to compare names: macOS writes a folder
    'é' as 'e' and an accent, which prints the same.

    >>> composed("re\u0301d") == "r\u00e9d"
    True
    """
    import unicodedata

    return unicodedata.normalize("NFC", str(name))


def as_list(value) -> list:
    """A list parameter's value as a list: one string or path given alone is one item
    (Python's for-loop would take a string's characters: ``predict("7.png")`` read
    ``7``, ``.``, ``p``... and ``.`` is every image below the current folder).

    >>> as_list("7.png"), as_list(["a.png", "b.png"]), as_list(None)
    (['7.png'], ['a.png', 'b.png'], [])
    """
    if value is None:
        return []
    return [value] if isinstance(value, str | bytes | os.PathLike) else list(value)


def count(n: int, word: str, plural: str | None = None) -> str:
    """`n` and `word`, plural unless `n` is 1 (`plural`, else the word with an -s).

    >>> count(1, "epoch"), count(20, "step"), count(1_000, "image"), count(2, "batch", "batches")
    ('1 epoch', '20 steps', '1,000 images', '2 batches')
    """
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def some(items, shown: int = 3, sep: str = ", ") -> str:
    """The first `shown` of `items` joined by `sep`, and how many more there are: the
    examples an error or a warning gives of a long list.

    >>> some(["a.jpg", "b.jpg"]), some("abcde"), some(range(1_005), shown=2)
    ('a.jpg, b.jpg', 'a, b, c and 2 more', '0, 1 and 1,003 more')
    """
    items = [str(item) for item in items]
    more = f" and {len(items) - shown:,} more" if len(items) > shown else ""
    return sep.join(items[:shown]) + more


def size(n: float, *, memory: bool = False) -> str:
    """A number of bytes in the unit that keeps it short: decimal units (kB, MB, GB, TB)
    for files and activations, as the lecture's tables count them; with `memory`, binary
    ones (KiB, MiB, GiB), as the operating system and nvidia-smi count RAM and GPU memory.

    >>> size(3_136_000), size(2_680_000_000_000), size(195_312)
    ('3.1 MB', '2.7 TB', '195.3 kB')
    >>> size(1536 * 2**20, memory=True), size(80 * 2**30, memory=True), size(5, memory=True)
    ('1.5 GiB', '80.0 GiB', '5 B')
    """
    steps = ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")) if memory else \
        ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"))
    for scale, unit in steps:
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:.0f} B" if memory else f"{n / 1e3:,.1f} kB"


def short_count(n: int) -> str:
    """A count in the units of the lecture's tables.

    >>> short_count(138_357_544), short_count(113_688_580_000_000), short_count(950)
    ('138.36M', '113.69T', '950')
    """
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def percent(p: float, decimals: int = 2) -> str:
    """`p` as a percentage, never rounded to a certainty it is not: a probability short of
    1 is not 100%, one above 0 not 0%.

    >>> percent(0.9809), percent(0.999996), percent(0.0000004), percent(1.0), percent(0.97, 0)
    ('98.09%', '>99.99%', '<0.01%', '100.00%', '97%')
    """
    return _short_of_certain(p, f".{decimals}%", 10.0 ** -(decimals + 2))


def fraction(p: float, decimals: int = 4) -> str:
    """A share from 0 to 1 (an accuracy, a recall) with `decimals` digits, never rounded
    to a certainty it is not, as `percent`: 20,000 images right and one wrong is not an
    accuracy of 1.0000.

    >>> fraction(0.99996), fraction(0.00004), fraction(1.0), fraction(0.805, 3)
    ('>0.9999', '<0.0001', '1.0000', '0.805')
    """
    return _short_of_certain(p, f".{decimals}f", 10.0 ** -decimals)


def _short_of_certain(p: float, spec: str, step: float) -> str:
    """`p` formatted by `spec`, or ``>`` the largest value short of 1 (``<`` the smallest
    above 0) that `spec` shows, when `p` would be shown as 1 (0) and is not."""
    text = format(p, spec)
    if p < 1 and text == format(1, spec):
        return ">" + format(1 - step, spec)
    if p > 0 and text == format(0, spec):
        return "<" + format(step, spec)
    return text


def probability(p: float, decimals: int = 2) -> str:
    """A class's probability from a softmax (of two classes or more: cnncli's classifiers)
    as a percentage (`percent`), never 100% nor 0%: a softmax gives every class a share,
    and a float32 1.0 or 0.0 is a share rounded away.

    >>> probability(1.0), probability(0.0), probability(0.9809), percent(1.0)
    ('>99.99%', '<0.01%', '98.09%', '100.00%')
    """
    return percent(min(max(p, 1e-12), 1 - 1e-12), decimals)


def significant(p: float) -> float:
    """A probability or score with 6 significant digits, as cnncli's JSON gives them:
    3e-09 stays 3e-09 (rounded to 6 decimals it was 0.0, which no log-loss nor ranking
    can read).

    >>> significant(0.123456789), significant(3.14159e-09)
    (0.123457, 3.14159e-09)
    """
    return float(f"{p:.6g}")


def dims_text(shape) -> str:
    """A shape as the lecture's tables write a volume; an unknown size is ``?``.

    >>> dims_text((224, 224, 3)), dims_text([None, 28, 28, 1][1:]), dims_text(())
    ('224x224x3', '28x28x1', '')
    """
    return "x".join("?" if d is None else str(d) for d in shape)


def shorten(text: str, width: int, mark: str = "...") -> str:
    """`text` cut to at most `width` characters, `mark` (``...``, or ``…``) ending what
    was cut.

    >>> shorten("convolution", 8), shorten("conv", 8), shorten("convolution", 8, "…")
    ('convo...', 'conv', 'convolu…')
    """
    return text if len(text) <= width else text[:width - len(mark)] + mark


def first_line(message: object, limit: int = 300) -> str:
    """The first non-blank line of `message` (a library's error can be pages of log), at
    most `limit` characters; for an error that says nothing, its type's name.

    >>> first_line(ValueError("\\n  Op failed: bad shape\\n  at line 3"))
    'Op failed: bad shape'
    >>> first_line(TimeoutError())
    'TimeoutError'

    TensorFlow's operation names around its message are left out:

    >>> first_line("{{function_node __wrapped__Sub_device_/job:localhost/replica:0/task:0/"
    ...            "device:CPU:0}} Incompatible shapes: [2] vs. [2,10] [Op:Sub] name: ")
    'Incompatible shapes: [2] vs. [2,10]'
    """
    empty = type(message).__name__ if isinstance(message, BaseException) else ""
    line = next((line.strip() for line in str(message).splitlines() if line.strip()), empty)
    line = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line)
    return re.sub(r"\s*\[Op:\w+\]( name:.*)?$", "", line)[:limit]
