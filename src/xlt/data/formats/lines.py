"""Line-aligned plain-text files (WMT, Tatoeba, ``xlt translate --input``): one sentence per line, so line k of
one file and line k of its translation are the same sentence."""

from __future__ import annotations

from pathlib import Path

from xlt.errors import XltError


def read_lines(path: Path, what: str = "file") -> list[str]:
    """The lines of ``path`` without their ends (``\\n`` or ``\\r\\n``; a final newline optional, an empty file
    no lines); errors name the file as ``what``."""
    if not path.is_file():
        raise XltError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise XltError(f"{what} {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise XltError(f"cannot read {what} {path}: {err.strerror}") from None
    text = text.removesuffix("\n")
    return [line.removesuffix("\r") for line in text.split("\n")] if text else []
