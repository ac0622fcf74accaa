"""The rules of one glibc release: what differs between 2.28 and 2.43 in a
dlopen()'s outcome or words, chosen by the loader's version as PostgreSQL's
rules are chosen by server_version_num.  Each rule cites the release (and the
source) it comes from; pgdl.glibc's modules ask these, never a version number."""

from __future__ import annotations

import errno

from ..libc import Libc, LibcKind
from ..record import Value

OLDEST, NEWEST = (2, 28), (2, 43)
HOST_DEFAULT = (2, 36)              # what a description without a C library gets (Debian 12)


# ld.so's assert()s that kill the process (exit 127), as each release's source
# has them: the line printed is "Inconsistency detected by ld.so: FILE: LINE:
# FUNCTION: Assertion `EXPRESSION' failed!".  (file, function, expression).
ASSERTIONS = {
    "DT_PLTREL": ("get-dynamic-info.h", "elf_get_dynamic_info", "info[DT_PLTREL]->d_un.d_val == DT_RELA"),
    "DT_RELAENT": ("get-dynamic-info.h", "elf_get_dynamic_info",
                   "info[DT_RELAENT]->d_un.d_val == sizeof (ElfW(Rela))"),
    "DT_RELRENT": ("get-dynamic-info.h", "elf_get_dynamic_info",
                   "info[DT_RELRENT]->d_un.d_val == sizeof (ElfW(Relr))"),
    "RELATIVE": ("../sysdeps/x86_64/dl-machine.h", "elf_machine_rela_relative",
                 "ELFW(R_TYPE) (reloc->r_info) == R_X86_64_RELATIVE"),
    "check_match": ("dl-lookup.c", "check_match",
                    "version->filename == NULL || ! _dl_name_match_p (version->filename, map)"),
}
# Their lines as each release branch has them (git show release/2.NN/master:FILE;
# distributions ship the branch, whose backports move lines: Debian 11's 2.31
# prints dl-machine.h: 547, where the 2.31 tag has 541).  check_match's
# assertion was removed in 2.41 ("elf: Remove version assert in check_match"),
# DT_RELRENT's came with DT_RELR in 2.36.
_LINES = (
    ((2, 28), {"DT_PLTREL": 123, "DT_RELAENT": 131, "RELATIVE": 544, "check_match": 111}),
    ((2, 30), {"DT_PLTREL": 123, "DT_RELAENT": 131, "RELATIVE": 546, "check_match": 111}),
    ((2, 31), {"DT_PLTREL": 123, "DT_RELAENT": 131, "RELATIVE": 547, "check_match": 111}),
    ((2, 32), {"DT_PLTREL": 123, "DT_RELAENT": 131, "RELATIVE": 547, "check_match": 105}),
    ((2, 33), {"DT_PLTREL": 118, "DT_RELAENT": 126, "RELATIVE": 548, "check_match": 105}),
    ((2, 34), {"DT_PLTREL": 102, "DT_RELAENT": 110, "RELATIVE": 544, "check_match": 105}),
    ((2, 35), {"DT_PLTREL": 102, "DT_RELAENT": 110, "RELATIVE": 536, "check_match": 106}),
    ((2, 36), {"DT_PLTREL": 115, "DT_RELAENT": 123, "DT_RELRENT": 130, "RELATIVE": 487, "check_match": 107}),
    ((2, 38), {"DT_PLTREL": 115, "DT_RELAENT": 123, "DT_RELRENT": 130, "RELATIVE": 490, "check_match": 107}),
    ((2, 39), {"DT_PLTREL": 115, "DT_RELAENT": 123, "DT_RELRENT": 130, "RELATIVE": 497, "check_match": 106}),
    ((2, 40), {"DT_PLTREL": 115, "DT_RELAENT": 123, "DT_RELRENT": 130, "RELATIVE": 498, "check_match": 106}),
    ((2, 41), {"DT_PLTREL": 115, "DT_RELAENT": 123, "DT_RELRENT": 130, "RELATIVE": 498}),
)


class Rules(Value):
    """glibc's loader as one release has it (x86-64)."""
    __slots__ = ("version", "assumed", "backports")

    def __init__(self, version: tuple[int, int], assumed: str | None = None, backports: frozenset = frozenset()):
        self.version = version
        self.assumed = assumed          # why these rules stand in for the loader's own (newer or older)
        self.backports = backports      # later rules this loader's release branch has (pgdl.libc.BACKPORTS)

    def at_least(self, major: int, minor: int) -> bool:
        return self.version >= (major, minor)

    @property
    def page_size_alignment(self) -> bool:
        """PT_LOAD checked against the page size, one message (2.35, elf/dl-load.c);
        up to 2.34 against p_align, with two messages."""
        return self.at_least(2, 35)

    @property
    def pie_refused(self) -> bool:
        """DF_1_PIE: "cannot dynamically load position-independent executable" (2.30)."""
        return self.at_least(2, 30)

    @property
    def versioned_lookup_goes_on(self) -> bool:
        """A versioned reference its Verneed file does not define: from 2.30 the search
        goes on and ends in "undefined symbol: X, version V"; up to 2.29 it stops
        there, "symbol X version V not defined in file F with link time reference"
        (elf/dl-lookup.c _dl_lookup_symbol_x)."""
        return self.at_least(2, 30)

    @property
    def search_goes_on_after(self) -> tuple[int, ...]:
        """The errors of one directory's try after which open_path() goes on to the
        next directory; any other ends the list.  ENOTDIR joined them in 2.39
        (a relative element naming a file, e.g. LD_LIBRARY_PATH=./prog:.)."""
        return (errno.ENOENT, errno.EACCES) + ((errno.ENOTDIR,) if self.at_least(2, 39) else ())

    @property
    def dlerror_sets_errno(self) -> bool:
        """dlerror() sets errno to glibc's error code (2.34, dlfcn/dlerror.c).  Before,
        ld.so's own calls set its private errno only: PostgreSQL's errcode_for_file_access()
        sees whatever errno the backend held before dlopen()."""
        return self.at_least(2, 34)

    @property
    def glibc_hwcaps(self) -> bool:
        """glibc-hwcaps/x86-64-v2..v4 subdirectories (2.33, elf/dl-hwcaps.c)."""
        return self.at_least(2, 33)

    @property
    def legacy_hwcaps(self) -> bool:
        """Legacy hwcaps, platform and tls/ subdirectories of every search
        directory (removed in 2.37: "elf: Remove legacy hwcaps support")."""
        return not self.at_least(2, 37)

    @property
    def cache_legacy_hwcaps(self) -> bool:
        """ld.so.cache entries marked with legacy hwcaps bits are used (2.40
        skips them: elf/dl-cache.c search_cache)."""
        return not self.at_least(2, 40)

    @property
    def isa_level_check(self) -> bool:
        """GNU_PROPERTY_X86_ISA_1_NEEDED checked at dlopen (2.33, sysdeps/x86/dl-prop.h)."""
        return self.at_least(2, 33)

    @property
    def relr(self) -> bool:
        """DT_RELR applied, and required to come with GLIBC_ABI_DT_RELR (2.36, elf/dl-version.c)."""
        return self.at_least(2, 36)

    @property
    def execstack_refused(self) -> bool:
        """dlopen() no longer makes the stack executable for an object that asks
        for it: EINVAL, "cannot enable executable stack as shared object requires"
        (2.41, elf/dl-load.c _dl_map_object_from_fd)."""
        return self.at_least(2, 41)

    @property
    def execstack_force(self) -> bool:
        """glibc.rtld.execstack=2 makes the stack executable at startup (2.42,
        elf/dl-execstack-tunable.c; the 2.41 tag's tunable stops at 1, its
        release branch has the backport, BZ 32653)."""
        return self.at_least(2, 42) or "execstack_force" in self.backports

    @property
    def extra_tls(self) -> bool:
        """Linux's rseq area takes static TLS after the startup objects' blocks
        (2.41, elf/dl-tls.c _dl_determine_tlsoffset)."""
        return self.at_least(2, 41)

    @property
    def check_match_asserts(self) -> bool:
        """A versioned reference bound in a copy without symbol versions aborts
        ld.so (dl-lookup.c check_match, up to 2.40); from 2.41 it is accepted."""
        return not self.at_least(2, 41)

    def assertion(self, name: str) -> str | None:
        """The line ld.so prints when assertion `name` fails, or None: this release has none."""
        lines = [table for since, table in _LINES if self.version >= since][-1]
        if name not in lines:
            return None
        file, function, expression = ASSERTIONS[name]
        return (f"Inconsistency detected by ld.so: {file}: {lines[name]}: {function}: "
                f"Assertion `{expression}' failed!")

    def describe(self) -> str:
        text = f"glibc {self.version[0]}.{self.version[1]}"
        return f"{text} ({self.assumed})" if self.assumed else text


def rules_for(libc: Libc | None) -> Rules:
    """The rules for a server's C library (glibc only: see Libc.kind)."""
    if libc is None:
        return Rules(HOST_DEFAULT)
    if libc.kind is not LibcKind.GLIBC or libc.version is None:
        return Rules(HOST_DEFAULT, f"the loader's release could not be read ({libc.describe()}): "
                                   f"glibc {HOST_DEFAULT[0]}.{HOST_DEFAULT[1]}'s rules are used")
    if libc.version > NEWEST:
        return Rules(NEWEST, f"the loader is glibc {libc.version[0]}.{libc.version[1]}, newer than the newest "
                             f"pgdl encodes: {NEWEST[0]}.{NEWEST[1]}'s rules are used")
    if libc.version < OLDEST:
        return Rules(OLDEST, f"the loader is glibc {libc.version[0]}.{libc.version[1]}, older than the oldest "
                             f"pgdl encodes: {OLDEST[0]}.{OLDEST[1]}'s rules are used")
    return Rules(libc.version, backports=libc.backports)
