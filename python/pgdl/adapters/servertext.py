"""Text between the database's encoding and the bytes of files.

Inside pgdl, a name read from a file or passed to the file system (a path,
SONAME, DT_NEEDED entry, RPATH, symbol or version name) is a str that holds
its bytes exactly: UTF-8, with bytes that are not UTF-8 kept as lone
surrogates (Python's "surrogateescape", as os.fsdecode() does).  The server
itself handles these names as bytes in the database's encoding: LOAD 'é' in
a LATIN1 database stats the byte 0xE9, and a message shows a file's bytes
as they are.  So:

* from_server(): a name from SQL becomes the bytes the server would use;
* sql_text(): such a name as text for a query, if it is text of that encoding;
* shown(): any text pgdl returns becomes text of the database's encoding —
  the bytes decoded in that encoding, as the server would show them, with
  each byte that does not decode shown as \\xNN (four characters: backslash,
  x, two hex digits).  Nothing is lost and every row can be returned, in any
  database encoding.

SQL_ASCII databases take UTF-8 (PL/Python sends UTF-8 text there as it is);
an encoding Python has no codec for takes ASCII: every other byte escaped.
"""

from __future__ import annotations

# PostgreSQL's server encodings (src/common/encnames.c) and Python's codecs.
_CODECS = {
    "SQL_ASCII": "utf-8", "UTF8": "utf-8",
    "EUC_JP": "euc_jp", "EUC_CN": "gb2312", "EUC_KR": "euc_kr", "EUC_JIS_2004": "euc_jis_2004",
    "LATIN1": "iso8859-1", "LATIN2": "iso8859-2", "LATIN3": "iso8859-3", "LATIN4": "iso8859-4",
    "LATIN5": "iso8859-9", "LATIN6": "iso8859-10", "LATIN7": "iso8859-13", "LATIN8": "iso8859-14",
    "LATIN9": "iso8859-15", "LATIN10": "iso8859-16",
    "WIN1250": "cp1250", "WIN1251": "cp1251", "WIN1252": "cp1252", "WIN1253": "cp1253",
    "WIN1254": "cp1254", "WIN1255": "cp1255", "WIN1256": "cp1256", "WIN1257": "cp1257",
    "WIN1258": "cp1258", "WIN866": "cp866", "WIN874": "cp874",
    "KOI8R": "koi8_r", "KOI8U": "koi8_u",
    "ISO_8859_5": "iso8859-5", "ISO_8859_6": "iso8859-6", "ISO_8859_7": "iso8859-7",
    "ISO_8859_8": "iso8859-8",
}


def codec_of(server_encoding: str) -> str:
    """The Python codec for a database encoding (server_encoding's value)."""
    return _CODECS.get(server_encoding, "ascii")


def from_server(name: str, codec: str) -> str:
    """A name as SQL passed it, as the bytes the server would hand the file system."""
    if codec == "utf-8" or name.isascii():
        return name
    return name.encode(codec, "backslashreplace").decode("utf-8", "surrogateescape")


def shown(text: str, codec: str) -> str:
    """pgdl's text (file bytes as surrogates) as text of the database's encoding."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode(codec, "backslashreplace")


def sql_text(name: str, codec: str) -> str | None:
    """A name (its bytes, as from_server() holds them) as text for a query;
    None if those bytes are not text of the database's encoding."""
    if name.isascii():
        return name
    try:
        return name.encode("utf-8", "surrogateescape").decode(codec)
    except UnicodeDecodeError:
        return None
