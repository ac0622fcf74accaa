"""Version requirements, as glibc's elf/dl-version.c checks them when a
dlopen() maps objects: each VERNEED entry against its provider's VERDEF."""

from __future__ import annotations

import struct

from ..elf import DT_RELR, DT_VERDEF, DT_VERNEED, ElfError, ElfObject
from .linkmap import LinkMap
from .problems import BindingProblem, Problem, l_name
from .release import Rules


def version_problems(m: LinkMap, maps: list[LinkMap], rules: Rules) -> list[BindingProblem]:
    try:
        needs = m.obj.verneeds
    except (ElfError, OSError, struct.error, ValueError) as exc:
        return [BindingProblem(Problem.VERSION, None, None, m.name, None,
                               f"{m.name}: pgdl cannot read its version requirements: {exc}")]
    out = []
    for need in needs:
        if need.record_version != 1:
            # _dl_check_map_versions(): 1 is the only Verneed format; anything else ends the dlopen.
            out.append(BindingProblem(Problem.VERSION, None, need.version, m.name, need.file,
                                      f"{l_name(m)}: unsupported version {need.record_version} of Verneed record"))
            break
        provider = _find_needed(need.file, maps)
        if provider is None or provider.obj is None or provider.obj.dynamic_value(DT_VERDEF) is None:
            continue          # no VERDEF: accepted silently (only ldd's verbose mode warns)
        try:
            found, bad = _match_symbol(provider.obj, need)
        except (ElfError, OSError, struct.error, ValueError) as exc:
            out.append(BindingProblem(Problem.VERSION, None, None, m.name, need.file,
                                      f"{l_name(provider)}: pgdl cannot read its version definitions "
                                      f"(version `{need.version}' required by {m.name}): {exc}"))
            continue
        if bad is not None:
            out.append(BindingProblem(Problem.VERSION, None, need.version, m.name, need.file,
                                      f"{l_name(provider)}: unsupported version {bad} of Verdef record"))
            break
        if found or need.weak:
            continue
        text = f"{l_name(provider)}: version `{need.version}' not found (required by {m.name})"
        out.append(BindingProblem(Problem.VERSION, None, need.version, m.name, need.file, text))
    if not out and rules.relr and _relr_without_abi_note(m.obj, needs):
        out.append(BindingProblem(Problem.VERSION, None, RELR_VERSION, m.name, None,
                                  f"{l_name(m)}: DT_RELR without GLIBC_ABI_DT_RELR dependency"))
    return out


RELR_VERSION, RELR_VERSION_HASH = "GLIBC_ABI_DT_RELR", 0xfd0e42


def _relr_without_abi_note(obj: ElfObject, needs) -> bool:
    """glibc 2.36 dl-version.c, last check of _dl_check_map_versions(): an object
    with DT_RELR, DT_VERNEED and libc among its DT_NEEDED must require the
    version GLIBC_ABI_DT_RELR (ld -z pack-relative-relocs adds it); the
    requirement counts when its vna_hash and name both match."""
    if obj.dynamic_value(DT_RELR) is None or obj.dynamic_value(DT_VERNEED) is None:
        return False
    if not any(name.startswith("libc.so.") for name in obj.needed):
        return False
    return not any(n.version == RELR_VERSION and n.hash == RELR_VERSION_HASH for n in needs)


def _find_needed(file: str, maps: list[LinkMap]) -> LinkMap | None:
    """The object a VERNEED file names: matched as Loader.find_by_name() matches."""
    for m in maps:
        if (file == m.name and not m.is_main) or file in m.names:
            return m
    return None


def _match_symbol(obj: ElfObject, need) -> tuple[bool, int | None]:
    """dl-version.c match_symbol(): walk the provider's Verdef entries in order;
    one whose vd_version is not 1 (the only format) ends the dlopen, one whose
    vd_hash and name both equal the requirement's is the match (the base entry
    too). Returns (found, the unsupported vd_version met first)."""
    for name, record_version, vd_hash in obj.versions().records:
        if record_version != 1:
            return False, record_version
        if name == need.version and (need.hash is None or vd_hash == need.hash):
            return True, None
    return False, None
