"""The ELF format as pgdl reads it: elf.h's constants, pgdl's bounds for
hostile files, and the records the reader hands out."""

from __future__ import annotations

import struct
import sys

from ..record import Record, Value

# e_ident and header constants (elf.h)
ELFMAG = b"\x7fELF"


ELFCLASS32, ELFCLASS64 = 1, 2


ELFDATA2LSB, ELFDATA2MSB = 1, 2


ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4


PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_TLS = 1, 2, 3, 7
PT_GNU_PROPERTY = 0x6474E553
PT_GNU_STACK, PT_GNU_RELRO = 0x6474E551, 0x6474E552
GNU_PROPERTY_X86_ISA_1_NEEDED = 0xC0008002


SHT_SYMTAB, SHT_STRTAB = 2, 3


DT_NULL, DT_NEEDED, DT_HASH, DT_STRTAB, DT_SYMTAB = 0, 1, 4, 5, 6


DT_RELA, DT_RELASZ, DT_RELAENT, DT_STRSZ = 7, 8, 9, 10


DT_SONAME, DT_RPATH, DT_REL, DT_RELSZ, DT_RELENT = 14, 15, 17, 18, 19


DT_FLAGS, DT_RUNPATH, DT_RELRSZ, DT_RELR, DT_RELRENT = 30, 29, 35, 36, 37


DT_GNU_HASH = 0x6FFFFEF5


DT_VERSYM, DT_VERDEF, DT_VERDEFNUM = 0x6FFFFFF0, 0x6FFFFFFC, 0x6FFFFFFD


DT_VERNEED, DT_VERNEEDNUM, DT_FLAGS_1 = 0x6FFFFFFE, 0x6FFFFFFF, 0x6FFFFFFB
DT_AUXILIARY, DT_FILTER = 0x7FFFFFFD, 0x7FFFFFFF          # filtees: optional, and required


DF_1_NODEFLIB, DF_1_NOOPEN, DF_1_PIE = 0x800, 0x40, 0x08000000


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
    __slots__ = ("file", "version", "weak", "record_version", "hash")

    def __init__(self, file: str, version: str, weak: bool, record_version: int = 1, hash: int | None = None):
        self.file = file                # the SONAME the versions are required from
        self.version = version
        self.weak = weak
        self.record_version = record_version    # vn_version of its Verneed entry (1 is the only one known)
        self.hash = hash                # vna_hash as the file has it (ld.so compares it, not a hash it computes)


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


def struct_format(obj, spec: str) -> str:
    """A struct format for the object's byte order."""
    return ("<" if obj.little_endian else ">") + spec


class Versions(Record):
    """An object's version tables (VERDEF and VERNEED), read on first use."""
    __slots__ = ("names", "files", "defined", "needed", "records", "defined_index")

    def __init__(self, names: dict[int, str], files: dict[int, str], defined: list[str],
                 needed: list[VersionNeed], records: tuple[tuple[str | None, int, int], ...] = ()):
        self.names = names              # version index -> name, from both tables
        self.files = files              # version index -> the SONAME a VERNEED entry names
        self.defined = defined          # names VERDEF defines, the base one left out
        self.needed = needed
        self.records = records          # VERDEF in order: (name, vd_version, vd_hash), as match_symbol() walks it
        wanted = set(defined)
        self.defined_index = {name: ndx for ndx, name in names.items() if name in wanted}


NO_VERSIONS = Versions({}, {}, [], [])



_NATIVE = sys.byteorder == "little"


def column(obj, raw: bytes, code: str, first: int, stride: int):
    """Every `stride`-th item of type `code` in raw, from item `first`: an indexable sequence."""
    size = struct.calcsize(code)
    usable = len(raw) - len(raw) % (size * stride) if stride > 1 else len(raw) - len(raw) % size
    if obj.little_endian == _NATIVE:
        return memoryview(raw[:usable]).cast(code)[first::stride]
    e = "<" if obj.little_endian else ">"
    return struct.unpack(f"{e}{usable // size}{code}", raw[:usable])[first::stride]
