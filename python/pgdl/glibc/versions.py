"""Version requirements, as glibc's elf/dl-version.c checks them when a
dlopen() maps objects: each VERNEED entry against its provider's VERDEF."""

from __future__ import annotations

import struct

from ..elf import DT_VERDEF, ElfError, ElfObject
from .linkmap import LinkMap
from .problems import BindingProblem, Problem, l_name


def version_problems(m: LinkMap, maps: list[LinkMap]) -> list[BindingProblem]:
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
            defined = _defined_versions(provider.obj)
        except (ElfError, OSError, struct.error, ValueError) as exc:
            out.append(BindingProblem(Problem.VERSION, None, None, m.name, need.file,
                                      f"{l_name(provider)}: pgdl cannot read its version definitions "
                                      f"(version `{need.version}' required by {m.name}): {exc}"))
            continue
        bad = _unsupported_verdef(provider.obj, need.version)
        if bad is not None:
            out.append(BindingProblem(Problem.VERSION, None, need.version, m.name, need.file,
                                      f"{l_name(provider)}: unsupported version {bad} of Verdef record"))
            break
        if need.version in defined or need.weak:
            continue
        text = f"{l_name(provider)}: version `{need.version}' not found (required by {m.name})"
        out.append(BindingProblem(Problem.VERSION, None, need.version, m.name, need.file, text))
    return out


def _find_needed(file: str, maps: list[LinkMap]) -> LinkMap | None:
    """The object a VERNEED file names: matched as Loader.find_by_name() matches."""
    for m in maps:
        if (file == m.name and not m.is_main) or file in m.names:
            return m
    return None


def _unsupported_verdef(obj: ElfObject, version: str) -> int | None:
    """match_symbol() walks the provider's Verdef entries up to the one it wants,
    and stops at the first whose vd_version is not 1 (the only format)."""
    for name, record_version in obj.versions().records:
        if record_version != 1:
            return record_version
        if name == version:
            return None
    return None


def _defined_versions(obj: ElfObject) -> set[str]:
    """Names match_symbol() accepts: every VERDEF entry, the base one too."""
    names = set(obj.verdefs)
    base = obj.base_version()
    if base:
        names.add(base)
    return names
