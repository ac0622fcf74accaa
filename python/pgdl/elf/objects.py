"""Read what the dynamic linker and PostgreSQL look at in an ELF file.

Only the program-header view is used for loading facts (PT_DYNAMIC and the
tables it points to), as glibc does: a stripped or sstripped library is read
the same way the loader reads it.  Section headers are consulted only for the
optional `.symtab`, which helps find the magic block in unstripped builds.

Every read is bounded and every offset is checked, because the file may be
hostile.  Problems raise ElfError with a message meant for a person.
"""

from __future__ import annotations

import os
import stat
import struct

from .. import filestate, interrupts, rootfs
from .format import (BLOCK, GNU_PROPERTY_X86_ISA_1_NEEDED, DF_1_NODEFLIB, DT_AUXILIARY, DT_FILTER, DT_FLAGS_1, DT_GNU_HASH, DT_NEEDED, DT_NULL, DT_RPATH, DT_RUNPATH,
                     DT_SONAME, DT_VERDEF, DT_VERNEED, ELFCLASS32, ELFCLASS64, ELFDATA2LSB, ELFDATA2MSB, ELFMAG,
                     MAX_DYNAMIC, MAX_PHNUM, NO_VERSIONS, PT_DYNAMIC, PT_GNU_PROPERTY, PT_GNU_RELRO, PT_GNU_STACK, PT_INTERP, PT_LOAD, PT_TLS, ElfError, Symbol, VersionNeed,
                     Versions, machine_name, struct_format)
from .hashing import read_bloom
from .sections import relative_relocation, symtab_symbol
from .strings import PagedStrings
from .versions import read_versions


class ElfObject:
    """An ELF file as the dynamic linker sees it: header, segments, dynamic section.

    open_elf() makes one from the ELF header and reads the rest; the symbol
    and version tables are read on first use."""
    __slots__ = ("path", "size", "elf_class", "little_endian", "osabi", "abiversion", "e_type", "machine",
                 "phentsize", "phoff", "phnum", "shoff", "shnum", "shentsize", "shstrndx", "loads",
                 "load_flags", "load_aligns", "relro", "stack_flags", "interp", "tls", "x86_isa_needed", "writable", "dynamic_range", "has_dynamic", "needed", "filtees", "soname", "rpath", "runpath", "flags_1", "symbol_table",
                 "_dyn", "_bloom", "_versions", "_fd", "_block", "opened_as")

    def __init__(self, path: str, size: int, elf_class: int, little_endian: bool, osabi: int,
                 abiversion: int, e_type: int, machine: int, phentsize: int,
                 phoff: int = 0, phnum: int = 0, shoff: int = 0, shnum: int = 0,
                 shentsize: int = 0, shstrndx: int = 0):
        self.path = path
        self.size = size
        self.elf_class = elf_class                  # 32 or 64
        self.little_endian = little_endian
        self.osabi = osabi
        self.abiversion = abiversion
        self.e_type = e_type
        self.machine = machine
        self.phentsize = phentsize
        self.phoff, self.phnum = phoff, phnum
        self.shoff, self.shnum, self.shentsize, self.shstrndx = shoff, shnum, shentsize, shstrndx
        self.loads: list[tuple[int, int, int, int]] = []    # PT_LOAD: (vaddr, offset, filesz, memsz)
        self.load_flags: list[int] = []                      # p_flags of each PT_LOAD, in the same order
        self.load_aligns: list[int] = []                     # p_align of each PT_LOAD
        self.relro: tuple[int, int] | None = None            # PT_GNU_RELRO: (vaddr, memsz), the last one
        self.stack_flags: int | None = None                  # PT_GNU_STACK's p_flags (None: there is none)
        self.interp = ""                                     # PT_INTERP: the program interpreter's path
        self.tls: tuple[int, int, int] | None = None         # PT_TLS: (vaddr, memsz, align)
        self.x86_isa_needed = 0                              # GNU_PROPERTY_X86_ISA_1_NEEDED bits
        self.writable: list[tuple[int, int]] = []            # PT_LOAD with PF_W: (vaddr, memsz)
        self.dynamic_range: tuple[int, int] | None = None     # PT_DYNAMIC: (vaddr, memsz)
        # From the dynamic section.
        self.has_dynamic = False
        self.needed: list[str] = []
        # DT_NEEDED, DT_FILTER and DT_AUXILIARY names in the dynamic section's
        # order (tag, name), as dl-deps.c maps them; only set where there are filtees.
        self.filtees: list[tuple[int, str]] = []
        self.soname: str | None = None
        self.rpath: str | None = None
        self.runpath: str | None = None
        self.flags_1 = 0
        self.symbol_table = None                    # pgdl.elf.dynsym.table() keeps it here
        # Read lazily.
        self._dyn: dict[int, int] = {}           # the last value of each tag
        self._bloom: object = False                 # None: no GNU hash
        self._versions: Versions | None = None
        self._fd: int | None = None                 # open while reading()
        self._block: tuple[int, bytes] = (0, b"")   # read-ahead, while open
        self.opened_as: filestate.State | None = None    # the file read: the state of its descriptor

    @property
    def machine_name(self) -> str:
        return machine_name(self.machine)

    @property
    def class_name(self) -> str:
        return "ELFCLASS64" if self.elf_class == 64 else "ELFCLASS32"

    @property
    def nodeflib(self) -> bool:
        return bool(self.flags_1 & DF_1_NODEFLIB)

    # -- reading -----------------------------------------------------------

    def read_at(self, offset: int, size: int) -> bytes:
        """Bytes at a file offset; ElfError if they lie outside the file."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ElfError(f"offset {offset:#x}+{size} is outside the file ({self.size} bytes)")
        if not size:
            return b""
        if self._fd is None:
            with self.reading():
                if self._fd is None:
                    raise ElfError("the file cannot be opened again")
                return self.read_at(offset, size)
        start, block = self._block
        if start <= offset and offset + size <= start + len(block):
            return block[offset - start:offset - start + size]
        try:
            if size < BLOCK:
                # Small reads come in runs (version chains, hash chains): read ahead.
                block = os.pread(self._fd, min(BLOCK, self.size - offset), offset)
                self._block = (offset, block)
                data = block[:size]
            else:
                data = os.pread(self._fd, size, offset)
        except OSError:
            filestate.read_failed()
            raise
        if len(data) != size:
            filestate.read_failed()
            raise ElfError("file changed while being read")
        return data

    def reading(self) -> "_Reading":
        """Keep the file open for the reads inside a `with` block (one open, many preads)."""
        return _Reading(self)

    def vaddr_to_offset(self, vaddr: int, size: int = 1) -> int:
        """File offset of a virtual address, via the PT_LOAD segments."""
        for p_vaddr, p_offset, p_filesz, _memsz in self.loads:
            if p_vaddr <= vaddr and vaddr + size <= p_vaddr + p_filesz:
                return p_offset + (vaddr - p_vaddr)
        raise ElfError(f"address {vaddr:#x} is not backed by the file")

    def read_vaddr(self, vaddr: int, size: int) -> bytes:
        return self.read_at(self.vaddr_to_offset(vaddr, max(size, 1)), size)

    def dynamic_value(self, tag: int) -> int | None:
        """The entry ld.so uses: the last with this tag (glibc's elf_get_dynamic_info
        keeps one per tag; only DT_NEEDED is walked whole)."""
        return self._dyn.get(tag)

    # -- symbols (the table itself: pgdl.elf.dynsym) ----------------------------

    def bloom(self):
        """The GNU hash table's Bloom filter (pgdl.elf.hashing.read_bloom), or None."""
        if self._bloom is False:
            self._bloom = read_bloom(self)
        return self._bloom

    def static_symbol(self, name_prefix: str) -> Symbol | None:
        """A `.symtab` symbol whose name starts with the prefix (unstripped files only)."""
        return symtab_symbol(self, name_prefix)

    def relative_relocation_at(self, vaddr: int) -> int | None:
        """The value a RELATIVE relocation stores at `vaddr` (load base 0), if any."""
        return relative_relocation(self, vaddr)

    # -- versions: read on first use, so ElfError if they cannot be read ----

    def versions(self) -> Versions:
        """The version tables (VERDEF, VERNEED)."""
        if self._versions is None:
            if DT_VERDEF in self._dyn or DT_VERNEED in self._dyn:
                with self.reading():
                    self._versions = read_versions(self, PagedStrings(self))
            else:
                self._versions = NO_VERSIONS
        return self._versions

    @property
    def verdefs(self) -> list[str]:
        """The version names this object defines (VERDEF, the base one left out)."""
        return self.versions().defined

    @property
    def verneeds(self) -> list[VersionNeed]:
        """The versions this object requires (VERNEED)."""
        return self.versions().needed

    def version_names(self) -> dict[int, str]:
        """Version index -> name, from VERDEF and VERNEED."""
        return self.versions().names

    def version_files(self) -> dict[int, str]:
        """Version index -> the SONAME a VERNEED entry requires it from."""
        return self.versions().files

    def base_version(self) -> str | None:
        """The VER_FLG_BASE definition (index 1): the object's own name as a version."""
        return self.version_names().get(1)


def open_elf(path: str) -> ElfObject:
    """Read an ELF file's identity, program headers and dynamic section."""
    interrupts.check()
    fd, opened_as = _open_regular(path)
    size = opened_as.size
    try:
        first = os.pread(fd, min(BLOCK, size), 0)     # the ELF header, and the program headers after it
        if len(first) != min(BLOCK, size):
            filestate.read_failed()                        # shorter than fstat said: it changed meanwhile
        obj = _parse_header(path, size, first[:64])
    except OSError:
        filestate.read_failed()
        os.close(fd)
        raise
    except BaseException:
        os.close(fd)
        raise
    obj.opened_as = opened_as
    with _Reading(obj, fd):
        obj._block = (0, first)
        _read_program_headers(obj)
        # Nearly every object opened is searched for symbols, and the first
        # search needs the Bloom filter alone: read it while the file is open.
        if DT_GNU_HASH in obj._dyn:
            try:
                obj.bloom()
            except (ElfError, OSError, struct.error, ValueError):
                pass                    # bloom() raises again where it is needed
    return obj


class _Reading:
    """ElfObject.reading(): opens the file unless it is open already (or takes
    the descriptor given), and closes what it opened.

    If it cannot be opened, nothing is held and each read reports the error itself."""

    __slots__ = ("obj", "fd", "opened")

    def __init__(self, obj: ElfObject, fd: int | None = None):
        self.obj, self.fd, self.opened = obj, fd, False

    def __enter__(self) -> None:
        if self.obj._fd is None:
            if self.fd is None:
                try:
                    self.fd, opened_as = _open_regular(self.obj.path)
                except (OSError, ElfError):
                    filestate.read_failed()
                    return                # each read will try, and fail, on its own
                if opened_as.content != self.obj.opened_as.content:     # another file now has its path
                    os.close(self.fd)
                    self.fd = None
                    filestate.read_failed()
                    return
            self.obj._fd, self.opened = self.fd, True

    def __exit__(self, *exc) -> None:
        if self.opened:
            fd, self.obj._fd, self.obj._block = self.obj._fd, None, (0, b"")
            os.close(fd)


_ELF_FILES = filestate.FileCache(256)


def cached_elf(path: str) -> ElfObject:
    """open_elf(), reused while the file is in the same state (see pgdl.filestate).

    The symbol tables of big objects (postgres, libc, libicu...) are then
    read once per backend instead of once per call."""
    return _ELF_FILES.get(path, lambda s: _open_examined(path, s))


def _open_examined(path: str, s: filestate.State) -> ElfObject:
    if s.error:                          # stat() failed: so would open()
        raise OSError(s.error, os.strerror(s.error), path)
    obj = open_elf(path)
    if obj.opened_as.content != s.content:
        filestate.read_failed()               # the file read is not the one examined: keep nothing built on it
    return obj


def _open_regular(path: str) -> tuple[int, filestate.State]:
    """A descriptor of a regular file, opened without ever blocking on a FIFO
    or device, and its state."""
    fd = os.open(rootfs.host(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ElfError("not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, filestate.State.of(st)


def _parse_header(path: str, size: int, head: bytes) -> ElfObject:
    # glibc (64-bit) reads a whole Elf64_Ehdr before it looks at anything,
    # so a short file is "too short" before it is "not ELF".
    if len(head) < 64:
        raise ElfError("file too short")
    if head[:4] != ELFMAG:
        raise ElfError("invalid ELF header")
    elf_class = {ELFCLASS32: 32, ELFCLASS64: 64}.get(head[4])
    if elf_class is None or head[5] not in (ELFDATA2LSB, ELFDATA2MSB):
        raise ElfError("invalid ELF header")
    little = head[5] == ELFDATA2LSB
    e = "<" if little else ">"
    if elf_class == 64:
        (e_type, e_machine, _ver, _entry, e_phoff, e_shoff, _flags, _ehsize,
         e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx) = struct.unpack_from(e + "HHIQQQIHHHHHH", head, 16)
    else:
        (e_type, e_machine, _ver, _entry, e_phoff, e_shoff, _flags, _ehsize,
         e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx) = struct.unpack_from(e + "HHIIIIIHHHHHH", head, 16)
    obj = ElfObject(path=path, size=size, elf_class=elf_class, little_endian=little,
                    osabi=head[7], abiversion=head[8], e_type=e_type, machine=e_machine,
                    phentsize=e_phentsize, phoff=e_phoff, phnum=e_phnum, shoff=e_shoff, shnum=e_shnum,
                    shentsize=e_shentsize, shstrndx=e_shstrndx)
    return obj


def _read_program_headers(obj: ElfObject) -> None:
    expected = 56 if obj.elf_class == 64 else 32
    phnum = obj.phnum
    if phnum == 0 or obj.phentsize != expected:
        return                      # the loader rejects this; see loadability checks
    if phnum > MAX_PHNUM:
        raise ElfError(f"absurd number of program headers ({phnum})")
    phoff = obj.phoff
    if phoff + phnum * expected > obj.size:
        raise ElfError("program headers lie outside the file")
    table = obj.read_at(phoff, phnum * expected)
    spec = "IIQQQQQQ" if obj.elf_class == 64 else "IIIIIIII"
    dynamic = None
    for fields in struct.iter_unpack(struct_format(obj, spec), table):
        if obj.elf_class == 64:
            p_type, p_flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_align = fields
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, p_flags, p_align = fields
        if p_type == PT_LOAD:
            obj.loads.append((p_vaddr, p_offset, p_filesz, p_memsz))
            obj.load_flags.append(p_flags)
            obj.load_aligns.append(p_align)
            if p_flags & 2:                                          # PF_W
                obj.writable.append((p_vaddr, p_memsz))
        elif p_type == PT_GNU_RELRO:
            obj.relro = (p_vaddr, p_memsz)          # dl-load.c keeps the last one
        elif p_type == PT_GNU_STACK:
            obj.stack_flags = p_flags               # and the last one of these too
        elif p_type == PT_INTERP and not obj.interp and p_offset + p_filesz <= obj.size:
            obj.interp = obj.read_at(p_offset, min(p_filesz, 4096)).split(b"\0")[0].decode("utf-8", "replace")
        elif p_type == PT_TLS and obj.tls is None and p_memsz:
            obj.tls = (p_vaddr, p_memsz, max(p_align, 1))
        elif p_type == PT_GNU_PROPERTY and 0 < p_filesz <= 4096 and p_offset + p_filesz <= obj.size:
            obj.x86_isa_needed = _x86_isa_needed(obj, obj.read_at(p_offset, p_filesz))
        elif p_type == PT_DYNAMIC and dynamic is None and p_filesz:
            # dl-load.c skips a PT_DYNAMIC with p_filesz 0 (the mark of an
            # `objcopy --only-keep-debug` file): "object file has no dynamic section".
            dynamic = (p_offset, p_filesz)
            obj.dynamic_range = (p_vaddr, p_memsz)
    if dynamic is None:
        return
    obj.has_dynamic = True
    d_offset, d_size = dynamic
    if d_offset >= obj.size:
        return       # truncated file: the segment checks report it
    d_size = min(d_size, MAX_DYNAMIC, obj.size - d_offset)
    entsize = 16 if obj.elf_class == 64 else 8
    raw = obj.read_at(d_offset, d_size - d_size % entsize)
    flat = struct.unpack(struct_format(obj, ("QQ" if obj.elf_class == 64 else "II") * (len(raw) // entsize)), raw)
    dyn = obj._dyn
    order = []
    for tag, value in zip(flat[0::2], flat[1::2]):
        if tag == DT_NULL:
            break
        dyn[tag] = value
        if tag in (DT_NEEDED, DT_FILTER, DT_AUXILIARY):
            order.append((tag, value))
    _read_dynamic_strings(obj, order)
    obj.flags_1 = obj.dynamic_value(DT_FLAGS_1) or 0


def _x86_isa_needed(obj: ElfObject, notes: bytes) -> int:
    """GNU_PROPERTY_X86_ISA_1_NEEDED from PT_GNU_PROPERTY's NT_GNU_PROPERTY_TYPE_0
    note, as sysdeps/x86/dl-prop.h reads it (0: none)."""
    e, align = ("<" if obj.little_endian else ">"), (8 if obj.elf_class == 64 else 4)
    at = 0
    while at + 12 <= len(notes):
        namesz, descsz, kind = struct.unpack_from(e + "III", notes, at)
        name_at = at + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        if kind == 5 and notes[name_at:name_at + namesz] == b"GNU\0":
            p, end = desc_at, min(desc_at + descsz, len(notes))
            while p + 8 <= end:
                pr_type, pr_datasz = struct.unpack_from(e + "II", notes, p)
                if pr_type == GNU_PROPERTY_X86_ISA_1_NEEDED and pr_datasz == 4 and p + 12 <= end:
                    return struct.unpack_from(e + "I", notes, p + 8)[0]
                p += 8 + (pr_datasz + align - 1) // align * align
        at = desc_at + (descsz + align - 1) // align * align
    return 0


def _read_dynamic_strings(obj: ElfObject, order: list[tuple[int, int]]) -> None:
    wanted = (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH, DT_FILTER, DT_AUXILIARY)
    if not any(tag in obj._dyn for tag in wanted):
        return
    table = PagedStrings(obj)       # not read whole: libLLVM's is 3 MB, for a few names
    obj.needed = [table.string(v) for tag, v in order if tag == DT_NEEDED]
    if DT_FILTER in obj._dyn or DT_AUXILIARY in obj._dyn:
        obj.filtees = [(tag, table.string(v)) for tag, v in order]
    if DT_SONAME in obj._dyn:
        obj.soname = table.string(obj.dynamic_value(DT_SONAME))
    if DT_RPATH in obj._dyn:
        obj.rpath = table.string(obj.dynamic_value(DT_RPATH))
    if DT_RUNPATH in obj._dyn:
        obj.runpath = table.string(obj.dynamic_value(DT_RUNPATH))

