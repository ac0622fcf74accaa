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

import errno as errnos
import os
import struct
from collections import namedtuple

from .. import filestate, interrupts, persist
from ..elf import (EM_AARCH64, EM_X86_64, SHN_ABS, SHN_UNDEF, STB_GLOBAL, STB_GNU_UNIQUE, STB_WEAK,
                  STT_COMMON, STT_FUNC, STT_GNU_IFUNC, STT_NOTYPE, STT_OBJECT, STT_TLS, STV_HIDDEN,
                  STV_INTERNAL, ElfError, ElfObject)
from ..elf import dynsym
from ..elf.hashing import bloom_admits, gnu_hash_of
from .hwcaps import detect_host_caps
from .linkmap import Found, LinkMap, LoadTree
from .mapping import relro_failure
from .problems import BindingProblem, BindResult, Problem, l_name
from .relocations import relocation_facts, relocation_infos
from .versions import version_problems
from ..server import Server

ALLOWED_TYPES = {STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_COMMON, STT_TLS, STT_GNU_IFUNC}
# Relocation types looked up with ELF_RTYPE_CLASS_PLT (undefined entries with
# a value do not count as definitions for them) and COPY (skips the executable).
_PLT_CLASS = {EM_X86_64: {7, 16, 17, 18, 36}, EM_AARCH64: {1026, 1028, 1029, 1030, 1031}}
_COPY = {EM_X86_64: 5, EM_AARCH64: 1024}


def bind(tree: LoadTree, server: Server) -> BindResult:
    """Every version and symbol problem of the objects the tree maps anew."""
    result = BindResult()
    if tree.error is not None or not tree.maps:
        return result                       # mapping failed: nothing gets bound
    new = tree.maps[tree.first_new:]        # breadth-first, the search list order
    scope = global_scope([m for m in tree.global_maps if m.obj is not None])
    rules = server.rules
    for m in new:
        result.problems.extend(version_problems(m, tree.maps, rules))
    # dl-open.c, then: the x86 ISA level of each new object (glibc 2.33+), before any relocation.
    isa = detect_host_caps().isa_1
    for m in new if rules.isa_level_check else ():
        needed = m.obj.x86_isa_needed if m.obj is not None and m.obj.machine == EM_X86_64 else 0
        if needed & isa != needed:
            result.problems.append(BindingProblem(Problem.ISA_LEVEL, None, None, m.name, None,
                                                  f"{l_name(m)}: CPU ISA level is lower than required"))
    local_objects = Objects(new)
    new_ids = {id(m) for m in new}
    tls = tree.static_tls.replace() if tree.static_tls is not None else None    # this dlopen's own copy
    for m in _relocation_order(tree, new):
        result.problems.extend(_relative_prefix_problems(m, rules))
        result.problems.extend(_undefined_in_dlopen(m, tree, new_ids, scope, local_objects, server.machine, rules))
        result.problems.extend(_relocation_problems(m, tls))
        result.problems.extend(_relro_problems(m))
    if result.problems:
        result.error = result.problems[0].dlerror
        result.errno = result.problems[0].errno
    return result



def _relative_prefix_problems(m: LinkMap, rules) -> list[BindingProblem]:
    """The DT_RELACOUNT prefix is applied first, and its types asserted (ld.so aborts)."""
    if m.obj is None or m.obj.machine != EM_X86_64:
        return []
    kind = relocation_facts(m.obj).bad_relative
    if kind is None:
        return []
    return [BindingProblem(Problem.ASSERTION, None, None, m.name, None,
                           rules.assertion("RELATIVE"),
                           f"{l_name(m)} has a relocation of type {kind:#x} among the DT_RELACOUNT "
                           "relocations it says are relative")]


def _relocation_problems(m: LinkMap, tls) -> list[BindingProblem]:
    """What _dl_relocate_object() refuses besides symbols: a relocation type
    dl-machine.h does not know, and a TPOFF64 relocation whose TLS block no
    longer fits in static TLS (pgdl.glibc.tls)."""
    if m.obj is None:
        return []
    facts = relocation_facts(m.obj)
    out = []
    if facts.first_bad_type is not None:
        kind = facts.first_bad_type
        shown = f"{kind:02x}" if kind <= 0xFF else f"{kind:08x}"
        out.append(BindingProblem(Problem.RELOCATION, None, None, m.name, None,
                                  f"{l_name(m)}: unexpected reloc type 0x{shown}"))
    if facts.static_tls and tls is not None and not tls.allocate(m.obj.tls):
        out.append(BindingProblem(Problem.STATIC_TLS, None, None, m.name, None,
                                  f"{l_name(m)}: cannot allocate memory in static TLS block"))
    return out


def _relro_problems(m: LinkMap) -> list[BindingProblem]:
    """The last step of relocating an object: its PT_GNU_RELRO made read-only."""
    failure = relro_failure(m.obj) if m.obj is not None else None
    if failure is None:
        return []
    certain, why = failure
    return [BindingProblem(Problem.PROTECTION, None, None, m.name, None,
                           f"{l_name(m)}: cannot apply additional memory protection after relocation: "
                           f"{os.strerror(errnos.ENOMEM)}", why, errnos.ENOMEM, certain)]


# -- relocation order (dl-open.c, dl-sort-maps.c) ---------------------------

def _relocation_order(tree: LoadTree, new: list[LinkMap]) -> list[LinkMap]:
    """dl_open_worker relocates l_initfini from the end: DFS post-order.

    _dl_sort_maps_dfs starts from the last object of the breadth-first list
    and follows each object's DT_NEEDED order; the dlopen'ed module has no
    l_initfini yet during the sort, so it has no edges of its own."""
    module = new[0] if new and tree.deps and tree.deps[0].status is Found.OK else None
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

# What a relocation asks for: a name, maybe a version (None), and how it is
# looked up: plt (ELF_RTYPE_CLASS_PLT: undefined entries with a value do not
# count) and copy (ELF_RTYPE_CLASS_COPY: the executable is skipped).
# A namedtuple: hashed and compared in C, as the key of remembered answers.
Ref = namedtuple("Ref", "name version plt copy")


class Objects:
    """Objects searched in turn for a definition, as do_lookup_x() searches them:
    each object's Bloom filter turns most names away before its hash table is
    read, and the name's hash is computed once for all of them.

    Which object defines a name never changes whether one does, so the search
    may start anywhere: with the object a versioned reference names (its
    VERNEED file), then with the objects that have defined the most."""

    def __init__(self, maps: list[LinkMap]):
        self.maps = maps
        self._filters: list[tuple[LinkMap, tuple | None]] = []
        self._by_name: dict[str, tuple[LinkMap, tuple | None]] = {}
        for m in maps:
            try:
                entry = (m, m.obj.bloom())
            except (ElfError, OSError, struct.error, ValueError):
                continue                         # unreadable: it defines nothing here
            self._filters.append(entry)
            for name in m.names:
                self._by_name.setdefault(name, entry)

    def holds(self, soname: str | None) -> bool:
        return soname in self._by_name

    def named(self, soname: str | None) -> LinkMap | None:
        """The object a name (a VERNEED file, say) refers to, if it is one of these."""
        entry = self._by_name.get(soname) if soname else None
        return entry[0] if entry is not None else None

    def define(self, ref: Ref, h: int, soname: str | None = None) -> bool:
        """Whether one of the objects satisfies `ref`; h = gnu_hash(ref.name),
        soname: the object to try first."""
        first = self._by_name.get(soname) if soname else None
        if first is not None and _may_define(first, ref, h):
            return True
        for k, entry in enumerate(self._filters):
            if entry is not first and _may_define(entry, ref, h):
                if k:
                    self._filters.insert(0, self._filters.pop(k))
                return True
        return False


def _may_define(entry: tuple[LinkMap, tuple | None], ref: Ref, h: int) -> bool:
    m, bloom = entry
    if ref.copy and m.is_main:
        return False
    if bloom is not None and not bloom_admits(bloom, h):
        return False
    return _defines(m, ref, h)


class GlobalScope(Objects):
    """The process's global scope: searched for every module checked, so each
    reference's answer is remembered.  Built once per set of objects."""

    def __init__(self, maps: list[LinkMap]):
        super().__init__(maps)
        self.answers: dict[Ref, bool] = {}

    def identity(self) -> tuple[bytes, list]:
        """The digest of _identities() of the scope's objects, and their states; once a call."""
        memo = filestate.this_call()
        found = memo.get(("scope identity", id(self)))
        if found is None:
            objects = _identities(self.maps)
            found = memo[("scope identity", id(self))] = (persist.digest_of(objects), [o[1] for o in objects],
                                                          self)   # the id stays taken
        return found[0], found[1]

    def define(self, ref: Ref, h: int, soname: str | None = None) -> bool:
        answer = self.answers.get(ref)
        if answer is None:
            answer = self.answers[ref] = super().define(ref, h, soname)
        return answer


_SCOPES: dict[tuple, GlobalScope] = {}


def global_scope(maps: list[LinkMap]) -> GlobalScope:
    """The GlobalScope of these objects, reused while they are the same files."""
    # The cached scope keeps its objects alive, so their ids cannot be reused meanwhile.
    key = tuple(id(m.obj) for m in maps)
    scope = _SCOPES.get(key)
    if scope is None:
        _SCOPES.clear()                          # one process has one global scope at a time
        before = filestate.failed_reads
        scope = GlobalScope(maps)
        if filestate.failed_reads == before:     # an object left out for a failed read: not kept
            _SCOPES[key] = scope
    return scope


def _undefined_in_dlopen(m: LinkMap, tree: LoadTree, new_ids: set[int], scope: GlobalScope, local: Objects,
                         machine: int, rules) -> list[BindingProblem]:
    """_undefined_problems() of m in this dlopen, by way of m's own closure.

    Whether some object defines a reference only grows with the objects
    searched, and m's closure (m and what it needs, as this dlopen maps them)
    is part of the dlopen's local scope.  So if nothing is missing with the
    global scope and the closure alone, nothing is missing in the dlopen; that
    answer is kept for the call, for the other modules whose dlopen maps the
    same closure (a GDAL shared by a dozen modules is checked once).  Else the
    dlopen's whole scope decides."""
    own = _closure(tree, m, new_ids)
    key = ("undefined", m.name, id(m.obj), tuple(id(x.obj) for x in own), id(scope), machine, rules)
    memo = filestate.this_call()
    hit = memo.get(key)
    if hit is None:
        missing = _missing_with_closure(m, own, scope, machine, rules)
        hit = memo[key] = (missing, m.obj, [x.obj for x in own], scope)   # the ids stay taken
    else:
        for x in own:                    # what the answer rests on, for the remembered answers of this call
            filestate.state(x.obj.path)
    return _undefined_problems(m, scope, local, machine, rules) if hit[0] else []


def _missing_with_closure(m: LinkMap, own: list[LinkMap], scope: GlobalScope, machine: int, rules) -> bool:
    """Whether anything is missing for m with the global scope and its own closure.

    Kept across backends (pgdl.persist) under what the answer is a function
    of: each object's file and its state, whether it is the executable and
    the names it was loaded by (a Verneed file is found by them), in search
    order, and the loader's rules."""
    def work() -> bool:
        return bool(_undefined_problems(m, scope, Objects(own), machine, rules))
    if any(x.obj is None for x in own):
        return work()
    objects = _identities(own)
    scope_digest, scope_states = scope.identity()
    key = (m.name, objects, scope_digest, machine, rules.version, tuple(sorted(rules.backports)))
    return _UNDEFINED.answer(key, [o[1] for o in objects] + scope_states, work)


_UNDEFINED = persist.Kind("undefined")


def _identities(maps: list[LinkMap]) -> tuple:
    """What binding against these objects is a function of, object by object."""
    return tuple((x.obj.path, filestate.state(x.obj.path), x.is_main, tuple(sorted(x.names))) for x in maps)


def _closure(tree: LoadTree, m: LinkMap, new_ids: set[int]) -> list[LinkMap]:
    """m and the new objects it needs, directly or not, breadth first."""
    out, seen = [m], {id(m)}
    for current in out:
        for child in tree.links.get(id(current), ()):
            if id(child) in new_ids and id(child) not in seen:
                seen.add(id(child))
                out.append(child)
    return out


def _undefined_problems(m: LinkMap, scope: GlobalScope, local: Objects, machine: int,
                        rules) -> list[BindingProblem]:
    obj = m.obj
    try:
        with obj.reading():
            table = dynsym.table(obj)
            refs = lookups(obj, table)
    except (ElfError, OSError, struct.error, ValueError) as exc:
        return [BindingProblem(Problem.UNDEFINED, None, None, m.name, None,
                               f"{m.name}: pgdl cannot read its symbols or relocations: {exc}")]
    out = []
    plt_class = _PLT_CLASS.get(machine, set())
    copy_type = _COPY.get(machine)
    indexes = [symidx for symidx, _rtype in refs]
    names = table.names_of(indexes)
    versions, version_files = table.versions_of(indexes)
    answers = scope.answers
    check_match = rules.assertion("check_match") if rules.check_match_asserts else None
    st_info, st_other = table.st_info, table.st_other
    for k, ((symidx, rtype), name, version, version_file) in enumerate(zip(refs, names, versions,
                                                                           version_files)):
        if not k & 0xFFF:
            interrupts.check()
        # glibc's l_lookup_cache: the first use decides, roughly
        info = st_info[symidx]
        bind, visibility = info >> 4, st_other[symidx] & 0x3
        if bind not in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE) or visibility in (STV_HIDDEN, STV_INTERNAL):
            continue                             # RESOLVE_MAP: bound to the object itself
        if bind == STB_WEAK:
            continue                             # found or not, a weak reference is no problem
        if name is None:
            out.append(BindingProblem(Problem.UNDEFINED, None, None, m.name, None,
                                      f"{m.name}: pgdl cannot read the name of symbol {symidx}"))
            continue
        plt = rtype in plt_class
        if version is not None and check_match and _unversioned_provider(version_file, scope, local, name):
            out.append(BindingProblem(Problem.ASSERTION, name, version, m.name, version_file, check_match))
            continue
        known = answers.get((name, version, plt, rtype == copy_type))   # equal to the Ref
        if known:
            continue
        ref = Ref(name, version, plt, rtype == copy_type)
        h = gnu_hash_of(name)
        if known is None and scope.holds(version_file):
            # A versioned reference names its provider: already in the process.
            if scope.define(ref, h, version_file) or local.define(ref, h):
                continue
        elif local.define(ref, h, version_file) or (known is None and scope.define(ref, h)):
            continue                             # the few objects of this dlopen first
        if version and version_file and not rules.versioned_lookup_goes_on:
            text = (f"{m.name}: symbol {name} version {version} not defined in file {version_file} "
                    "with link time reference")
        else:
            text = f"{m.name}: undefined symbol: {name}" + (f", version {version}" if version else "")
        out.append(BindingProblem(Problem.UNDEFINED, name, version, m.name, version_file, text))
    return out


def _unversioned_provider(version_file: str | None, scope: "GlobalScope", local: Objects, name: str) -> bool:
    """A versioned reference found in the very object its Verneed names, which has
    no version table: check_match() asserts that cannot happen, and ld.so aborts."""
    provider = scope.named(version_file) or local.named(version_file)
    if provider is None:
        return False
    try:
        table = dynsym.table(provider.obj)
        if table.versym is not None:
            return False
        return any(_usable(table.st_shndx[i], table.st_info[i] & 0xF, table.st_value[i])
                   and table.st_info[i] >> 4 in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE)
                   for i in table.find(name, gnu_hash_of(name)))
    except (ElfError, OSError, struct.error, ValueError):
        return False


def _defines(m: LinkMap, ref: Ref, h: int) -> bool:
    """do_lookup_x() for one object: does it satisfy this reference?  h = gnu_hash(ref.name)."""
    obj = m.obj
    try:
        table = dynsym.table(obj)
        candidates = table.find(ref.name, h)
    except (ElfError, OSError, struct.error, ValueError):
        return False
    if not candidates:
        return False
    has_versym = table.versym is not None
    verdef_index = obj.versions().defined_index if has_versym and ref.version is None else {}
    found = None
    versioned_seen: list[int] = []
    for i in candidates:
        if _check_match(table, i, ref, has_versym, verdef_index, versioned_seen):
            found = i
            break
    if found is None and len(versioned_seen) == 1:
        found = versioned_seen[0]       # one non-default version: no ambiguity
    if found is None or table.st_other[found] & 0x3 in (STV_HIDDEN, STV_INTERNAL):
        return False                    # a hidden match ends the search in this object
    return table.st_info[found] >> 4 in (STB_GLOBAL, STB_WEAK, STB_GNU_UNIQUE)


def _check_match(table, i: int, ref: Ref, has_versym: bool,
                 verdef_index: dict[str, int], versioned_seen: list[int]) -> bool:
    shndx = table.st_shndx[i]
    if not _usable(shndx, table.st_info[i] & 0xF, table.st_value[i]):
        return False
    if ref.plt and shndx == SHN_UNDEF:
        return False
    if not has_versym:
        return True
    version, hidden, _file = table.version(i)
    if ref.version is not None:
        # The wanted version, or an unversioned (index 0/1) non-hidden definition.
        return version == ref.version or (version is None and not hidden)
    if version is not None and verdef_index.get(version, 0) >= 3:
        # Unversioned reference: index 2 (the oldest version) is accepted,
        # later ones only if they are the single non-hidden candidate.
        if not hidden:
            versioned_seen.append(i)
        return False
    return True


def _usable(shndx: int, kind: int, value: int) -> bool:
    """check_match()'s first tests: a value (or an absolute or TLS symbol), and a type it binds to."""
    return (value != 0 or shndx == SHN_ABS or kind == STT_TLS) and kind in ALLOWED_TYPES


def lookups(obj: ElfObject, table) -> list[tuple[int, int]]:
    """(symbol index, relocation type) of each symbol the object's relocations
    make ld.so look up, at its first use, in the order they are applied.

    Left out: symbols the object itself defines (it is in its own scope, the
    entry is the reference's own name and version, so do_lookup_x() accepts it
    whatever the binding and visibility) -- most of a big library's.  And
    elf/do-rel.h applies the first DT_RELACOUNT (DT_RELCOUNT) entries of the
    DT_RELA (DT_REL) range as RELATIVE without looking at their symbol: they
    are not read at all."""
    count, first_hashed = table.count, table.first_hashed
    st_shndx, st_info, st_value = table.st_shndx, table.st_info, table.st_value
    seen = bytearray(count)
    shift, mask = (32, 0xFFFFFFFF) if obj.elf_class == 64 else (8, 0xFF)
    out = []
    for infos in relocation_infos(obj):
        for info in infos:
            symidx = info >> shift
            if not symidx or symidx >= count or seen[symidx]:
                continue
            seen[symidx] = 1
            shndx = st_shndx[symidx]
            if shndx != SHN_UNDEF and symidx >= first_hashed \
                    and _usable(shndx, st_info[symidx] & 0xF, st_value[symidx]):
                continue
            out.append((symidx, info & mask))
    return out


