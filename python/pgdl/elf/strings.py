"""DT_STRTAB: read whole, or a page at a time where few of its strings are wanted."""

from __future__ import annotations

from .format import BLOCK, DT_STRSZ, DT_STRTAB, MAX_TABLE, ElfError

def string_table(obj) -> bytes:
    """DT_STRTAB, whole.  Not kept on the object: only the few objects whose symbols
    are searched need it after open_elf(), and pgdl.dynsym keeps its own copy."""
    start, size = _string_table_range(obj)
    return obj.read_vaddr(start, size)


def _string_table_range(obj) -> tuple[int, int]:
    strtab = obj.dynamic_value(DT_STRTAB)
    strsz = obj.dynamic_value(DT_STRSZ)
    if strtab is None or strsz is None:
        raise ElfError("dynamic section has no string table")
    if strsz > MAX_TABLE:
        raise ElfError(f"absurd string table size ({strsz})")
    return strtab, strsz


class PagedStrings:
    """DT_STRTAB read a page at a time, as strings are asked for: where only a
    few of its strings are wanted (DT_NEEDED, SONAME and version names when a
    file is opened; the names libLLVM's 3 MB table is searched for)."""

    PAGE = BLOCK

    def __init__(self, obj):
        self.obj = obj
        self.start, self.size = _string_table_range(obj)
        self.pages: dict[int, bytes] = {}

    def _page(self, n: int) -> bytes:
        page = self.pages.get(n)
        if page is None:
            at = n * self.PAGE
            page = self.pages[n] = self.obj.read_vaddr(self.start + at, min(self.PAGE, self.size - at))
        return page

    def string(self, offset: int) -> str:
        if offset < 0 or offset >= self.size:
            raise ElfError(f"string offset {offset:#x} is outside the string table")
        parts = []
        n, at = divmod(offset, self.PAGE)
        length = 0
        while True:
            page = self._page(n)
            end = page.find(b"\0", at)
            if end >= 0:
                parts.append(page[at:end])
                return b"".join(parts).decode("utf-8", "surrogateescape")
            parts.append(page[at:])
            length += len(page) - at
            n, at = n + 1, 0
            if n * self.PAGE >= self.size:
                raise ElfError("unterminated string in string table")
            if length > MAX_NAME:
                raise ElfError(_TOO_LONG)


# No real name comes near this; reading each name of a table without NULs to
# its end would cost names x table size.
MAX_NAME = 1 << 15


_TOO_LONG = f"string in string table longer than {MAX_NAME} bytes"


def cstring(table: bytes, offset: int) -> str:
    if offset < 0 or offset >= len(table):
        raise ElfError(f"string offset {offset:#x} is outside the string table")
    end = table.find(b"\0", offset, offset + MAX_NAME + 1)
    if end < 0:
        raise ElfError("unterminated string in string table" if len(table) <= offset + MAX_NAME else _TOO_LONG)
    return table[offset:end].decode("utf-8", "surrogateescape")
