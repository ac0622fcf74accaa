"""The server's error text in its own language: PostgreSQL's message catalog
(postgres-NN.mo) for its message, detail and hint, glibc's (libc.mo) for what
dlerror() and strerror() contribute, as the backend prints them for its
lc_messages.

pgdl's predictions are built in English, the catalogs' msgids.  A text is put
back into the catalog's terms by the msgid whose printf pattern it matches
(the one with the most fixed text, when several do), and the translation is
filled with the same arguments.  Arguments stay as they are -- file names,
symbols, numbers -- except the two PostgreSQL takes from the C library:
strerror()'s text (%m) and, in `could not load library "%s": %s`, dlerror()'s
(glibc's dlerror.c: "objname: _(errstring)" and ": strerror" when there is an
errno; an errstring built at run time, such as `undefined symbol: x`, has no
msgid and stays English, as in glibc).

Codesets: PostgreSQL binds its catalog to the database encoding (and to
LC_CTYPE's codeset under SQL_ASCII); glibc converts its catalog to LC_CTYPE's
codeset.  Into ASCII (LC_CTYPE C) each other character becomes "?" (seen on
the real server: "nicht ?ffnen"); a codeset other than UTF-8 and ASCII is not
modelled: that text is left English and the language note says so.

Without a catalog for the language, PostgreSQL's text is its msgids, and
glibc's part is still translated if glibc has one (Debian has a Dutch libc.mo
and no Dutch postgres-NN.mo)."""

from __future__ import annotations

import os
import re
import struct
from functools import lru_cache

from .. import filestate, rootfs
from ..errors import PgError
from ..record import Value
from ..server import Messages

LIBC_LOCALEDIR = "/usr/share/locale"         # glibc's compiled-in _nl_default_dirname (Debian, Fedora, ...)
LOAD_FAILED = 'could not load library "%s": %s'   # dfmgr.c: the one message whose argument is dlerror()'s

_CONVERSION = re.compile(r"%(?:(\d+)\$)?[-+ 0#']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|z|j|t|L|q)?([diouxXeEfgGcspm%])")


class Language(Value):
    """The catalogs a backend uses for its lc_messages, and what pgdl makes of them."""
    __slots__ = ("messages", "postgres", "msgids", "libc", "postgres_codeset", "libc_codeset")

    def __init__(self, messages: Messages, postgres: str | None, msgids: str | None, libc: str | None,
                 postgres_codeset: str | None, libc_codeset: str | None):
        self.messages = messages
        self.postgres = postgres        # the postgres-NN.mo found (None: none, so English)
        self.msgids = msgids            # a postgres-NN.mo to read the msgids from (this one, or another language's)
        self.libc = libc                # glibc's libc.mo found
        self.postgres_codeset = postgres_codeset    # what PostgreSQL's text is converted to ("UTF-8", "ASCII", None: other)
        self.libc_codeset = libc_codeset

    @property
    def complete(self) -> bool:
        """Both catalogs found, in codesets pgdl models: every word is predicted as the server prints it."""
        return bool(self.postgres and self.libc) and None not in (self.postgres_codeset, self.libc_codeset)

    def describe(self, major: int) -> str:
        m = self.messages
        head = f"lc_messages = '{m.lc_messages}'"
        if m.english:
            return f"{head}: the server's messages are in English"
        where = m.localedir or "PostgreSQL's LOCALEDIR (unknown)"
        parts = [f"{head}: PostgreSQL's messages from {self.postgres}" if self.postgres else
                 f"{head}: no postgres-{major}.mo for it in {where}, so PostgreSQL's messages are in English"]
        parts.append(f"the C library's from {self.libc}" if self.libc else
                     "no libc.mo for it, so dlerror() and strerror() text is English")
        if self.libc and self.msgids is None:
            parts.append("but no catalog in it to read PostgreSQL's msgids from: pgdl predicts English text")
        text = ", ".join(parts)
        if "ASCII" in (self.postgres_codeset, self.libc_codeset):
            text += ("; LC_CTYPE's codeset is ASCII, so each character a translation has outside it "
                     "is printed as ?")
        if self.postgres_codeset is None or self.libc_codeset is None:
            text += ("; a codeset other than UTF-8 and ASCII (server_encoding, LC_CTYPE): "
                     "translations are predicted in English")
        return text


def language(messages: Messages, major: int, environ: dict[str, str]) -> Language:
    """The catalogs gettext would open for these settings (glibc's rules:
    LANGUAGE first unless the locale is C, then the locale name, expanded)."""
    if messages.english:
        return Language(messages, None, None, None, "UTF-8", "UTF-8")
    names = [messages.lc_messages]
    if environ.get("LANGUAGE"):
        names = [n for n in environ["LANGUAGE"].split(":") if n] + names
    domain = f"postgres-{major}"
    postgres = _find(domain, messages.localedir, names) if messages.localedir else None
    libc = _find("libc", LIBC_LOCALEDIR, names)
    # Without a catalog for this language, PostgreSQL's text is its msgids, whose
    # patterns any other language's catalog of this major holds (glibc's part is translated still).
    msgids = postgres or (next((p for p in sorted(rootfs.glob(f"{messages.localedir}/*/LC_MESSAGES/{domain}.mo"))
                                if _readable(p)), None) if messages.localedir and libc else None)
    ctype = _codeset(messages.ctype)
    pg_codeset = "UTF-8" if messages.encoding.upper() in ("UTF8", "UTF-8") else \
        (ctype if messages.encoding.upper() == "SQL_ASCII" else None)
    return Language(messages, postgres, msgids, libc, pg_codeset, ctype)


def translated(error: PgError | None, lang: Language) -> PgError | None:
    """The error as the backend would word it for lang (English where it cannot be told)."""
    if error is None or lang.msgids is None:
        return error
    try:
        pg = _catalog(lang.postgres) if lang.postgres else _catalog(lang.msgids).identity()
        libc = _catalog(lang.libc) if lang.libc else {}
    except (OSError, ValueError, LookupError, struct.error):
        return error                     # a catalog gettext cannot read: the text stays English
    fields = [_translate(text, pg, libc, lang) if text else text for text in (error.message, error.detail, error.hint)]
    return error.replace(message=fields[0], detail=fields[1], hint=fields[2])


# -- the catalogs ------------------------------------------------------------------

def _find(domain: str, localedir: str, names: list[str]) -> str | None:
    for name in names:
        for candidate in _expanded(name):
            path = os.path.join(localedir, candidate, "LC_MESSAGES", f"{domain}.mo")
            if _readable(path):
                return path
    return None


MAX_CATALOG = 64 << 20          # real catalogs are about a megabyte; gettext reads one whole


def _readable(path: str) -> bool:
    """A regular file of sane size (a FIFO would block the read, a huge file fill memory)."""
    st = filestate.state(path)
    return not st.error and st.is_regular and st.size <= MAX_CATALOG


def _expanded(name: str) -> list[str]:
    """The directory names gettext tries for a locale name, most specific first
    (glibc intl/explodename.c, l10nflist.c: language[_territory][.codeset][@modifier],
    the codeset also normalized: "UTF-8" -> "utf8")."""
    rest, _, modifier = name.partition("@")
    rest, _, codeset = rest.partition(".")
    language, _, territory = rest.partition("_")
    normalized = "".join(c.lower() for c in codeset if c.isalnum())
    normalized = "iso" + normalized if normalized.isdigit() else normalized
    codesets = [f".{codeset}"] if codeset else []
    codesets += [f".{normalized}"] if normalized and normalized != codeset else []
    out = []
    for place in ([f"_{territory}"] if territory else []) + [""]:
        for cs in codesets + [""]:
            for mod in ([f"@{modifier}"] if modifier else []) + [""]:
                out.append(f"{language}{place}{cs}{mod}")
    return list(dict.fromkeys(out))


_CATALOGS: dict[tuple, "_Catalog"] = {}


class _Catalog(dict):
    """msgid -> msgstr, and the msgids with conversions indexed by their first word."""

    def __init__(self, entries: dict[str, str]):
        super().__init__(entries)
        self._identity: "_Catalog | None" = None
        self.patterns: dict[str, list[tuple[str, int]]] = {}     # first word -> (msgid, its fixed text's length)
        for msgid in entries:
            if "%" in msgid:
                self.patterns.setdefault(_first_word(msgid), []).append((msgid, len(_CONVERSION.sub("", msgid))))

    def identity(self) -> "_Catalog":
        """The same msgids, each its own translation: a language PostgreSQL has no catalog for."""
        if self._identity is None:
            self._identity = _Catalog({k: k for k in self})
        return self._identity

    def match(self, text: str) -> tuple[str, list[str]] | None:
        """The msgid whose pattern text matches, with the text of each conversion."""
        best = None
        for msgid, weight in self.patterns.get(_first_word(text), ()):
            m = _pattern(msgid).fullmatch(text)
            if m and (best is None or weight > best[2]):
                best = (msgid, list(m.groups()), weight)
        return (best[0], best[1]) if best else None


def _catalog(path: str) -> _Catalog:
    """Read once per version of the file (its stat() state)."""
    key = (path, filestate.state(path))
    found = _CATALOGS.get(key)
    if found is None:
        import gettext                   # on first use: a backend that never translates never pays for it
        with open(rootfs.host(path), "rb") as f:
            t = gettext.GNUTranslations(f)
        entries = {k: v for k, v in t._catalog.items() if isinstance(k, str) and v}
        found = _CATALOGS[key] = _Catalog(entries)
    return found


def _first_word(text: str) -> str:
    return re.split(r"[ %]", text, maxsplit=1)[0]


@lru_cache(maxsize=4096)
def _pattern(msgid: str) -> "re.Pattern":
    """msgid's printf format as a regular expression, each conversion a group (compiled on first use)."""
    out, last = [], 0
    for m in _CONVERSION.finditer(msgid):
        out.append(re.escape(msgid[last:m.start()]))
        out.append("%" if m.group(2) == "%" else "(.*?)")
        last = m.end()
    out.append(re.escape(msgid[last:]))
    return re.compile("".join(out), re.DOTALL)


# -- translating -------------------------------------------------------------------

def _translate(text: str, pg: _Catalog, libc: dict, lang: Language) -> str:
    found = pg.get(text)
    if found is not None:
        return _held(found, lang.postgres_codeset, text)
    match = pg.match(text)
    if match is None:
        return text
    msgid, args = match
    kinds = [m.group(2) for m in _CONVERSION.finditer(msgid) if m.group(2) != "%"]
    values = []
    for k, (kind, arg) in enumerate(zip(kinds, args)):
        if kind == "m":                                  # strerror()'s text
            arg = _held(libc.get(arg, arg), lang.libc_codeset, arg)
        elif msgid == LOAD_FAILED and k == 1:            # dlerror()'s text
            arg = _libc_text(arg, libc, lang)
        values.append((kind, arg))
    translation = _held(pg[msgid], lang.postgres_codeset, msgid)
    return _fill(translation, values)


def _fill(fmt: str, values: list[tuple[str, str]]) -> str:
    """fmt's conversions replaced by the arguments' text (positional %n$ too);
    a %m takes strerror's text, which is not an argument."""
    strerror = [v for kind, v in values if kind == "m"]
    args = [v for kind, v in values if kind != "m"]
    out, last, n = [], 0, 0
    for m in _CONVERSION.finditer(fmt):
        out.append(fmt[last:m.start()])
        last = m.end()
        if m.group(2) == "%":
            out.append("%")
        elif m.group(2) == "m":
            out.append(strerror[0] if strerror else "")
        else:
            k = int(m.group(1)) - 1 if m.group(1) else n
            n += 1
            out.append(args[k] if k < len(args) else m.group(0))
    out.append(fmt[last:])
    return "".join(out)


def _libc_text(text: str, libc: dict, lang: Language) -> str:
    """dlerror()'s text: "objname: errstring" or "objname: errstring: strerror"."""
    parts = text.split(": ")
    for i in range(1, len(parts)):
        tail = ": ".join(parts[i:])
        if tail in libc:
            return ": ".join(parts[:i] + [_held(libc[tail], lang.libc_codeset, tail)])
        head, errno_text = ": ".join(parts[i:-1]), parts[-1]
        if i < len(parts) - 1 and head in libc and errno_text in libc:
            return ": ".join(parts[:i] + [_held(libc[head], lang.libc_codeset, head),
                                          _held(libc[errno_text], lang.libc_codeset, errno_text)])
    return text


def _held(translation: str, codeset: str | None, english: str) -> str:
    """translation as converted to the codeset: in ASCII (LC_CTYPE C), iconv's
    //TRANSLIT has no rule for the C locale and prints ? for each character
    outside it; another codeset is not modelled (the English text)."""
    if codeset == "UTF-8":
        return translation
    if codeset == "ASCII":
        return "".join(c if c.isascii() else "?" for c in translation)
    return english


def _codeset(ctype: str) -> str | None:
    """The codeset nl_langinfo(CODESET) gives for an LC_CTYPE locale name."""
    name = ctype.split("@")[0]
    if name in ("C", "POSIX", ""):
        return "ASCII"
    _, _, codeset = name.partition(".")
    return "UTF-8" if codeset.lower().replace("-", "") == "utf8" else None


def server_language(server) -> Language:
    """The language of the backend a Server describes."""
    return language(server.messages, server.major, server.environ)


def as_server_says(error: PgError | None, server) -> PgError | None:
    """error worded as the backend a Server describes would word it."""
    return translated(error, server_language(server))
