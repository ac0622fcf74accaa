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

from .. import filestate, interrupts
from ..record import Value

# e_ident and header constants (elf.h)
ELFMAG = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
SHT_SYMTAB, SHT_STRTAB = 2, 3

DT_NULL, DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB = 0, 1, 4, 5, 6
DT_RELA, DT_RELASZ, DT_RELAENT, DT_STRSZ = 7, 8, 9, 10
DT_SONAME, DT_RPATH, DT_REL, DT_RELSZ, DT_RELENT = 14, 15, 17, 18, 19
DT_FLAGS, DT_RUNPATH, DT_RELRSZ, DT_RELR = 30, 29, 35, 36
DT_GNU_HASH = 0x6FFFFEF5
DT_VERSYM, DT_VERDEF, DT_VERDEFNUM = 0x6FFFFFF0, 0x6FFFFFFC, 0x6FFFFFFD
DT_VERNEED, DT_VERNEEDNUM, DT_FLAGS_1 = 0x6FFFFFFE, 0x6FFFFFFF, 0x6FFFFFFB
DF_1_NODEFLIB = 0x800

STB_LOCAL, STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE = 0, 1, 2, 10
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STT_COMMON, STT_TLS, STT_GNU_IFUNC = 5, 6, 10
STV_DEFAULT, STV_INTERNAL, STV_HIDDEN, STV_PROTECTED = 0, 1, 2, 3
SHN_UNDEF, SHN_ABS = 0, 0xFFF1
VER_NDX_LOCAL, VER_NDX_GLOBAL = 0, 1
VERSYM_HIDDEN = 0x8000
VER_FLG_BASE, VER_FLG_WEAK = 0x1, 0x2

EM_386, EM_ARM, EM_X86_64, EM_AARCH64 = 3, 40, 62, 183

# Relocation types whose result is "load base + addend" (RELATIVE).
RELATIVE_RELOCS = {EM_X86_64: 8, EM_AARCH64: 1027, EM_386: 8, EM_ARM: 23}

# Bounds for hostile files.  Real libraries are far below these.
MAX_PHNUM = 4096
MAX_SHNUM = 65535
MAX_DYNAMIC = 1 << 20         # bytes of PT_DYNAMIC read
MAX_TABLE = 64 << 20          # bytes of one symbol/string/version table
MAX_SYMBOLS = 4_000_000
MAX_VERSION_ENTRIES = 100_000
BLOCK = 16384                 # read-ahead for small reads: a small module's tables in one read


class ElfError(Exception):
    """The file cannot be read as ELF; the message says why."""


class Symbol(Value):
    """One .dynsym entry, with its version from .gnu.version."""
    __slots__ = ("name", "value", "size", "bind", "type", "visibility", "shndx", "version", "hidden",
                 "version_file")

    def __init__(self, name: str, value: int, size: int, bind: int, type: int, visibility: int, shndx: int,
                 version: str | None = None, hidden: bool = False, version_file: str | None = None):
        self.name = name
        self.value = value
        self.size = size
        self.bind = bind
        self.type = type
        self.visibility = visibility
        self.shndx = shndx
        self.version = version            # version name, or None if unversioned
        self.hidden = hidden              # versym hidden bit (non-default version)
        self.version_file = version_file  # for undefined: the library named in VERNEED

    @property
    def defined(self) -> bool:
        return self.shndx != SHN_UNDEF


class VersionNeed(Value):
    """One DT_VERNEED requirement: a version wanted from a SONAME."""
    __slots__ = ("file", "version", "weak")

    def __init__(self, file: str, version: str, weak: bool):
        self.file = file                # the SONAME the versions are required from
        self.version = version
        self.weak = weak


class ElfObject:
    """An ELF file as the dynamic linker sees it: header, segments, dynamic section.

    open_elf() makes one from the ELF header and reads the rest; the symbol
    and version tables are read on first use."""
    __slots__ = ("path", "size", "elf_class", "little_endian", "osabi", "abiversion", "e_type", "machine",
                 "phentsize", "has_dynamic", "needed", "soname", "rpath", "runpath", "flags_1", "_phoff",
                 "_phnum", "_shoff", "_shnum", "_shentsize", "_shstrndx", "_loads", "_dyn", "_dynsym",
                 "_bloom", "_fd", "_block", "_verdefs", "_verneeds", "_version_names", "_version_files",
                 "_verdef_index")

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
        # From the dynamic section.
        self.has_dynamic = False
        self.needed: list[str] = []
        self.soname: str | None = None
        self.rpath: str | None = None
        self.runpath: str | None = None
        self.flags_1 = 0
        # Private state for lazy reading.
        self._phoff, self._phnum = phoff, phnum
        self._shoff, self._shnum = shoff, shnum
        self._shentsize, self._shstrndx = shentsize, shstrndx
        self._loads: list[tuple[int, int, int, int]] = []
        self._dyn: dict[int, list[int]] = {}
        self._dynsym = None                         # pgdl.dynsym.DynSym
        self._bloom: object = False                 # None: no GNU hash
        self._fd: int | None = None                 # open while reading()
        self._block: tuple[int, bytes] = (0, b"")   # read-ahead, while open
        self._verdefs: list[str] | None = None      # None: versions not read yet
        self._verneeds: list[VersionNeed] | None = None
        self._version_names: dict[int, str] = {}
        self._version_files: dict[int, str] = {}
        self._verdef_index: dict[str, int] | None = None    # pgdl.binding's

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
                return self.read_at(offset, size)
        start, block = self._block
        if start <= offset and offset + size <= start + len(block):
            return block[offset - start:offset - start + size]
        if size < BLOCK:
            # Small reads come in runs (version chains, hash chains): read ahead.
            block = os.pread(self._fd, min(BLOCK, self.size - offset), offset)
            self._block = (offset, block)
            data = block[:size]
        else:
            data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise ElfError("file changed while being read")
        return data

    def reading(self) -> "_Reading":
        """Keep the file open for the reads inside a `with` block (one open, many preads)."""
        return _Reading(self)

    def vaddr_to_offset(self, vaddr: int, size: int = 1) -> int:
        """File offset of a virtual address, via the PT_LOAD segments."""
        for p_vaddr, p_offset, p_filesz, _memsz in self._loads:
            if p_vaddr <= vaddr and vaddr + size <= p_vaddr + p_filesz:
                return p_offset + (vaddr - p_vaddr)
        raise ElfError(f"address {vaddr:#x} is not backed by the file")

    def read_vaddr(self, vaddr: int, size: int) -> bytes:
        return self.read_at(self.vaddr_to_offset(vaddr, max(size, 1)), size)

    def dynamic_value(self, tag: int) -> int | None:
        """The entry ld.so uses: the last with this tag (glibc's elf_get_dynamic_info
        keeps one per tag; only DT_NEEDED is walked whole)."""
        values = self._dyn.get(tag)
        return values[-1] if values else None

    # -- symbols -----------------------------------------------------------

    def forget_symbols(self) -> None:
        """Drop the symbol table (read again if needed): for objects done with."""
        self._dynsym = None

    def bloom(self):
        """The GNU hash table's Bloom filter (pgdl.dynsym.read_bloom), or None."""
        if self._bloom is False:
            from .dynsym import read_bloom
            self._bloom = read_bloom(self)
        return self._bloom

    def dynsym(self):
        """The dynamic symbol table (pgdl.dynsym.DynSym), read on first use."""
        if self._dynsym is None:
            from .dynsym import DynSym
            with self.reading():
                self._dynsym = DynSym(self)
        return self._dynsym

    def symbols(self) -> list[Symbol]:
        """All entries of the dynamic symbol table (index 0 excluded)."""
        table = self.dynsym()
        return [table.symbol(i) for i in range(1, table.count)]

    def lookup(self, name: str) -> list[Symbol]:
        """Dynamic symbols with this name that a hash-table search finds, defined or not."""
        table = self.dynsym()
        return [table.symbol(i) for i in table.find(name)]

    def definition(self, name: str) -> Symbol | None:
        """A global or weak definition of `name` exported by this object."""
        table = self.dynsym()
        for i in table.find(name):
            if table.is_exported_definition(i):
                return table.symbol(i)
        return None

    # -- versions: read on first use, so ElfError if they cannot be read ----

    @property
    def verdefs(self) -> list[str]:
        """The version names this object defines (VERDEF, the base one left out)."""
        self._load_versions()
        return self._verdefs

    @property
    def verneeds(self) -> list[VersionNeed]:
        """The versions this object requires (VERNEED)."""
        self._load_versions()
        return self._verneeds

    def version_names(self) -> dict[int, str]:
        """Version index -> name, from VERDEF and VERNEED."""
        self._load_versions()
        return self._version_names

    def version_files(self) -> dict[int, str]:
        """Version index -> the SONAME a VERNEED entry requires it from."""
        self._load_versions()
        return self._version_files

    def base_version(self) -> str | None:
        """The VER_FLG_BASE definition (index 1): the object's own name as a version."""
        return self.version_names().get(1)

    def _load_versions(self) -> None:
        if self._verdefs is None:
            if DT_VERDEF in self._dyn or DT_VERNEED in self._dyn:
                with self.reading():
                    read_versions(self, PagedStrings(self))
            else:
                self._verdefs, self._verneeds = [], []

    def static_symbol(self, name_prefix: str) -> Symbol | None:
        """A `.symtab` symbol whose name starts with the prefix (unstripped files only)."""
        return _find_symtab_symbol(self, name_prefix)

    def relative_relocation_at(self, vaddr: int) -> int | None:
        """The value a RELATIVE relocation stores at `vaddr` (load base 0), if any."""
        return _relative_relocation(self, vaddr)


# pyelftools' descriptions of the machines PostgreSQL servers run on, so that
# naming them does not import pyelftools (it takes longer than all of pgdl).
COMMON_MACHINES = {EM_X86_64: "Advanced Micro Devices X86-64", EM_AARCH64: "AArch64", EM_386: "Intel 80386",
                   EM_ARM: "ARM"}


def machine_name(machine: int) -> str:
    """A person's name for e_machine, e.g. "Advanced Micro Devices X86-64"."""
    if machine in COMMON_MACHINES:
        return COMMON_MACHINES[machine]
    from elftools.elf.descriptions import describe_e_machine
    from elftools.elf.enums import ENUM_E_MACHINE
    names = {value: name for name, value in ENUM_E_MACHINE.items() if isinstance(value, int)}
    return describe_e_machine(names[machine]) if machine in names else f"machine {machine}"


def open_elf(path: str) -> ElfObject:
    """Read an ELF file's identity, program headers and dynamic section."""
    interrupts.check()
    fd, size = _open_regular(path)
    try:
        first = os.pread(fd, min(BLOCK, size), 0)     # the ELF header, and the program headers after it
        obj = _parse_header(path, size, first[:64])
    except BaseException:
        os.close(fd)
        raise
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
                    self.fd, _size = _open_regular(self.obj.path)
                except (OSError, ElfError):
                    return                # each read will try, and fail, on its own
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
    if len(s) == 1:                      # stat() failed: so would open()
        raise OSError(s[0], os.strerror(s[0]), path)
    return open_elf(path)


def _open_regular(path: str) -> tuple[int, int]:
    """A descriptor of a regular file, opened without ever blocking on a FIFO
    or device, and the file's size."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ElfError("not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


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


def _fmt(obj: ElfObject, spec: str) -> str:
    return ("<" if obj.little_endian else ">") + spec


def _read_program_headers(obj: ElfObject) -> None:
    expected = 56 if obj.elf_class == 64 else 32
    phnum = obj._phnum
    if phnum == 0 or obj.phentsize != expected:
        return                      # the loader rejects this; see loadability checks
    if phnum > MAX_PHNUM:
        raise ElfError(f"absurd number of program headers ({phnum})")
    phoff = obj._phoff
    if phoff + phnum * expected > obj.size:
        raise ElfError("program headers lie outside the file")
    table = obj.read_at(phoff, phnum * expected)
    spec = "IIQQQQQQ" if obj.elf_class == 64 else "IIIIIIII"
    dynamic = None
    for fields in struct.iter_unpack(_fmt(obj, spec), table):
        if obj.elf_class == 64:
            p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _align = fields
        else:
            p_type, p_offset, p_vaddr, _paddr, p_filesz, p_memsz, _flags, _align = fields
        if p_type == PT_LOAD:
            obj._loads.append((p_vaddr, p_offset, p_filesz, p_memsz))
        elif p_type == PT_DYNAMIC and dynamic is None:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return
    obj.has_dynamic = True
    d_offset, d_size = dynamic
    if d_offset >= obj.size:
        return       # truncated file: the segment checks report it
    d_size = min(d_size, MAX_DYNAMIC, obj.size - d_offset)
    entsize = 16 if obj.elf_class == 64 else 8
    raw = obj.read_at(d_offset, d_size - d_size % entsize)
    flat = struct.unpack(_fmt(obj, ("QQ" if obj.elf_class == 64 else "II") * (len(raw) // entsize)), raw)
    dyn = obj._dyn
    for tag, value in zip(flat[0::2], flat[1::2]):
        if tag == DT_NULL:
            break
        if tag in dyn:
            dyn[tag].append(value)
        else:
            dyn[tag] = [value]
    _read_dynamic_strings(obj)
    obj.flags_1 = obj.dynamic_value(DT_FLAGS_1) or 0


def string_table(obj: ElfObject) -> bytes:
    """DT_STRTAB, whole.  Not kept on the object: only the few objects whose symbols
    are searched need it after open_elf(), and pgdl.dynsym keeps its own copy."""
    start, size = _string_table_range(obj)
    return obj.read_vaddr(start, size)


def _string_table_range(obj: ElfObject) -> tuple[int, int]:
    strtab = obj.dynamic_value(DT_STRTAB)
    strsz = obj.dynamic_value(DT_STRSZ)
    if strtab is None or strsz is None:
        raise ElfError("dynamic section has no string table")
    if strsz > MAX_TABLE:
        raise ElfError(f"absurd string table size ({strsz})")
    return strtab, strsz


class PagedStrings:
    """DT_STRTAB read a page at a time, as strings are asked for: where only a
    few of its strings are wanted (DT_NEEDED, SONAME and version names when a
    file is opened; the names libLLVM's 3 MB table is searched for)."""

    PAGE = BLOCK

    def __init__(self, obj: ElfObject):
        self.obj = obj
        self.start, self.size = _string_table_range(obj)
        self.pages: dict[int, bytes] = {}

    def _page(self, n: int) -> bytes:
        page = self.pages.get(n)
        if page is None:
            at = n * self.PAGE
            page = self.pages[n] = self.obj.read_vaddr(self.start + at, min(self.PAGE, self.size - at))
        return page

    def string(self, offset: int) -> str:
        if offset < 0 or offset >= self.size:
            raise ElfError(f"string offset {offset:#x} is outside the string table")
        parts = []
        n, at = divmod(offset, self.PAGE)
        length = 0
        while True:
            page = self._page(n)
            end = page.find(b"\0", at)
            if end >= 0:
                parts.append(page[at:end])
                return b"".join(parts).decode("utf-8", "surrogateescape")
            parts.append(page[at:])
            length += len(page) - at
            n, at = n + 1, 0
            if n * self.PAGE >= self.size:
                raise ElfError("unterminated string in string table")
            if length > MAX_NAME:
                raise ElfError(_TOO_LONG)


# No real name comes near this; reading each name of a table without NULs to
# its end would cost names x table size.
MAX_NAME = 1 << 15
_TOO_LONG = f"string in string table longer than {MAX_NAME} bytes"


def cstring(table: bytes, offset: int) -> str:
    if offset < 0 or offset >= len(table):
        raise ElfError(f"string offset {offset:#x} is outside the string table")
    end = table.find(b"\0", offset, offset + MAX_NAME + 1)
    if end < 0:
        raise ElfError("unterminated string in string table" if len(table) <= offset + MAX_NAME else _TOO_LONG)
    return table[offset:end].decode("utf-8", "surrogateescape")


def _read_dynamic_strings(obj: ElfObject) -> None:
    wanted = (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH)
    if not any(tag in obj._dyn for tag in wanted):
        return
    table = PagedStrings(obj)       # not read whole: libLLVM's is 3 MB, for a few names
    obj.needed = [table.string(v) for v in obj._dyn.get(DT_NEEDED, [])]
    if DT_SONAME in obj._dyn:
        obj.soname = table.string(obj.dynamic_value(DT_SONAME))
    if DT_RPATH in obj._dyn:
        obj.rpath = table.string(obj.dynamic_value(DT_RPATH))
    if DT_RUNPATH in obj._dyn:
        obj.runpath = table.string(obj.dynamic_value(DT_RUNPATH))


def read_versions(obj: ElfObject, table: PagedStrings) -> None:
    """VERDEF and VERNEED chains: version names by index (for ElfObject, on first use)."""
    index_names: dict[int, str] = {}
    index_files: dict[int, str] = {}
    verdefs: list[str] = []
    verneeds: list[VersionNeed] = []
    verdef = obj.dynamic_value(DT_VERDEF)
    if verdef is not None:
        count = min(obj.dynamic_value(DT_VERDEFNUM) or 0, MAX_VERSION_ENTRIES)
        offset = obj.vaddr_to_offset(verdef)
        for _ in range(count):
            vd = obj.read_at(offset, 20)
            _vd_version, vd_flags, vd_ndx, vd_cnt, _hash, vd_aux, vd_next = struct.unpack(_fmt(obj, "HHHHIII"), vd)
            if vd_cnt:
                vda_name, _vda_next = struct.unpack(_fmt(obj, "II"), obj.read_at(offset + vd_aux, 8))
                name = table.string(vda_name)
                index_names[vd_ndx & 0x7FFF] = name
                if not vd_flags & VER_FLG_BASE:
                    verdefs.append(name)
            if vd_next == 0:
                break
            offset += vd_next
    verneed = obj.dynamic_value(DT_VERNEED)
    if verneed is not None:
        count = min(obj.dynamic_value(DT_VERNEEDNUM) or 0, MAX_VERSION_ENTRIES)
        offset = obj.vaddr_to_offset(verneed)
        budget = MAX_VERSION_ENTRIES
        for _ in range(count):
            _vn_version, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack(_fmt(obj, "HHIII"), obj.read_at(offset, 16))
            file_name = table.string(vn_file)
            aux = offset + vn_aux
            for _ in range(vn_cnt):
                budget -= 1
                if budget < 0:
                    raise ElfError("absurd number of version requirements")
                _hash, vna_flags, vna_other, vna_name, vna_next = struct.unpack(_fmt(obj, "IHHII"), obj.read_at(aux, 16))
                name = table.string(vna_name)
                index_names[vna_other & 0x7FFF] = name
                index_files[vna_other & 0x7FFF] = file_name
                verneeds.append(VersionNeed(file_name, name, bool(vna_flags & VER_FLG_WEAK)))
                if vna_next == 0:
                    break
                aux += vna_next
            if vn_next == 0:
                break
            offset += vn_next
    obj._version_names, obj._version_files = index_names, index_files
    obj._verdefs, obj._verneeds = verdefs, verneeds


def _section_headers(obj: ElfObject) -> list[tuple[int, int, int, int, int, int]]:
    """(name, type, addr, offset, size, link) of every section; [] if absent."""
    shoff, shnum = obj._shoff, obj._shnum
    entsize = 64 if obj.elf_class == 64 else 40
    if shoff == 0 or shnum == 0 or obj._shentsize != entsize or shnum > MAX_SHNUM:
        return []
    if shoff + shnum * entsize > obj.size:
        return []
    raw = obj.read_at(shoff, shnum * entsize)
    spec = "IIQQQQIIQQ" if obj.elf_class == 64 else "IIIIIIIIII"
    out = []
    for fields in struct.iter_unpack(_fmt(obj, spec), raw):
        sh_name, sh_type, _flags, sh_addr, sh_offset, sh_size, sh_link = fields[:7]
        out.append((sh_name, sh_type, sh_addr, sh_offset, sh_size, sh_link))
    return out


def _find_symtab_symbol(obj: ElfObject, prefix: str) -> Symbol | None:
    sections = _section_headers(obj)
    for _name, sh_type, _addr, sh_offset, sh_size, sh_link in sections:
        if sh_type != SHT_SYMTAB or sh_link >= len(sections):
            continue
        if sh_size > MAX_TABLE or sections[sh_link][4] > MAX_TABLE:
            raise ElfError("absurd symbol table size")
        strings = obj.read_at(sections[sh_link][3], sections[sh_link][4])
        raw = obj.read_at(sh_offset, sh_size - sh_size % (24 if obj.elf_class == 64 else 16))
        spec = "IBBHQQ" if obj.elf_class == 64 else "IIIBBH"
        wanted = prefix.encode()
        for fields in struct.iter_unpack(_fmt(obj, spec), raw):
            if obj.elf_class == 64:
                st_name, st_info, st_other, st_shndx, st_value, st_size = fields
            else:
                st_name, st_value, st_size, st_info, st_other, st_shndx = fields
            if st_name < len(strings) and strings.startswith(wanted, st_name):
                name = cstring(strings, st_name)
                return Symbol(name, st_value, st_size, st_info >> 4, st_info & 0xF, st_other & 3, st_shndx)
    return None


def _relative_relocation(obj: ElfObject, vaddr: int) -> int | None:
    relative = RELATIVE_RELOCS.get(obj.machine)
    word = 8 if obj.elf_class == 64 else 4
    rela = obj.dynamic_value(DT_RELA)
    if rela is not None and relative is not None:
        size = min(obj.dynamic_value(DT_RELASZ) or 0, MAX_TABLE)
        entsize = 24 if obj.elf_class == 64 else 12
        raw = obj.read_vaddr(rela, size - size % entsize)
        spec = "QQq" if obj.elf_class == 64 else "IIi"
        for r_offset, r_info, r_addend in struct.iter_unpack(_fmt(obj, spec), raw):
            rtype = r_info & 0xFFFFFFFF if obj.elf_class == 64 else r_info & 0xFF
            if r_offset == vaddr and rtype == relative:
                return r_addend
    rel = obj.dynamic_value(DT_REL)
    if rel is not None and relative is not None:
        size = min(obj.dynamic_value(DT_RELSZ) or 0, MAX_TABLE)
        entsize = 16 if obj.elf_class == 64 else 8
        raw = obj.read_vaddr(rel, size - size % entsize)
        for r_offset, r_info in struct.iter_unpack(_fmt(obj, "QQ" if word == 8 else "II"), raw):
            rtype = r_info & 0xFFFFFFFF if word == 8 else r_info & 0xFF
            if r_offset == vaddr and rtype == relative:
                return _word_at(obj, vaddr)
    relr = obj.dynamic_value(DT_RELR)
    if relr is not None and _relr_covers(obj, relr, vaddr):
        return _word_at(obj, vaddr)
    return None


def _word_at(obj: ElfObject, vaddr: int) -> int:
    word = 8 if obj.elf_class == 64 else 4
    return struct.unpack(_fmt(obj, "Q" if word == 8 else "I"), obj.read_vaddr(vaddr, word))[0]


def _relr_covers(obj: ElfObject, relr: int, vaddr: int) -> bool:
    """Whether the packed RELR table relocates the word at vaddr."""
    word = 8 if obj.elf_class == 64 else 4
    size = min(obj.dynamic_value(DT_RELRSZ) or 0, MAX_TABLE)
    raw = obj.read_vaddr(relr, size - size % word)
    where = 0
    for (entry,) in struct.iter_unpack(_fmt(obj, "Q" if word == 8 else "I"), raw):
        if entry & 1 == 0:
            where = entry
            if where == vaddr:
                return True
            where += word
        else:
            bits = entry >> 1
            for i in range(word * 8 - 1):
                if bits >> i & 1 and where + i * word == vaddr:
                    return True
            where += (word * 8 - 1) * word
    return False
