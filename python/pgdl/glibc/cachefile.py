"""Reading /etc/ld.so.cache the way ld.so reads it (nothing is loaded).

Formats (glibc sysdeps/generic/dl-cache.h, elf/dl-cache.c, elf/cache.c):

* new: a 48-byte ``struct cache_file_new`` ("glibc-ld.so.cache" "1.1",
  nlibs, len_strings, flags, extension_offset) followed by nlibs 24-byte
  ``struct file_entry_new`` (flags, key, value, osversion, hwcap).  String
  indices are offsets from the start of that header.  This is all ldconfig
  writes since glibc 2.32.
* old: "ld.so-1.7.0", nlibs, then nlibs 12-byte ``struct file_entry``
  (flags, key, value); strings are offsets from the end of that array.
* combined: the old format, with the new header (and its entries) placed at
  ALIGN8(16 + 12*nlibs), i.e. at "string 0" of the old table.  ld.so then
  uses only the new part; if the new magic is absent it uses the old part.

The optional extension directory (new format, ``extension_offset`` from the
start of the file) carries tag 0: the generating glibc version, and tag 1:
an array of uint32 string indices (from the start of the file) naming the
glibc-hwcaps subdirectories; an entry whose hwcap field is
DL_CACHE_HWCAP_EXTENSION (bit 62, ignoring the low 32 bits and the ISA level
bits 32..41) has its low 32 bits index that array.

``parse`` raises LdCacheError exactly where ld.so would ignore the whole file
(and also where ld.so would read outside the file, which real ldconfig output
never does).  A malformed extension directory does not make ld.so ignore the
cache: it only disables the glibc-hwcaps entries, and that is what ``parse``
does too (see ``LdCache.extension_error``).
"""

from __future__ import annotations

import os
import stat
import struct

from .. import rootfs
from .ldcache import LdCache, RawEntry

CACHEMAGIC = b"ld.so-1.7.0"


CACHEMAGIC_VERSION_NEW = b"glibc-ld.so.cache1.1"


OLD_HEADER_SIZE = 16          # sizeof (struct cache_file)


OLD_ENTRY_SIZE = 12           # sizeof (struct file_entry)


NEW_HEADER_SIZE = 48          # sizeof (struct cache_file_new)


NEW_ENTRY_SIZE = 24           # sizeof (struct file_entry_new)


CACHE_EXTENSION_MAGIC = (-358342284) & 0xFFFFFFFF


EXT_TAG_GENERATOR = 0


EXT_TAG_GLIBC_HWCAPS = 1


class LdCacheError(ValueError):
    """The cache file is unusable (ld.so would ignore it), or unreadable."""


def _endian_ok(flags: int) -> bool:
    # cache_file_new_matches_endian: 0 (unset) or little endian (2).
    return flags == 0 or (flags & 3) == 2


def parse(data: bytes) -> LdCache:
    """Parse the bytes of an ld.so.cache file (see the module docstring)."""
    data = bytes(data)
    size = len(data)
    if size > NEW_HEADER_SIZE and data.startswith(CACHEMAGIC_VERSION_NEW):
        nlibs = struct.unpack_from("<I", data, 20)[0]
        if (size - NEW_HEADER_SIZE) // NEW_ENTRY_SIZE < nlibs:
            raise LdCacheError(f"ld.so.cache: {nlibs} entries do not fit in {size} bytes")
        return _parse_new(data, 0, nlibs, "new")
    if size > OLD_HEADER_SIZE and data.startswith(CACHEMAGIC):
        nlibs = struct.unpack_from("<I", data, 12)[0]
        if (size - OLD_HEADER_SIZE) // OLD_ENTRY_SIZE < nlibs:
            raise LdCacheError(f"ld.so.cache: {nlibs} old-format entries do not fit in {size} bytes")
        offset = (OLD_HEADER_SIZE + nlibs * OLD_ENTRY_SIZE + 7) & ~7
        if size >= offset + NEW_HEADER_SIZE and data.startswith(CACHEMAGIC_VERSION_NEW, offset):
            nnew = struct.unpack_from("<I", data, offset + 20)[0]
            # ld.so does not check this count; reading past the file is not an option here.
            if (size - offset - NEW_HEADER_SIZE) // NEW_ENTRY_SIZE < nnew:
                raise LdCacheError(f"ld.so.cache: {nnew} entries do not fit after offset {offset}")
            return _parse_new(data, offset, nnew, "old+new")
        strbase = OLD_HEADER_SIZE + nlibs * OLD_ENTRY_SIZE
        raws = []
        for i in range(nlibs):
            flags, key, value = struct.unpack_from("<iII", data, OLD_HEADER_SIZE + i * OLD_ENTRY_SIZE)
            raws.append(RawEntry(flags, key, value, 0))
        return LdCache("old", data, strbase, size - strbase, raws, OLD_ENTRY_SIZE)
    if size <= NEW_HEADER_SIZE and data.startswith(CACHEMAGIC_VERSION_NEW):
        raise LdCacheError(f"ld.so.cache: file too short ({size} bytes) for its header")
    raise LdCacheError("ld.so.cache: no valid cache magic (neither 'glibc-ld.so.cache1.1' nor 'ld.so-1.7.0')")


def _parse_new(data: bytes, base: int, nlibs: int, fmt: str) -> LdCache:
    size = len(data)
    hflags = data[base + 28]
    if not _endian_ok(hflags):
        raise LdCacheError(f"ld.so.cache: wrong or invalid endianness (flags {hflags:#x})")
    ext_offset = struct.unpack_from("<I", data, base + 32)[0]
    raws = []
    for i in range(nlibs):
        flags, key, value, _osv, hwcap = struct.unpack_from(
            "<iIIIQ", data, base + NEW_HEADER_SIZE + i * NEW_ENTRY_SIZE)
        raws.append(RawEntry(flags, key, value, hwcap))
    sections, err = _load_extensions(data, ext_offset)
    generator, hwcaps_index = None, []
    if err is None:
        gen = sections.get(EXT_TAG_GENERATOR)
        if gen is not None:
            generator = data[gen[0]:gen[0] + gen[1]].decode("utf-8", "replace")
        hw = sections.get(EXT_TAG_GLIBC_HWCAPS)
        if hw is not None:
            off, length = hw
            hwcaps_index = list(struct.unpack_from(f"<{length // 4}I", data, off))
    # ld.so passes the whole file size as the (inexact) string table size.
    return LdCache(fmt, data, base, size, raws, NEW_ENTRY_SIZE, generator, hwcaps_index, err)


def _load_extensions(data: bytes, ext_offset: int) -> tuple[dict[int, tuple[int, int]], str | None]:
    """cache_extension_load + cache_extension_verify; offsets from file start."""
    size = len(data)
    if ext_offset == 0:
        return {}, None
    if ext_offset % 4:
        return {}, "extension offset is misaligned"
    if ext_offset + 8 > size:
        return {}, "extension directory extends beyond the end of the file"
    magic, count = struct.unpack_from("<II", data, ext_offset)
    if magic != CACHE_EXTENSION_MAGIC:
        return {}, "bad extension magic"
    if ext_offset + 8 + count * 16 > size:
        return {}, "extension array extends beyond the end of the file"
    sections: dict[int, tuple[int, int]] = {}
    for i in range(count):
        tag, _flags, off, length = struct.unpack_from("<IIII", data, ext_offset + 8 + 16 * i)
        if off + length > 0xFFFFFFFF or off + length > size:
            # glibc's __builtin_add_overflow is on a size_t, so only size matters on 64-bit.
            return {}, f"extension section {i} extends beyond the end of the file"
        if tag >= 2:
            continue
        sections[tag] = (off, length)      # a later section with the same tag wins
    hw = sections.get(EXT_TAG_GLIBC_HWCAPS)
    if hw is not None and (hw[1] == 0 or hw[0] % 4 or hw[1] % 4):
        del sections[EXT_TAG_GLIBC_HWCAPS]
    return sections, None


def load(path: str = "/etc/ld.so.cache", max_bytes: int = 64 * 1024 * 1024) -> LdCache:
    """Read and parse a cache file; only regular files of at most max_bytes."""
    try:
        st = os.stat(rootfs.host(path))
    except OSError as exc:
        raise LdCacheError(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise LdCacheError(f"{path}: not a regular file")
    if st.st_size > max_bytes:
        raise LdCacheError(f"{path}: {st.st_size} bytes is more than the limit of {max_bytes}")
    try:
        fd = os.open(rootfs.host(path), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise LdCacheError(f"{path}: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):   # swapped since the stat
            raise LdCacheError(f"{path}: not a regular file")
        chunks, total = [], 0
        while total < max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total >= max_bytes and os.fstat(fd).st_size > max_bytes:   # grew meanwhile
            raise LdCacheError(f"{path}: more than the limit of {max_bytes} bytes")
    except OSError as exc:
        raise LdCacheError(f"{path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return parse(b"".join(chunks))
