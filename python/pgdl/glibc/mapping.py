"""How ld.so maps an object's segments (glibc 2.36 elf/dl-load.c
_dl_map_object_from_fd and elf/dl-map-segments.h), what that can refuse,
and what the rest of dlopen() then does to memory the object may not own.

Where the object lands is the kernel's choice.  Some damaged objects fail or
not depending on it (a zero-fill past the reservation overwrites whatever is
mapped there, a PT_GNU_RELRO outside the object protects whatever is there);
pgdl calls those certain only when no placement can succeed, and says
"depends" otherwise, rather than guess."""

from __future__ import annotations

import os

from .. import rootfs
from ..elf import ET_DYN, ElfObject
from ..record import Value
from .openfile import PAGE_SIZE
from .tunables import tunable

USER_ADDRESS_SPACE = 1 << 47       # x86-64 with 4-level page tables: nothing is ever mapped above
PF_X = 1


def _down(x: int) -> int:
    return x & ~(PAGE_SIZE - 1)


def _up(x: int) -> int:
    return _down(x + PAGE_SIZE - 1)


class LoadCommand(Value):
    """dl-load.c's struct loadcmd, made from one PT_LOAD."""
    __slots__ = ("mapstart", "mapend", "dataend", "allocend", "flags")

    def __init__(self, vaddr: int, filesz: int, memsz: int, flags: int):
        self.mapstart = _down(vaddr)
        self.mapend = _up(vaddr + filesz)
        self.dataend = vaddr + filesz
        self.allocend = vaddr + memsz
        self.flags = flags


def load_commands(obj: ElfObject) -> list[LoadCommand]:
    return [LoadCommand(v, f, m, flags) for (v, _o, f, m), flags in zip(obj.loads, obj.load_flags)]


def map_length(cmds: list[LoadCommand]) -> int:
    """What _dl_map_segments() reserves in one mmap(): from the first command to the
    end of the last (unsigned: unsorted commands make it wrap to a huge length)."""
    return (cmds[-1].allocend - cmds[0].mapstart) % (1 << 64) if cmds else 0


class AddressSpace(Value):
    """What bounds where an object can be mapped in the server process."""
    __slots__ = ("limit", "floor")

    def __init__(self, limit: int, floor: int):
        self.limit = limit              # the most one mapping can take (RLIMIT_AS, or all of user space)
        self.floor = floor              # the lowest file or anonymous mapping in the mmap area: the kernel
        # places a new one in the highest gap that fits, so never lower than just below this


def address_space() -> AddressSpace:
    """This process's (the backend's: a new one is forked with the same layout)."""
    return AddressSpace(_limit(), _mmap_floor())


def _limit() -> int:
    import resource
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    return USER_ADDRESS_SPACE if soft == resource.RLIM_INFINITY else min(soft, USER_ADDRESS_SPACE)


def _mmap_floor() -> int:
    """The lowest start of a mapping that is not the executable's (its segments,
    the anonymous rest of its bss right after them, its heap), nor the kernel's
    stack and vDSO areas; 0 when /proc cannot tell."""
    try:
        exe = os.readlink("/proc/self/exe")
        with open("/proc/self/maps") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0
    floor, exe_end = None, None
    for line in lines:
        fields = line.split(None, 5)
        where = fields[5] if len(fields) > 5 else ""
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if where == exe or where == "" and start == exe_end:
            exe_end = end
            continue
        if where.startswith("["):
            continue
        floor = start if floor is None else min(floor, start)
    return floor or 0


def _lowest_start(cmds: list[LoadCommand], obj: ElfObject, space: AddressSpace) -> int:
    """The lowest address the first command can be mapped at."""
    # dl-load.c aligns the mapping to the largest power-of-two p_align (2.35).
    align = max((a for a in obj.load_aligns if a and not a & (a - 1)), default=0)
    align = align if align > PAGE_SIZE else 0
    return max(space.floor - _up(map_length(cmds)) - align, 0)


def _load_command_refusal(obj: ElfObject, rules) -> str | None:
    """The PT_LOAD loop's checks.  From 2.35: file offset and address agree modulo
    the page size.  Up to 2.34: p_align is a multiple of the page size, and they
    agree modulo p_align (0: they are equal)."""
    if rules.page_size_alignment:
        if any((vaddr - offset) & (PAGE_SIZE - 1) for vaddr, offset, _filesz, _memsz in obj.loads):
            return "ELF load command address/offset not page-aligned"
        return None
    for (vaddr, offset, _filesz, _memsz), align in zip(obj.loads, obj.load_aligns):
        if align & (PAGE_SIZE - 1):
            return "ELF load command alignment not page-aligned"
        if (vaddr - offset) & (align - 1) & ((1 << 64) - 1):
            return "ELF load command address/offset not properly aligned"
    return None


def mapping_failure(obj: ElfObject, path: str, rules, space: AddressSpace | None = None) -> str | None:
    """_dl_map_object_from_fd() up to and including the mapping of the segments,
    in its order: glibc's error text (reported with error code 0), or None."""
    refused = _load_command_refusal(obj, rules)
    if refused:
        return refused
    if not obj.loads:
        return "object file has no loadable segments"
    if obj.e_type != ET_DYN:
        return "cannot dynamically load executable"
    if not obj.has_dynamic:
        return "object file has no dynamic section"
    cmds = load_commands(obj)
    first, length = cmds[0], map_length(cmds)
    # dl-map-segments.h: the first mmap() reserves the whole length with the first
    # command's protection: ENOMEM past the process's address space, EINVAL for
    # nothing at all, EPERM for PROT_EXEC on a noexec mount (so for any later
    # command mapped from the file with it).
    noexec = any(c.flags & PF_X and (c is first or c.mapend > c.mapstart) for c in cmds) and _noexec(path)
    if noexec or length == 0 or _up(length) > (space.limit if space else _limit()):
        return "failed to map segment from shared object"
    has_holes = any(a.mapend != b.mapstart for a, b in zip(cmds, cmds[1:]))
    if has_holes and cmds[-1].mapstart < first.mapend:
        # 2.36 checks; before, mprotect() of the (wrapped) gap fails.
        return "ELF load command address/offset not page-aligned" if rules.relr else "cannot change memory protections"
    extents = _extents(cmds)
    if len(extents) > 1:
        # The zero pages past a command's file data are an anonymous MAP_FIXED mmap():
        # it fails only where nothing can be mapped, past the top of user space.
        lowest = _lowest_start(cmds, obj, space or address_space())
        if any(lowest + (end - first.mapstart) > USER_ADDRESS_SPACE for _start, end in extents[1:]):
            return "cannot map zero-fill pages"
    return None


def _zero_fill(c: LoadCommand) -> int | None:
    """Where the anonymous zero pages of a command end, if it has any past its file pages."""
    if c.allocend <= c.dataend:
        return None
    zeropage = min(_up(c.dataend), c.allocend)
    return _up(c.allocend) if c.allocend > zeropage else None


def _extents(cmds: list[LoadCommand]) -> list[tuple[int, int]]:
    """What the object has mapped once its segments are in: the reservation (holes
    included, PROT_NONE) and any zero pages mapped past it."""
    start = cmds[0].mapstart
    out = [(start, start + _up(map_length(cmds)))]
    for c in cmds:
        end = _zero_fill(c)
        if end is not None and end > out[0][1]:
            out.append((min(_up(c.dataend), c.allocend), end))
    return out


def _covered(extents, start: int, end: int) -> bool:
    """Whether every page of [start, end) is in one of the extents."""
    at = start
    for lo, hi in sorted(extents):
        if lo <= at < hi:
            at = hi
        if at >= end:
            return True
    return at >= end


def relro_failure(obj: ElfObject, space: AddressSpace | None = None) -> tuple[bool, str] | None:
    """dl-reloc.c _dl_protect_relro(), once the object is relocated: mprotect(PROT_READ)
    of its PT_GNU_RELRO pages, ENOMEM where a page is not mapped.  (certain, why) when
    they are not all the object's own, or None."""
    cmds = load_commands(obj)
    if obj.relro is None or not cmds:
        return None
    vaddr, memsz = obj.relro
    start, end = _down(vaddr), _down(vaddr + memsz)
    if start >= end or _covered(_extents(cmds), start, end):
        return None
    space = space or address_space()
    why = (f"its PT_GNU_RELRO (address {vaddr:#x}, {memsz} bytes) lies outside its segments, and ld.so "
           "makes those pages read-only once the object is relocated: the LOAD fails where they are not "
           "mapped, and where they are, whatever is there becomes read-only (the backend may die later)")
    certain = _lowest_start(cmds, obj, space) + (end - cmds[0].mapstart) > USER_ADDRESS_SPACE
    return certain, why


def zero_fill_overreach(obj: ElfObject) -> str | None:
    """Zero pages mapped MAP_FIXED past the object's own reservation: over whatever
    the kernel has placed there (when that is not certain to fail outright)."""
    cmds = load_commands(obj)
    if not cmds:
        return None
    extents = _extents(cmds)
    if len(extents) == 1:
        return None
    _start, hi = extents[1]
    return (f"a PT_LOAD's zero-filled part (up to address {hi - 1:#x}) reaches past the rest of the object, and "
            "ld.so maps zero pages there with MAP_FIXED, over whatever the process has mapped next to it")


def needs_executable_stack(obj: ElfObject) -> bool:
    """PT_GNU_STACK with PF_X, or none at all: dl-load.c starts from
    DEFAULT_STACK_PERMS, which is RWX on x86-64."""
    return obj.stack_flags is None or bool(obj.stack_flags & PF_X)


def stack_executable(environ: dict[str, str], startup: list[ElfObject], rules) -> bool:
    """Whether the server process's stack is already executable, so that a dlopen()
    needing it has nothing to change: an object mapped at startup (the executable,
    its dependencies, LD_PRELOAD) asked for it, or glibc.rtld.execstack=2 forced
    it (Rules.execstack_force: 2.42, or a 2.41 branch with the backport)."""
    if rules.execstack_force and tunable(environ, "glibc.rtld.execstack", 0, 2) == 2:
        return True
    return any(needs_executable_stack(obj) for obj in startup)


def _noexec(path: str) -> bool:
    """Whether the file system holding `path` is mounted noexec."""
    try:
        return bool(os.statvfs(rootfs.host(path)).f_flag & os.ST_NOEXEC)
    except (OSError, AttributeError):
        return False
