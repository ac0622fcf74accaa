"""dfmgr.c's own errors around a load: the name check for LOAD by a
non-superuser, the stat() of the expanded name, and the report of a failed
dlopen()."""

from __future__ import annotations

import os

from ..errors import INSUFFICIENT_PRIVILEGE, PgError, errcode_for_file_access

PLUGINS = "$libdir/plugins/"


def restricted_name_error(name: str) -> PgError | None:
    """check_restricted_library_name(): non-superusers may LOAD only $libdir/plugins/x."""
    if name.startswith(PLUGINS) and "/" not in name[len(PLUGINS):]:
        return None
    return PgError(INSUFFICIENT_PRIVILEGE, f'access to library "{name}" is not allowed')


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
