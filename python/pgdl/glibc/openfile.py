"""dlopen() of the module file itself: the checks glibc makes before mapping it.

PostgreSQL reports a failed dlopen() as
    could not load library "<libname>": <dlerror()>
with errcode_for_file_access(errno), errno being whatever dlopen() left.
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import PgError, errcode_for_file_access
from .openverify import Verdict, verify_header
from ..server import Server

HEADER_BYTES = 832     # glibc reads this much of the file into its buffer first


def read_header(path: str) -> bytes:
    """The first bytes of a file, without blocking on FIFOs or devices."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)) \
                if stat.S_ISDIR(os.fstat(fd).st_mode) else OSError(errno.ENODEV, "not a regular file")
        return os.read(fd, HEADER_BYTES)
    finally:
        os.close(fd)


def access_error(libname: str, err: int, major: int) -> PgError:
    """internal_load_library()'s failed stat() of the expanded name."""
    return PgError(errcode_for_file_access(err, major), f'could not access file "{libname}": {os.strerror(err)}')


def dlopen_error(libname: str, dlerror: str, err: int, major: int = 15) -> PgError:
    """internal_load_library()'s report of a failed dlopen().

    `err` is the errno PostgreSQL sees: dlerror() sets it to glibc's error code
    when there is one (ENOENT, EACCES, EISDIR...); otherwise it is whatever the
    backend's errno already held (see Resolution.last_errno).
    """
    return PgError(errcode_for_file_access(err, major), f'could not load library "{libname}": {dlerror}')


def check_module_file(libname: str, server: Server, stale_errno: int = 0) -> tuple[PgError | None, Verdict | None]:
    """The error dlopen(libname) raises before mapping the module, if any (glibc open_verify)."""
    failure, verdict = module_file_failure(libname, server)
    if failure is None:
        return None, verdict
    text, err = failure
    return dlopen_error(libname, text, err or stale_errno, server.major), verdict


def module_file_failure(libname: str, server: Server) -> tuple[tuple[str, int] | None, Verdict | None]:
    """((dlerror, errno), verdict) if dlopen(libname) fails before mapping the module.

    errno 0: dlopen leaves errno as it was (see dlopen_error)."""
    try:
        head = read_header(libname)
    except IsADirectoryError:
        return (f"{libname}: cannot read file data: Is a directory", errno.EISDIR), None
    except OSError as exc:
        code = exc.errno or errno.EIO
        return (f"{libname}: cannot open shared object file: {os.strerror(code)}", code), None
    verdict = verify_header(head, host_machine=server.machine, host_class=server.elf_class)
    if verdict.ok:
        return None, verdict
    if verdict.other_class:
        # Not fatal in a search; by path, glibc ends with this text and error code 0.
        text, code = "wrong ELF class: " + ("ELFCLASS32" if server.elf_class == 64 else "ELFCLASS64"), 0
    elif verdict.other_machine:
        # Rejected silently with errno ENOENT, so the final message is the generic one.
        text, code = "cannot open shared object file: No such file or directory", errno.ENOENT
    else:
        text, code = verdict.error, 0
    return (f"{libname}: {text}", code), verdict


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
            return PgError(
                None, "server closed the connection unexpectedly",
                f"The backend is killed by SIGBUS while the dynamic linker maps {libname}: a segment at file "
                f"offsets {offset:#x}-{offset + filesz:#x} lies past the end of the file ({obj.size} bytes). "
                "The postmaster then restarts and every session is ended.",
                "The file is truncated or still being written: reinstall it.")
    return None
