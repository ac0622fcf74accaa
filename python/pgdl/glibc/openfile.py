"""dlopen() of the module file itself: the checks glibc makes before mapping it.

What the server's OS user meets on the way to the file is described too
(FileAccess): the loader says only "Permission denied", a person wants to
know which directory or file refuses.
"""

from __future__ import annotations

import errno
import os
import stat

from .. import filestate, rootfs
from ..errors import PgError, backend_dies
from ..record import Value
from ..server import Server
from .openverify import verify_header

HEADER_BYTES = 832     # glibc reads this much of the file into its buffer first


IS_A_DIRECTORY = "cannot read file data: Is a directory"     # open_verify() reading a directory


def read_header(path: str) -> tuple[bytes, int]:
    """(the first bytes of a file, 0), or (b"", errno): EISDIR for a directory,
    ENODEV for a FIFO or device (never opened blocking), or open()'s errno."""
    try:
        fd = os.open(rootfs.host(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return b"", exc.errno or errno.EIO
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return b"", errno.EISDIR if stat.S_ISDIR(mode) else errno.ENODEV
        return os.read(fd, HEADER_BYTES), 0
    except OSError as exc:
        return b"", exc.errno or errno.EIO
    finally:
        os.close(fd)


class FileFailure(Value):
    """dlopen() of the module file fails before anything is mapped."""
    __slots__ = ("dlerror", "errno")

    def __init__(self, dlerror: str, errno: int):
        self.dlerror = dlerror
        self.errno = errno              # 0: dlopen leaves errno as it was (see postgres.dfmgr.dlopen_error)


def module_file_failure(libname: str, server: Server) -> FileFailure | None:
    """Why dlopen(libname) fails before mapping the module (open, open_verify), if it does."""
    head, err = read_header(libname)
    if err:
        text = IS_A_DIRECTORY if err == errno.EISDIR else f"cannot open shared object file: {os.strerror(err)}"
        return FileFailure(f"{libname}: {text}", err)
    verdict = verify_header(head, host_machine=server.machine, host_class=server.elf_class,
                            size=filestate.state(libname).size)
    if verdict.ok:
        return None
    if verdict.other_class:
        # Not fatal in a search; by path, glibc ends with this text and error code 0.
        text, code = "wrong ELF class: " + ("ELFCLASS32" if server.elf_class == 64 else "ELFCLASS64"), 0
    elif verdict.other_machine:
        # Rejected silently with errno ENOENT, so the final message is the generic one.
        text, code = "cannot open shared object file: No such file or directory", errno.ENOENT
    else:
        text, code = verdict.error, 0
    return FileFailure(f"{libname}: {text}", code)


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def truncation_crash(libname: str, obj) -> PgError | None:
    """A PT_LOAD segment past the end of the file: mmap() accepts it, but the
    loader's first touch of those pages (the dynamic section, relocations,
    zero-filling .bss) raises SIGBUS and the backend dies.  Bytes within the
    file's last page read as zeros instead, so only whole pages past it count.
    """
    mapped_end = -(-obj.size // PAGE_SIZE) * PAGE_SIZE
    for _vaddr, offset, filesz, _memsz in obj.loads:
        if filesz and offset + filesz > mapped_end:
            return backend_dies(
                f"The backend is killed by SIGBUS while the dynamic linker maps {libname}: a segment at file "
                f"offsets {offset:#x}-{offset + filesz:#x} lies past the end of the file ({obj.size} bytes).",
                "The file is truncated or still being written: reinstall it.")
    return None


class FileAccess(Value):
    """The file as the server's OS user reaches it."""
    __slots__ = ("path", "state", "blocked", "blocked_state", "dangling", "readable")

    def __init__(self, path: str, state: filestate.State, blocked: str | None = None,
                 blocked_state: filestate.State | None = None, dangling: bool = False, readable: bool = True):
        self.path = path
        self.state = state              # stat() of the path
        self.blocked = blocked          # the first directory on the way that cannot be searched
        self.blocked_state = blocked_state
        self.dangling = dangling        # a symbolic link to nothing
        self.readable = readable        # open(O_RDONLY) would be allowed


def examine_access(path: str) -> FileAccess:
    """What stat() and open() of `path` meet, directory by directory."""
    state = filestate.state(path)
    if not state.error:
        # stat() went through every directory on the way: none refuses a search.
        return FileAccess(path, state, readable=os.access(rootfs.host(path), os.R_OK))
    parts = []
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        parts.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for d in reversed(parts):
        s = filestate.state(d)
        if s.error:
            break
        if not os.access(rootfs.host(d), os.X_OK):
            return FileAccess(path, state, d, s)
    return FileAccess(path, state, dangling=os.path.islink(rootfs.host_entry(path)))
