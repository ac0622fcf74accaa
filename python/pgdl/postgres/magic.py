"""Read a module's PG_MODULE_MAGIC block from the file, and judge it as the server would.

PG_MODULE_MAGIC defines `Pg_magic_func()`, which returns the address of a
function-local static struct.  Without running it, the struct is found by
decoding the few instructions of that function (x86-64: `lea X(%rip),%rax`;
AArch64: `adrp x0` + `add x0`), or, in unstripped files, by the local symbol
`Pg_magic_data.N`.  The struct layout is (fmgr.h):

    PG 8.2-12: len, version, funcmaxargs, indexmaxkeys, namedatalen,
               float4byval, float8byval                          (7 ints)
    PG 13-14:  len, version, funcmaxargs, indexmaxkeys, namedatalen,
               float8byval                                       (6 ints)
    PG 15-17:  ... float8byval, char abi_extra[32]
    PG 18:     len, Pg_abi_values {version ... abi_extra[32]},
               const char *name, const char *version  (PG_MODULE_MAGIC_EXT)

All versions keep `len` at offset 0 and `version` at offset 4.
"""

from __future__ import annotations

import struct

from .. import filestate
from ..elf import ElfError, ElfObject, cached_elf, dynsym
from ..record import Value
from ..elf.code import returned_address
from ..errors import INTERNAL_ERROR, PgError
from ..server import ServerMagic

MAGIC_FUNCTION = "Pg_magic_func"
MAX_MAGIC_LEN = 256


class MagicBlock(Value):
    """A module's Pg_magic_data, decoded."""
    __slots__ = ("length", "version", "funcmaxargs", "indexmaxkeys", "namedatalen", "float4byval",
                 "float8byval", "abi_extra", "name", "module_version", "raw", "located_by")

    def __init__(self, length: int, version: int, funcmaxargs: int | None = None,
                 indexmaxkeys: int | None = None, namedatalen: int | None = None,
                 float4byval: bool | None = None, float8byval: bool | None = None,
                 abi_extra: str | None = None, name: str | None = None, module_version: str | None = None,
                 raw: bytes = b"", located_by: str = ""):
        self.length = length
        self.version = version          # PG_VERSION_NUM / 100 of the build
        self.funcmaxargs = funcmaxargs
        self.indexmaxkeys = indexmaxkeys
        self.namedatalen = namedatalen
        self.float4byval = float4byval  # layouts up to PG 12
        self.float8byval = float8byval
        self.abi_extra = abi_extra      # PG 15+
        self.name = name                # PG 18 PG_MODULE_MAGIC_EXT
        self.module_version = module_version
        self.raw = raw
        self.located_by = located_by

    @property
    def major_text(self) -> str:
        """As incompatible_module_error() prints a library version."""
        if self.version >= 1000:
            return str(self.version // 100)
        return f"{self.version // 100}.{self.version % 100}"


class MagicNotFound(Exception):
    """No Pg_magic_func: the module lacks PG_MODULE_MAGIC."""


def read_magic(obj: ElfObject) -> MagicBlock:
    """The magic block of `obj`; MagicNotFound if absent, ElfError if unreadable."""
    func = dynsym.definition(obj, MAGIC_FUNCTION)
    if func is None:
        raise MagicNotFound()
    address, how = _locate_struct(obj, func.value, func.size)
    head = obj.read_vaddr(address, 8)
    e = "<" if obj.little_endian else ">"
    length, version = struct.unpack(e + "ii", head)
    if not 8 <= length <= MAX_MAGIC_LEN:
        raise ElfError(f"magic block has an implausible length ({length})")
    raw = obj.read_vaddr(address, length)
    return _decode(obj, raw, address, how)


def _decode(obj: ElfObject, raw: bytes, address: int, how: str) -> MagicBlock:
    e = "<" if obj.little_endian else ">"
    length, version = struct.unpack_from(e + "ii", raw)
    ints = [struct.unpack_from(e + "i", raw, off)[0] for off in range(8, min(length, 28) - 3, 4)]
    block = dict(length=length, version=version, raw=raw, located_by=how)
    # The length tells the layout; a module from another version (whose
    # fields the server never compares) is still shown as it was built.
    if length == 28:
        names = ["funcmaxargs", "indexmaxkeys", "namedatalen", "float4byval", "float8byval"]
    else:
        names = ["funcmaxargs", "indexmaxkeys", "namedatalen", "float8byval"]
    for key, value in zip(names, ints):
        block[key] = bool(value) if key.endswith("byval") else value
    if length >= 56:
        block["abi_extra"] = raw[24:56].split(b"\0", 1)[0].decode("utf-8", "replace")
    word = 8 if obj.elf_class == 64 else 4
    if version // 100 >= 18 and length >= 56 + 2 * word:
        block["name"] = _pointed_string(obj, address + 56)
        block["module_version"] = _pointed_string(obj, address + 56 + word)
    return MagicBlock(**block)


def _pointed_string(obj: ElfObject, slot: int) -> str | None:
    """The C string a pointer field refers to, via its RELATIVE relocation."""
    target = obj.relative_relocation_at(slot)
    if target is None:
        word = 8 if obj.elf_class == 64 else 4
        raw = obj.read_vaddr(slot, word)
        target = int.from_bytes(raw, "little" if obj.little_endian else "big")
    if target == 0:
        return None
    data = obj.read_vaddr(target, 1)
    out = bytearray()
    while data != b"\0" and len(out) < 1024:
        out += data
        data = obj.read_vaddr(target + len(out), 1)
    return out.decode("utf-8", "replace")


def _locate_struct(obj: ElfObject, func_addr: int, func_size: int) -> tuple[int, str]:
    address = returned_address(obj, func_addr, func_size)
    if address is not None:
        return address, "decoded Pg_magic_func"
    local = obj.static_symbol("Pg_magic_data")
    if local is not None and local.defined:
        return local.value, "symbol " + local.name
    raise ElfError("cannot locate the magic block: Pg_magic_func has an unrecognised instruction pattern")


# -- comparison, as dfmgr.c does it ---------------------------------------

class MagicField(Value):
    """One field of the magic block next to the server's value."""
    __slots__ = ("field", "library_value", "server_value", "matches")

    def __init__(self, field: str, library_value: str | None, server_value: str | None, matches: bool | None):
        self.field = field
        self.library_value = library_value
        self.server_value = server_value
        self.matches = matches


def server_layout_length(major: int, elf_class: int = 64) -> int:
    """sizeof(Pg_magic_struct) for a server of this major version."""
    if major <= 12:
        return 28
    if major <= 14:
        return 24
    if major <= 17:
        return 56
    return 72 if elf_class == 64 else 64


def compare_fields(block: MagicBlock, server: ServerMagic, server_len: int) -> list[MagicField]:
    major = server.version // 100

    def row(name, lib, srv):
        if lib is None and srv is None:
            return None
        return MagicField(name, _text(lib), _text(srv), None if lib is None else lib == srv)

    rows = [
        row("struct length", block.length, server_len),
        row("major version", block.version // 100, server.version // 100),
        row("FUNC_MAX_ARGS", block.funcmaxargs, server.funcmaxargs),
        row("INDEX_MAX_KEYS", block.indexmaxkeys, server.indexmaxkeys),
        row("NAMEDATALEN", block.namedatalen, server.namedatalen),
    ]
    if major <= 12 or block.float4byval is not None:
        rows.append(row("FLOAT4PASSBYVAL", block.float4byval, server.float4byval if major <= 12 else None))
    rows.append(row("FLOAT8PASSBYVAL", block.float8byval, server.float8byval))
    if major >= 15 or block.abi_extra is not None:
        rows.append(row("ABI extra", block.abi_extra, server.abi_extra if major >= 15 else None))
    if block.version // 100 >= 18:
        rows.append(MagicField("module name", block.name, None, None))
        rows.append(MagicField("module version", block.module_version, None, None))
    return [r for r in rows if r is not None]


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def judge(block: MagicBlock, server: ServerMagic, server_raw: bytes, libname: str, major: int) -> PgError | None:
    """The error internal_load_library() raises for this block, or None if accepted.

    `server_raw` is the server's own magic block bytes (sizeof its struct).
    PG <= 17 compares len and memcmp() over the whole struct; PG 18 compares
    len and the Pg_abi_values part only (name/version are not compared).
    """
    if major >= 18:
        same = block.length == len(server_raw) and block.raw[4:56] == server_raw[4:56]
    else:
        same = block.length == len(server_raw) and block.raw[:len(server_raw)] == server_raw
    if same:
        return None
    return incompatible_module_error(_as_copied(block, len(server_raw), major), server, libname, major)


def _as_copied(block: MagicBlock, server_len: int, major: int) -> MagicBlock:
    """dfmgr.c copies the module's block into the server's own struct type
    (`Pg_magic_struct module_magic_data = *magic_data_ptr`) before it names what
    differs: the fields are read at the server's offsets, whatever the module's
    length says (bytes past the module's block are taken as zeros)."""
    raw = block.raw[:server_len].ljust(server_len, b"\0")
    ints = struct.unpack_from(f"<{min(server_len, 28) // 4}i", raw)
    names = ["length", "version", "funcmaxargs", "indexmaxkeys", "namedatalen"] + \
        (["float4byval", "float8byval"] if major <= 12 else ["float8byval"])
    fields = {name: (bool(v) if name.endswith("byval") else v) for name, v in zip(names, ints)}
    fields["length"] = block.length             # compared as it is, not as copied
    if major >= 15:
        fields["abi_extra"] = raw[24:56].split(b"\0", 1)[0].decode("utf-8", "replace")
    return block.replace(**fields)


def incompatible_module_error(block: MagicBlock, server: ServerMagic, libname: str, major: int) -> PgError:
    if block.version != server.version:
        return PgError(INTERNAL_ERROR, f'incompatible library "{libname}": version mismatch',
                       f"Server is version {server.version // 100}, library is version {block.major_text}.")
    if major >= 15 and (block.abi_extra or "") != server.abi_extra:
        return PgError(INTERNAL_ERROR, f'incompatible library "{libname}": ABI mismatch',
                       f'Server has ABI "{server.abi_extra}", library has "{block.abi_extra or ""}".')
    details = []
    if block.funcmaxargs != server.funcmaxargs:
        details.append(f"Server has FUNC_MAX_ARGS = {server.funcmaxargs}, library has {block.funcmaxargs}.")
    if block.indexmaxkeys != server.indexmaxkeys:
        details.append(f"Server has INDEX_MAX_KEYS = {server.indexmaxkeys}, library has {block.indexmaxkeys}.")
    if block.namedatalen != server.namedatalen:
        details.append(f"Server has NAMEDATALEN = {server.namedatalen}, library has {block.namedatalen}.")
    if major <= 12 and block.float4byval != server.float4byval:
        details.append(f"Server has FLOAT4PASSBYVAL = {_text(server.float4byval)}, "
                       f"library has {_text(block.float4byval)}.")
    if block.float8byval != server.float8byval:
        details.append(f"Server has FLOAT8PASSBYVAL = {_text(server.float8byval)}, "
                       f"library has {_text(block.float8byval)}.")
    if not details:
        details.append("Magic block has unexpected length or padding difference.")
    return PgError(INTERNAL_ERROR, f'incompatible library "{libname}": magic block mismatch', "\n".join(details))


def missing_magic_error(libname: str) -> PgError:
    return PgError(INTERNAL_ERROR, f'incompatible library "{libname}": missing magic block',
                   hint="Extension libraries are required to use the PG_MODULE_MAGIC macro.")


def server_block_bytes(server: ServerMagic, major: int, elf_class: int = 64) -> bytes:
    """The server's own magic block, as PG_MODULE_MAGIC_DATA lays it out."""
    length = server_layout_length(major, elf_class)
    ints = [length, server.version, server.funcmaxargs, server.indexmaxkeys, server.namedatalen]
    if major <= 12:
        ints.append(int(server.float4byval))
    ints.append(int(server.float8byval))
    raw = struct.pack(f"<{len(ints)}i", *ints)
    if major >= 15:
        raw += server.abi_extra.encode().ljust(32, b"\0")[:32]
    return raw.ljust(length, b"\0")


_ABI_EXTRA = filestate.FileCache(64)


def server_abi_extra(loaded, pkglibdir: str, version: int) -> str | None:
    """FMGR_ABI_EXTRA of a running server, which no setting shows; None if no
    loaded module tells (stock builds say "PostgreSQL").

    A module that the backend has already loaded from pkglibdir (PL/Python
    itself, at least) passed the server's magic check, so its abi_extra is the
    server's.  loaded: server.loaded."""
    for obj in loaded:
        if obj.path.startswith(pkglibdir.rstrip("/") + "/"):
            extra = _ABI_EXTRA.get(obj.path, lambda _state: _abi_extra_of(obj.path, version), version)
            if extra is not None:
                return extra
    return None


def _abi_extra_of(path: str, version: int) -> str | None:
    try:
        block = read_magic(cached_elf(path))
    except (ElfError, OSError, MagicNotFound):
        return None
    return block.abi_extra if block.version == version else None
