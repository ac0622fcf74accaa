"""diagnose(target): what a DBA types — a C function signature, an extension
name or a library name or path — told as a story (diagnose_library,
diagnose_extension).  The database's catalog is the adapter's: it answers
through a Catalog."""

from __future__ import annotations

import os
import re

from ..errors import INVALID_NAME, UNDEFINED_FUNCTION, UserError
from ..engine.predict import predict_load
from ..postgres.translate import as_server_says, server_language
from ..postgres.extensions import (RELATIVE_CONTROL_PATH, argument_types, available_extensions,
                                   declaring_extensions, files_in, find_control, function_name)
from ..engine.contexts import Boot, boot, in_context
from ..libc import LibcKind
from ..server import CFunction, Context, Server
from .diagnose_extension import diagnose_extension
from .diagnose_library import Finding, diagnose_library, misplaced_hint, one_line, server_log_lines
from .status import ERROR, OK, WARNING

SIGNATURE = re.compile(r"^\s*[\w.\"$]+\s*\(.*\)\s*$", re.DOTALL)


class Catalog:
    """What diagnose() asks of the database: pgdl.adapters.catalog.Catalog, or
    the shell tool's stand-in without one (any object with these methods)."""

    def function(self, signature: str) -> tuple[CFunction, str] | None:
        """The function a signature names (as the caller's search_path finds it) and the
        name of its language; UserError if the signature is not valid."""

    def extension(self, extension: str) -> tuple[str | None, list[CFunction]]:
        """The version of the extension created in this database and its C functions
        (None and none if it is not created)."""

    def functions_named(self, name: str) -> list[tuple[CFunction, str]]:
        """The functions (with their language) a name without arguments finds on the caller's search_path."""


def diagnose(name: str, text: str | None, server: Server, catalog: Catalog) -> list[Finding]:
    """name: the target as the bytes the server would use; text: the same as
    text of the database's encoding (None if it is not text there).
    server.context says which process is asked about (pgdl.engine.contexts)."""
    start = boot(server)
    out = context_findings(server, start)
    if start.failed is not None:
        return out + _boot_failure(server, start)
    booted = start.server
    here = in_context(server.replace(context=Context.THIS_SESSION)) \
        if server.context is not Context.THIS_SESSION else None
    if text is not None and SIGNATURE.match(text):
        return out + _diagnose_function(name, text, booted, catalog, here)
    control, missing = find_control(name, server) if text is not None and "/" not in name else (None, None)
    if control is not None:
        version, functions = catalog.extension(text)
        return out + diagnose_extension(name, booted, functions or None, here, version)
    if text is None or "/" in name or predict_load(name, booted).resolution.found:
        return out + diagnose_library(name, booted, elsewhere=here)
    if missing == RELATIVE_CONTROL_PATH:           # no control file can be found at all
        return out + [Finding("extension", ERROR, name, missing,
                              "Make every entry of extension_control_path an absolute directory (or $system)."),
                      Finding("verdict", ERROR, name, f"CREATE EXTENSION {name} will fail with SQLSTATE "
                              f"{INVALID_NAME}:\nERROR:  {missing}")]
    named = catalog.functions_named(text)
    if named:
        return out + _diagnose_named(text, named, booted, here)
    story = diagnose_library(name, booted, elsewhere=here)
    if misplaced_hint(name, booted) is not None:       # a file of that name, in the wrong directory
        return out + story
    # No file, extension or function of that name: most likely a typo.
    return out + [_unknown_target(text, server) if f.topic == "resolution" else f for f in story]


def diagnose_rows(name: str, text: str | None, server: Server, catalog: Catalog) -> list[Finding]:
    """pgdl.diagnose()'s rows: the verdict first, then the story, each value
    on one line (the server's ERROR / DETAIL / HINT lines joined by a space;
    predict_load() keeps them as the server prints them)."""
    findings = diagnose(name, text, server, catalog)
    ordered = [f for f in findings if f.topic == "verdict"] + [f for f in findings if f.topic != "verdict"]
    return [f.replace(message=one_line(f.message), hint=one_line(f.hint)) for f in ordered]


def _unknown_target(text: str, server: Server) -> Finding:
    names = available_extensions(server) + [os.path.basename(p).removesuffix(server.dlsuffix)
                                            for p in files_in(server.pkglibdir, server.dlsuffix)]
    import difflib                          # only for a name that matches nothing
    close = difflib.get_close_matches(text, list(dict.fromkeys(names)), n=3, cutoff=0.7)
    guess = f"; did you mean {' or '.join(close)}?" if close else ""
    return Finding("resolution", ERROR, text, f"no extension, library or function named '{text}'{guess}",
                   "Check the name against SELECT name FROM pg_available_extensions, the files in "
                   f"{server.pkglibdir} and \\df; or, for a library not installed yet, install it into "
                   "$libdir (pg_config --pkglibdir).")


def _diagnose_named(text: str, named: list[tuple[CFunction, str]], server: Server,
                    here: Server | None) -> list[Finding]:
    """A function name without arguments: its C overloads (they share a library as a rule)."""
    c = [f for f, language in named if language == "c"]
    if not c:
        function, language = named[0]
        raise UserError(f"function {function.signature} is written in {language}, not C",
                        hint="pgdl diagnoses C-language functions and the libraries they live in.")
    first = c[0]
    others = ", ".join(f.signature for f in c[1:])
    note = Finding("function", OK, text, f"{text} is the C function {first.signature}"
                   + (f" (also: {others})" if others else ""))
    return [note] + diagnose_library(first.library, server, first.symbol, label=first.signature, elsewhere=here)


def context_findings(server: Server, start: Boot) -> list[Finding]:
    """The first rows: which process the answer is for, what it has loaded
    before, and whose loader rules apply."""
    pre = server.preloads
    who = f" of role {server.role.name}" if server.role else ""
    if server.context is Context.SERVER_START:
        out = [Finding("context", OK, str(server.context),
                       "the postmaster at server start, loading shared_preload_libraries, then the library asked about"),
               Finding("preloads", OK, "shared_preload_libraries",
                       f"shared_preload_libraries = '{', '.join(pre.at_start)}' ({pre.at_start_from})")]
    elif server.context is Context.NEW_SESSION:
        maps = "as mapped in the postmaster" if start.from_maps else "as the setting says"
        out = [Finding("context", OK, str(server.context), f"a new session{who}; nothing this session loaded"),
               Finding("preloads", OK, "shared_preload_libraries",
                       f"shared_preload_libraries = '{', '.join(pre.shared)}' (the running value), {maps}"),
               Finding("preloads", OK, "session_preload_libraries",
                       f"session_preload_libraries = '{', '.join(pre.session)}'; "
                       f"local_preload_libraries = '{', '.join(pre.local)}'")]
    else:
        out = [Finding("context", OK, str(server.context),
                       f"this session{who}, with all it has loaded (PL/Python included)")]
    libc = server.libc
    out.append(Finding("loader", OK, libc.loader if libc is not None else None, _loader(server)))
    if not server.messages.english:
        # The verdict gives the server's words in its language; pgdl's own stay English.
        lang = server_language(server)
        out.append(Finding("language", OK if lang.complete else WARNING, server.messages.lc_messages,
                           lang.describe(server.major)))
    return out


def _loader(server: Server) -> str:
    """Which loader's rules answer (pgdl.glibc.release)."""
    libc = server.libc
    if libc is not None and libc.kind is LibcKind.MUSL:
        return f"the loader: {libc.describe()}, not modelled: dlopen() is not predicted"
    where = f" ({libc.loader})" if libc is not None else ""
    return f"the loader's rules: {server.rules.describe()}{where}"


def _boot_failure(server: Server, start: Boot) -> list[Finding]:
    step = start.failed
    e = as_server_says(step.prediction.error, server)
    if step.setting == "shared_preload_libraries":
        what = "the server will not start"
    else:
        what = f"every new session{' of role ' + server.role.name if server.role else ''} fails to start"
    return [Finding("preload", ERROR, step.name, f"{step.setting} lists {step.name}, which fails to load: "
                    f"{e.message}", f"Remove {step.name} from {step.setting} or fix it: see "
                    f"SELECT * FROM pgdl.diagnose('{step.target}', context => 'this session')."),
            Finding("verdict", ERROR, step.name, f"{what}; the log says:\n{server_log_lines(e)}")]


def _declared_by_extension(signature: str, server: Server) -> tuple[str, CFunction] | None:
    """The extension whose install script declares the C function a signature names."""
    wanted = argument_types(signature.strip().partition("(")[2].rstrip().removesuffix(")"))
    for extension, function in declaring_extensions(function_name(signature), server):
        if argument_types(function.signature.split("(", 1)[1].removesuffix(")")) == wanted:
            return extension, function
    return None


def _diagnose_function(name: str, signature: str, server: Server, catalog: Catalog,
                       here: Server | None) -> list[Finding]:
    found = catalog.function(signature)
    if found is None:
        declared = _declared_by_extension(signature, server)
        if declared is None:
            raise UserError(f"function {name} does not exist", sqlstate=UNDEFINED_FUNCTION,
                            hint="Give the argument types as \\df shows them, e.g. dblink_connect(text); no "
                                 "available extension's install script declares it either.")
        extension, function = declared
        return [Finding("function", OK, signature, f"{function.signature} is declared by extension {extension}, "
                        "not created in this database: CREATE EXTENSION would create it")] + \
            diagnose_library(function.library, server, function.symbol, label=function.signature, elsewhere=here)
    function, language = found
    if language != "c":
        raise UserError(f"function {function.signature} is written in {language}, not C",
                        hint="pgdl diagnoses C-language functions and the libraries they live in.")
    return diagnose_library(function.library, server, function.symbol, label=function.signature, elsewhere=here)
