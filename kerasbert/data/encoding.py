"""Input files are UTF-8; one that is not gets one line naming the file, the line and the byte.

>>> not_utf8_message("train.tsv", 3, b"caf\\xe9\\tpositive", 3)
"train.tsv:3: not UTF-8 (byte 0xe9 at column 4, 'é' in Latin-1); kerasbert reads UTF-8 text: convert the file, \
e.g. iconv -f latin1 -t utf-8 train.tsv > utf8.tsv"
"""

import os

BOM = b"\xef\xbb\xbf"


class NotUTF8Error(ValueError):
    """A file that is not UTF-8 text; the message names the file, the line and the byte."""


def not_utf8_message(path, line_number, line, start):
    """The one-line message for byte `start` of `line` (bytes; line `line_number` of `path`)."""
    byte = line[start]
    _, ext = os.path.splitext(os.fspath(path))
    return (
        f"{path}:{line_number}: not UTF-8 (byte {byte:#04x} at column {start + 1}, "
        f"{bytes([byte]).decode('latin-1')!r} in Latin-1); kerasbert reads UTF-8 text: convert the file, "
        f"e.g. iconv -f latin1 -t utf-8 {path} > utf8{ext}"
    )


def read_utf8(path):
    """The text of a UTF-8 file (a byte-order mark dropped, line ends kept).

    Raises:
        NotUTF8Error: with `not_utf8_message` of the first byte that is not UTF-8.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(BOM):
        data = data[len(BOM) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line_end = data.find(b"\n", e.start)
        line = data[line_start : line_end if line_end >= 0 else len(data)]
        number = data.count(b"\n", 0, e.start) + 1
        raise NotUTF8Error(not_utf8_message(path, number, line, e.start - line_start)) from None
