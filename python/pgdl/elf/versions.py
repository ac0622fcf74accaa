"""The version tables: VERDEF and VERNEED chains (glibc dl-version.c reads the same)."""

from __future__ import annotations

import struct

from .format import (DT_VERDEF, DT_VERDEFNUM, DT_VERNEED, DT_VERNEEDNUM, MAX_VERSION_ENTRIES, VER_FLG_BASE,
                     VER_FLG_WEAK, ElfError, VersionNeed, Versions, struct_format)
from .strings import PagedStrings

def read_versions(obj, table: PagedStrings) -> Versions:
    """VERDEF and VERNEED chains of an ElfObject: version names by index."""
    index_names: dict[int, str] = {}
    index_files: dict[int, str] = {}
    verdefs: list[str] = []
    verneeds: list[VersionNeed] = []
    records: list[tuple[str | None, int, int]] = []
    verdef = obj.dynamic_value(DT_VERDEF)
    if verdef is not None:
        count = min(obj.dynamic_value(DT_VERDEFNUM) or 0, MAX_VERSION_ENTRIES)
        offset = obj.vaddr_to_offset(verdef)
        for _ in range(count):
            vd = obj.read_at(offset, 20)
            vd_version, vd_flags, vd_ndx, vd_cnt, vd_hash, vd_aux, vd_next = struct.unpack(struct_format(obj, "HHHHIII"), vd)
            name = None
            if vd_cnt:
                vda_name, _vda_next = struct.unpack(struct_format(obj, "II"), obj.read_at(offset + vd_aux, 8))
                name = table.string(vda_name)
                index_names[vd_ndx & 0x7FFF] = name
                if not vd_flags & VER_FLG_BASE:
                    verdefs.append(name)
            records.append((name, vd_version, vd_hash))
            if vd_next == 0:
                break
            offset += vd_next
    verneed = obj.dynamic_value(DT_VERNEED)
    if verneed is not None:
        count = min(obj.dynamic_value(DT_VERNEEDNUM) or 0, MAX_VERSION_ENTRIES)
        offset = obj.vaddr_to_offset(verneed)
        budget = MAX_VERSION_ENTRIES
        for _ in range(count):
            vn_version, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack(struct_format(obj, "HHIII"), obj.read_at(offset, 16))
            file_name = table.string(vn_file)
            aux = offset + vn_aux
            for _ in range(vn_cnt):
                budget -= 1
                if budget < 0:
                    raise ElfError("absurd number of version requirements")
                vna_hash, vna_flags, vna_other, vna_name, vna_next = struct.unpack(struct_format(obj, "IHHII"), obj.read_at(aux, 16))
                name = table.string(vna_name)
                index_names[vna_other & 0x7FFF] = name
                index_files[vna_other & 0x7FFF] = file_name
                verneeds.append(VersionNeed(file_name, name, bool(vna_flags & VER_FLG_WEAK), vn_version, vna_hash))
                if vna_next == 0:
                    break
                aux += vna_next
            if vn_next == 0:
                break
            offset += vn_next
    return Versions(index_names, index_files, verdefs, verneeds, tuple(records))
