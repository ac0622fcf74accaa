"""Symbol versions and bindings, checked as glibc 2.36 does for dlopen(RTLD_NOW).

After mapping (pgdl.ldso), dl-open.c checks, for every newly mapped object
in breadth-first order, each DT_VERNEED version against the providing
object's DT_VERDEF (dl-version.c); the first missing non-weak version fails
with "<provider>: version `V' not found (required by <object>)".  Then it
relocates the new objects, dependencies first (the _dl_sort_maps DFS order,
reversed), each relocation table in order; the first strong reference no
object in scope defines fails with "<object>: undefined symbol: NAME"
(", version V" appended for a versioned reference).  dl-lookup.c decides
what counts as a definition.

Scope: the global scope (the executable, everything it loaded at startup and
everything dlopen'ed with RTLD_GLOBAL -- PostgreSQL loads modules so), then
the module's own breadth-first list.  Where a definition is found does not
change whether one is found, so the union is searched.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from .elf import (EM_AARCH64, EM_X86_64, SHN_ABS, SHN_UNDEF, STB_GLOBAL, STB_GNU_UNIQUE, STB_WEAK,
                  STT_COMMON, STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE, STT_OBJECT, STT_TLS, STV_HIDDEN,
                  STV_INTERNAL, DT_REL, DT_RELA, DT_RELASZ, DT_RELSZ, DT_VERDEF, DT_VERSYM, ElfError,
                  ElfObject, Symbol)
from .ldso import LinkMap, LoadTree
from .server import Server

DT_PLTRELSZ, DT_PLTREL, DT_JMPREL = 2, 20, 23
MAX_RELOCS = 2_000_000
ALLOWED_TYPES = {STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_COMMON, STT_TLS, STT_GNU_IFUNC}
# Relocation types looked up with ELF_RTYPE_CLASS_PLT (undefined entries with
# a value do not count as definitions for them) and COPY (skips the executable).
_PLT_CLASS = {EM_X86_64: {7, 16, 17, 18, 36}, EM_AARCH64: {1026, 1028, 1029, 1030, 1031}}
_COPY = {EM_X86_64: 5, EM_AARCH64: 1024}
# Python extension modules are dlopen'ed RTLD_LOCAL: not in the global scope.
_RTLD_LOCAL_HINT = re.compile(r"(/lib-dynload/|/site-packages/|/dist-packages/|\.cpython-[^/]*\.so$|\.abi3\.so$)")


@dataclass
class BindingProblem:
    kind: str                 # "version" or "undefined"
    symbol: str | None        # the undefined symbol (None for a version problem)
    version: str | None       # the version wanted, if any
    required_by: str          # path of the object that needs it
    wanted_from: str | None   # the SONAME a version is required from (VERNEED file)
    dlerror: str              # glibc's text for this problem


@dataclass
class BindResult:
    problems: list[BindingProblem] = field(default_factory=list)
    error: str | None = None  # the dlerror() glibc reports: the first problem in its order
    errno: int = 0            # errcode 0: dlopen leaves errno unspecified


def bind(tree: LoadTree, server: Server) -> BindResult:
    """Every version and symbol problem of the objects the tree maps anew."""
    result = BindResult()
    if tree.error is not None or not tree.maps:
        return result                       # mapping failed: nothing gets bound
    new = _new_maps(tree)
    scope = _scope(tree, new)
    for m in new:
        result.problems.extend(_version_problems(m, tree.maps, new))
    for m in _relocation_order(tree, new):
        result.problems.extend(_undefined_problems(m, scope, server.machine))
    if result.problems:
        result.error = result.problems[0].dlerror
    return result


def _new_maps(tree: LoadTree) -> list[LinkMap]:
    """Newly mapped objects in breadth-first (search list) order."""
    by_obj = {id(m.obj): m for m in tree.maps if m.obj is not None}
    out = []
    for dep in tree.deps:
        if dep.status == "ok" and dep.obj is not None and id(dep.obj) in by_obj:
            out.append(by_obj[id(dep.obj)])
    return out


def _scope(tree: LoadTree, new: list[LinkMap]) -> list[LinkMap]:
    global_scope = [m for m in tree.maps if m not in new and m.obj is not None
                    and (m.is_main or not _RTLD_LOCAL_HINT.search(m.name))]
    local = [m for m in new if m not in global_scope]
    return global_scope + local


# -- versions (dl-version.c) -----------------------------------------------

def _version_problems(m: LinkMap, maps: list[LinkMap], new: list[LinkMap]) -> list[BindingProblem]:
    out = []
    for need in m.obj.verneeds:
        provider = _find_needed(need.file, maps, new)
        if provider is None or provider.obj is None or provider.obj.dynamic_value(DT_VERDEF) is None:
            continue          # no VERDEF: accepted silently (only ldd's verbose mode warns)
        if need.version in _defined_versions(provider.obj) or need.weak:
            continue
        text = f"{_l_name(provider)}: version `{need.version}' not found (required by {m.name})"
        out.append(BindingProblem("version", None, need.version, m.name, need.file, text))
    return out


def _find_needed(file: str, maps: list[LinkMap], new: list[LinkMap]) -> LinkMap | None:
    for m in maps:
        if (file == m.name and not m.is_main) or file in m.names:
            return m
    return None


def _defined_versions(obj: ElfObject) -> set[str]:
    """Names match_symbol() accepts: every VERDEF entry, the base one too."""
    names = set(obj.verdefs)
    base = getattr(obj, "_version_names", {}).get(1)
    if base:
        names.add(base)
    return names


def _l_name(m: LinkMap) -> str:
    return m.name or (m.obj.path if m.obj else "")


# -- relocation order (dl-open.c, dl-sort-maps.c) ---------------------------

def _relocation_order(tree: LoadTree, new: list[LinkMap]) -> list[LinkMap]:
    """dl_open_worker relocates l_initfini from the end: DFS post-order.

    _dl_sort_maps_dfs starts from the last object of the breadth-first list
    and follows each object's DT_NEEDED order; the dlopen'ed module has no
    l_initfini yet during the sort, so it has no edges of its own."""
    module = new[0] if new and tree.deps and tree.deps[0].status == "ok" else None
    new_ids = {id(m) for m in new}
    visited: set[int] = set()
    order: list[LinkMap] = []
    for root in reversed(new):
        stack = [(root, iter(_children(tree, root, module, new_ids)))]
        if id(root) in visited:
            continue
        visited.add(id(root))
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                order.append(node)
            elif id(child) not in visited:
                visited.add(id(child))
                stack.append((child, iter(_children(tree, child, module, new_ids))))
    return order


def _children(tree: LoadTree, m: LinkMap, module: LinkMap | None, new_ids: set[int]) -> list[LinkMap]:
    if m is module:
        return []
    return [c for c in tree.links.get(id(m), []) if id(c) in new_ids]


# -- symbols (dl-reloc.c, dl-lookup.c) ---------------------------------------

def _undefined_problems(m: LinkMap, scope: list[LinkMap], machine: int) -> list[BindingProblem]:
    obj = m.obj
    try:
        symbols = obj.symbols()
        relocs = _relocations(obj)
    except (ElfError, struct.error, ValueError) as exc:
        return [BindingProblem("undefined", None, None, m.name, None,
                               f"{m.name}: pgdl cannot read its symbols or relocations: {exc}")]
    out = []
    seen: set[int] = set()                # glibc's l_lookup_cache, roughly
    plt_class = _PLT_CLASS.get(machine, set())
    for symidx, rtype in relocs:
        if symidx == 0 or symidx > len(symbols):
            continue
        ref = symbols[symidx - 1]
        if not _needs_lookup(ref):
            continue
        if symidx in seen:
            continue
        seen.add(symidx)
        plt = rtype in plt_class
        copy = rtype == _COPY.get(machine)
        if any(_defines(d, ref, plt) for d in scope if not (copy and d.is_main)):
            continue
        if ref.bind == STB_WEAK:
            continue                         # a weak reference may stay unresolved
        suffix = f", version {ref.version}" if ref.version else ""
        out.append(BindingProblem("undefined", ref.name, ref.version, m.name, ref.version_file,
                                  f"{m.name}: undefined symbol: {ref.name}{suffix}"))
    return out


def _needs_lookup(ref: Symbol) -> bool:
    """RESOLVE_MAP: local symbols and hidden/internal references bind to the object itself."""
    return ref.bind in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE) and ref.visibility not in (STV_HIDDEN, STV_INTERNAL)


def _defines(m: LinkMap, ref: Symbol, plt: bool) -> bool:
    """do_lookup_x() for one object: does it satisfy this reference?"""
    obj = m.obj
    try:
        candidates = obj.lookup(ref.name)
    except (ElfError, struct.error, ValueError):
        return False
    if not candidates:
        return False
    has_versym = obj.dynamic_value(DT_VERSYM) is not None
    verdef_index = _verdef_indexes(obj) if has_versym and ref.version is None else {}
    found = None
    versioned_seen: list[Symbol] = []
    for sym in candidates:
        if _check_match(sym, ref, plt, has_versym, verdef_index, versioned_seen):
            found = sym
            break
    if found is None and len(versioned_seen) == 1:
        found = versioned_seen[0]       # one non-default version: no ambiguity
    if found is None or found.visibility in (STV_HIDDEN, STV_INTERNAL):
        return False                    # a hidden match ends the search in this object
    return found.bind in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE)


def _check_match(sym: Symbol, ref: Symbol, plt: bool, has_versym: bool,
                 verdef_index: dict[str, int], versioned_seen: list[Symbol]) -> bool:
    if sym.value == 0 and sym.shndx != SHN_ABS and sym.type != STT_TLS:
        return False
    if plt and sym.shndx == SHN_UNDEF:
        return False
    if sym.type not in ALLOWED_TYPES:
        return False
    if not has_versym:
        return True
    if ref.version is not None:
        # The wanted version, or an unversioned (index 0/1) non-hidden definition.
        return sym.version == ref.version or (sym.version is None and not sym.hidden)
    if sym.version is not None and verdef_index.get(sym.version, 0) >= 3:
        # Unversioned reference: index 2 (the oldest version) is accepted,
        # later ones only if they are the single non-hidden candidate.
        if not sym.hidden:
            versioned_seen.append(sym)
        return False
    return True


def _verdef_indexes(obj: ElfObject) -> dict[str, int]:
    cached = getattr(obj, "_pgdl_verdef_index", None)
    if cached is None:
        names = getattr(obj, "_version_names", {})
        defined = set(obj.verdefs)
        cached = {name: ndx for ndx, name in names.items() if name in defined}
        obj._pgdl_verdef_index = cached    # type: ignore[attr-defined]
    return cached


def _relocations(obj: ElfObject) -> list[tuple[int, int]]:
    """(symbol index, type) of every relocation, in the order ld.so applies them."""
    is64 = obj.elf_class == 64
    e = "<" if obj.little_endian else ">"
    out: list[tuple[int, int]] = []
    jmprel = obj.dynamic_value(DT_JMPREL)
    pltsz = obj.dynamic_value(DT_PLTRELSZ) or 0
    pltrel = obj.dynamic_value(DT_PLTREL)
    for tag, size_tag, rela in ((DT_REL, DT_RELSZ, False), (DT_RELA, DT_RELASZ, True)):
        start = obj.dynamic_value(tag)
        size = obj.dynamic_value(size_tag) or 0
        plt_here = jmprel is not None and pltrel == tag
        if start is not None and plt_here and start + size == jmprel + pltsz and jmprel >= start:
            size -= pltsz                   # DT_RELASZ includes .rela.plt (elf/do-rel.h)
        ranges = [(start, size)] if start is not None else []
        if plt_here:
            ranges.append((jmprel, pltsz))
        for where, nbytes in ranges:
            out.extend(_read_relocs(obj, where, nbytes, rela, is64, e))
    return out


def _read_relocs(obj: ElfObject, where: int, nbytes: int, rela: bool, is64: bool, e: str):
    entsize = (24 if rela else 16) if is64 else (12 if rela else 8)
    count = min(nbytes // entsize, MAX_RELOCS)
    if count <= 0:
        return []
    raw = obj.read_vaddr(where, count * entsize)
    spec = e + ("QQ" if is64 else "II") + ("8x" if rela and is64 else "4x" if rela else "")
    if is64:
        return [(info >> 32, info & 0xFFFFFFFF) for _off, info in struct.iter_unpack(spec, raw)]
    return [(info >> 8, info & 0xFF) for _off, info in struct.iter_unpack(spec, raw)]
