"""The loader's words for directories: system directories, $LIB, $PLATFORM,
dynamic string tokens ($ORIGIN, $PLATFORM, $LIB), and path lists
(elf/dl-load.c _dl_dst_substitute, fillin_rpath)."""

from __future__ import annotations

from ..elf import EM_AARCH64, EM_X86_64

MAX_PATH_ENTRIES = 2000


# Debian's multiarch glibc: SYSTEM_DIRS and $LIB (configure slibdir/libdir).
_TRIPLETS = {EM_X86_64: "x86_64-linux-gnu", EM_AARCH64: "aarch64-linux-gnu"}


PLATFORMS = {EM_X86_64: "x86_64", EM_AARCH64: "aarch64"}  # AT_PLATFORM


def system_dirs(server) -> list[str]:
    """The loader's default directories: as its own file has them (pgdl.libc),
    or Debian's multiarch ones for a description that does not say."""
    if server.libc is not None and server.libc.system_dirs:
        return list(server.libc.system_dirs)
    triplet = _TRIPLETS.get(server.machine, "x86_64-linux-gnu")
    return [f"/lib/{triplet}/", f"/usr/lib/{triplet}/", "/lib/", "/usr/lib/"]


def dst_lib(server) -> str:
    """What $LIB expands to (Debian: the multiarch directory; RHEL: lib64)."""
    if server.libc is not None and server.libc.dst_lib:
        return server.libc.dst_lib
    return "lib/" + _TRIPLETS.get(server.machine, "x86_64-linux-gnu")


def _is_dst(text: str, at: int, ref: str) -> int:
    """Length of the token `ref` at text[at:] (after the '$'), 0 if none."""
    curly = text.startswith("{", at)
    start = at + 1 if curly else at
    if not text.startswith(ref, start):
        return 0
    end = start + len(ref)
    nxt = text[end] if end < len(text) else ""
    if curly:
        return len(ref) + 2 if nxt == "}" else 0
    if nxt and (nxt.isascii() and (nxt.isalnum() or nxt == "_")):
        return 0
    return len(ref)


def expand_dst(text: str, origin: str | None, platform: str, lib: str) -> str:
    """_dl_dst_substitute: $ORIGIN, $PLATFORM, $LIB (also ${...}).

    An unknown origin discards the whole string ("" is returned)."""
    out = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        i += 1
        for ref, value in (("ORIGIN", origin), ("PLATFORM", platform), ("LIB", lib)):
            n = _is_dst(text, i, ref)
            if n:
                if value is None:
                    return ""
                out.append(value)
                i += n
                break
        else:
            out.append("$")
    return "".join(out)


def split_path_list(value: str, separators: str, expand) -> list[str]:
    """fillin_rpath: directories with one trailing '/', "" meaning the cwd.

    Empty components stay (the current directory); a component that
    expands to nothing is dropped; duplicates are dropped."""
    dirs: list[str] = []
    component = []
    pieces = []
    for ch in value:
        if ch in separators:
            pieces.append("".join(component))
            component = []
        else:
            component.append(ch)
    pieces.append("".join(component))
    for piece in pieces[:MAX_PATH_ENTRIES]:
        if piece:
            piece = expand(piece)
            if not piece:
                continue
            piece = piece.rstrip("/") or "/"
            if not piece.endswith("/"):
                piece += "/"
        if piece not in dirs:
            dirs.append(piece)
    return dirs
