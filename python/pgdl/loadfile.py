"""dlopen() of the module file itself: the checks glibc makes before mapping it.

PostgreSQL reports a failed dlopen() as
    could not load library "<libname>": <dlerror()>
with errcode_for_file_access(errno), errno being whatever dlopen() left.
"""

from __future__ import annotations

import errno
import os
import stat

from .errors import PgError, errcode_for_file_access
from .openverify import Verdict, verify_header
from .server import Server

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


def dlopen_error(libname: str, dlerror: str, err: int) -> PgError:
    return PgError(errcode_for_file_access(err), f'could not load library "{libname}": {dlerror}')


def check_module_file(libname: str, server: Server) -> tuple[PgError | None, Verdict | None]:
    """The error dlopen(libname) raises before mapping the module, if any."""
    try:
        head = read_header(libname)
    except IsADirectoryError:
        return dlopen_error(libname, f"{libname}: cannot read file data: Is a directory", errno.EISDIR), None
    except OSError as exc:
        code = exc.errno or errno.EIO
        return dlopen_error(libname, f"{libname}: cannot open shared object file: {os.strerror(code)}", code), None
    verdict = verify_header(head, host_machine=server.machine, host_class=server.elf_class)
    if verdict.ok:
        return None, verdict
    if verdict.other_class:
        text = "wrong ELF class: " + ("ELFCLASS32" if server.elf_class == 64 else "ELFCLASS64")
    elif verdict.other_machine:
        text = "cannot open shared object file: No such file or directory"
    else:
        text = verdict.error
    return dlopen_error(libname, f"{libname}: {text}", 0), verdict
