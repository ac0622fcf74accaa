"""dlopen() stages beyond the search (issue #14), glibc 2.36: each case built
at test time, asked of pgdl for a new session, and compared with the real
LOAD in a fresh backend (verdict, SQLSTATE, message, detail, hint)."""

from __future__ import annotations

import subprocess

import pytest

from modules import GOOD_MODULE, GLIBC

MATH_MODULE = GOOD_MODULE + r"""
#include <math.h>
double pgdl_cos(double x);
double pgdl_cos(double x) { return cos(x); }
"""


def tls_module(size: int, model: str = "initial-exec") -> str:
    return GOOD_MODULE + f"""
__thread char pgdl_tls[{size}] __attribute__((tls_model("{model}")));
char *pgdl_tls_at(int i);
char *pgdl_tls_at(int i) {{ return &pgdl_tls[i]; }}
"""


def predicted(cluster, path) -> tuple:
    return cluster.query("SELECT * FROM pgdl.predict_load(%s, context => 'new session')", (str(path),))[0]


def real(cluster, path) -> tuple:
    error = cluster.error_of("LOAD %s", (str(path),))
    return (True, None, None, None, None) if error is None else \
        (False, error.sqlstate, error.message, error.detail, error.hint)


def assert_matches(cluster, path, loads: bool):
    actual = real(cluster, path)
    assert actual[0] is loads, actual
    assert predicted(cluster, path) == actual


def test_missing_filter_is_fatal(cluster, build):
    built = build("filter", MATH_MODULE, "-lm", "-Wl,-F,libpgdl_no_such_filtee.so.1")
    assert_matches(cluster, built, loads=False)


def test_missing_auxiliary_filter_is_skipped(cluster, build):
    built = build("auxiliary", MATH_MODULE, "-lm", "-Wl,-f,libpgdl_no_such_filtee.so.1")
    assert_matches(cluster, built, loads=True)
    rows = cluster.query("SELECT needed, status FROM pgdl.dependencies(%s)", (str(built),))
    assert ("libpgdl_no_such_filtee.so.1", "warning") in rows


def test_debug_only_file_has_no_dynamic_section(cluster, build, tmp_path):
    built = build("debugonly_src", MATH_MODULE, "-lm")
    debug = tmp_path / "debugonly.so"
    subprocess.run(["objcopy", "--only-keep-debug", str(built), str(debug)], check=True)
    assert_matches(cluster, debug, loads=False)
    assert "object file has no dynamic section" in predicted(cluster, debug)[2]


def patch_u16(path, section: str, at: int, value: int) -> None:
    """Overwrite the 16-bit field `at` bytes into `section`."""
    import struct
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        offset = ELFFile(f).get_section_by_name(section)["sh_offset"]
    data = bytearray(path.read_bytes())
    struct.pack_into("<H", data, offset + at, value)
    path.write_bytes(bytes(data))


def test_unsupported_verneed_record(cluster, build):
    built = build("verneed2", MATH_MODULE, "-lm")
    patch_u16(built, ".gnu.version_r", 0, 2)          # vn_version of the first entry
    assert_matches(cluster, built, loads=False)


def patch_vernaux(path, version: str, hash_xor: int, flags: int) -> None:
    """Change the vna_hash (xor) and vna_flags of the Vernaux naming `version`."""
    import struct
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        elf = ELFFile(f)
        section, strtab = elf.get_section_by_name(".gnu.version_r"), elf.get_section_by_name(".dynstr")
        start, names = section["sh_offset"], strtab.data()
    data = bytearray(path.read_bytes())
    need = start
    while True:
        _ver, count, _file, aux, next_need = struct.unpack_from("<HHIII", data, need)
        at = need + aux
        for _ in range(count):
            vna_hash, _flags, other, name, next_aux = struct.unpack_from("<IHHII", data, at)
            if names[name:names.index(b"\0", name)].decode() == version:
                struct.pack_into("<IHH", data, at, vna_hash ^ hash_xor, flags, other)
                path.write_bytes(bytes(data))
                return
            at += next_aux
        if not next_need:
            raise AssertionError(f"no requirement of {version}")
        need += next_need


# Relative relocations (packed into DT_RELR) and a versioned libc symbol: ld
# then requires GLIBC_ABI_DT_RELR from libc.so.6.
RELR_MODULE = GOOD_MODULE + r"""
#include <stdlib.h>
static const char *pgdl_names[] = {"a", "b", "c"};
const char *pgdl_name(int i);
const char *pgdl_name(int i) { return i < 0 ? getenv("PGDL") : pgdl_names[i]; }
"""


NO_RELR = pytest.mark.skipif(GLIBC < (2, 36), reason="DT_RELR comes with glibc 2.36 (and binutils 2.38)")


@NO_RELR
@pytest.mark.parametrize("weak, message", [
    (False, "version `GLIBC_ABI_DT_RELR' not found (required by"),   # match_symbol compares vna_hash
    (True, "DT_RELR without GLIBC_ABI_DT_RELR dependency"),
])
def test_relr_without_its_abi_requirement(cluster, build, weak, message):
    built = build("relr_abi", RELR_MODULE, "-Wl,-z,pack-relative-relocs")
    patch_vernaux(built, "GLIBC_ABI_DT_RELR", 0x1, 0x2 if weak else 0)   # 0x2: VER_FLG_WEAK
    assert_matches(cluster, built, loads=False)
    assert message in predicted(cluster, built)[2]


PROVIDER = "int pgdl_provided(void);\nint pgdl_provided(void) { return 42; }\n"
CONSUMER = GOOD_MODULE + r"""
extern int pgdl_provided(void);
int pgdl_consumer(void);
int pgdl_consumer(void) { return pgdl_provided(); }
"""


def test_unsupported_verdef_record_of_a_dependency(cluster, build, tmp_path):
    (tmp_path / "prov.map").write_text("PGDL_1 { global: pgdl_provided; local: *; };\n")
    provider = build("provider", PROVIDER, f"-Wl,--version-script={tmp_path}/prov.map",
                     "-Wl,-soname,libpgdlprov.so", output="libpgdlprov.so")
    consumer = build("consumer", CONSUMER, f"-L{tmp_path}", "-lpgdlprov", f"-Wl,-rpath,{tmp_path}")
    assert_matches(cluster, consumer, loads=True)
    patch_u16(provider, ".gnu.version_d", 0, 3)       # vd_version of the first (base) entry
    assert_matches(cluster, consumer, loads=False)


# -- static TLS (dl-tls.c) -----------------------------------------------------

def test_small_initial_exec_tls_loads(cluster, build):
    assert_matches(cluster, build("tls64", tls_module(64)), loads=True)


def test_global_dynamic_tls_of_any_size_loads(cluster, build):
    assert_matches(cluster, build("tls_gd", tls_module(1 << 20, "global-dynamic")), loads=True)


def test_large_initial_exec_tls_does_not_fit(cluster, build):
    assert_matches(cluster, build("tls4k", tls_module(4096)), loads=False)


def test_static_tls_boundary_to_the_byte(cluster, build):
    """The largest initial-exec block pgdl says fits, and one byte more, each
    against the real LOAD: the surplus and the startup objects' blocks, exact."""
    lo, hi = 64, 4096
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if predicted(cluster, build(f"tls_probe_{mid}", tls_module(mid)))[0]:
            lo = mid
        else:
            hi = mid
    assert_matches(cluster, build(f"tls_fit_{lo}", tls_module(lo)), loads=True)
    assert_matches(cluster, build(f"tls_over_{hi}", tls_module(hi)), loads=False)


@pytest.mark.parametrize("library", ["liblsan.so.0", "libtsan.so.2"])
def test_sanitizer_runtimes(cluster, library):
    import glob
    found = glob.glob(f"/usr/lib/*/{library}") + glob.glob(f"/lib/*/{library}")
    if not found:
        pytest.skip(f"{library} is not installed")
    assert_matches(cluster, found[0], loads=False)


# -- relocation types (dl-machine.h) ---------------------------------------------

def patch_relocation_type(path, index: int, kind: int) -> None:
    import struct
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        offset = ELFFile(f).get_section_by_name(".rela.dyn")["sh_offset"]
    data = bytearray(path.read_bytes())
    at = offset + index * 24 + 8                      # Elf64_Rela.r_info
    info = struct.unpack_from("<Q", data, at)[0]
    struct.pack_into("<Q", data, at, (info & ~0xFFFFFFFF) | kind)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", [0x2A, 0x17])        # unknown; R_X86_64_TPOFF32, which ld.so does not apply
def test_unexpected_relocation_type(cluster, build, kind):
    built = build(f"badtype_{kind}", MATH_MODULE, "-lm")
    from elftools.elf.elffile import ELFFile
    with open(built, "rb") as f:
        last = ELFFile(f).get_section_by_name(".rela.dyn").num_relocations() - 1
    patch_relocation_type(built, last, kind)
    assert_matches(cluster, built, loads=False)
    assert f"unexpected reloc type 0x{kind:02x}" in predicted(cluster, built)[2]


def test_bad_type_inside_the_relacount_prefix_aborts_ld_so(cluster, build):
    """do-rel.h (2.36) applies the first DT_RELACOUNT relocations with
    elf_machine_rela_relative(), which asserts that they are relative."""
    built = build("badprefix", MATH_MODULE, "-lm")
    patch_relocation_type(built, 0, 0x2A)
    row = predicted(cluster, built)
    assert row[:3] == (False, None, "server closed the connection unexpectedly")
    assert "type 0x2a among the DT_RELACOUNT relocations" in row[3]
    assert_load_kills_the_backend(cluster, built, row[3].split("The server log says: ")[1].split(" The postmaster")[0])


# -- x86 ISA level (sysdeps/x86/dl-prop.h) ------------------------------------------

@pytest.mark.parametrize("level", ["x86-64-v2", "x86-64-v3", "x86-64-v4"])
def test_isa_level_of_the_module(cluster, build, level):
    """Whatever this CPU supports: pgdl judges from /proc/cpuinfo, the real LOAD from cpuid."""
    built = build(f"isa_{level}", MATH_MODULE, "-lm", f"-Wl,-z,{level}")
    actual = real(cluster, built)
    assert predicted(cluster, built) == actual


def test_isa_level_of_a_dependency(cluster, build, tmp_path):
    build("isadep", PROVIDER, "-Wl,-z,x86-64-v4", "-Wl,-soname,libpgdlisa.so", output="libpgdlisa.so")
    consumer = build("isa_consumer", CONSUMER, f"-L{tmp_path}", "-lpgdlisa", f"-Wl,-rpath,{tmp_path}")
    actual = real(cluster, consumer)
    assert predicted(cluster, consumer) == actual
    if not actual[0]:
        assert actual[2].endswith("libpgdlisa.so: CPU ISA level is lower than required")


# -- mapping (dl-load.c) ---------------------------------------------------------------

def patch_elf_header(path, field_at: int, fmt: str, value) -> None:
    import struct
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, field_at, value)
    path.write_bytes(bytes(data))


def test_program_headers_past_the_end(cluster, build):
    built = build("shortph", MATH_MODULE, "-lm")
    patch_elf_header(built, 32, "<Q", built.stat().st_size - 20)     # e_phoff
    assert_matches(cluster, built, loads=False)
    assert predicted(cluster, built)[2].endswith(": cannot read file data")


def test_load_command_not_page_aligned(cluster, build):
    import struct
    built = build("misaligned", MATH_MODULE, "-lm")
    data = bytearray(built.read_bytes())
    phoff, phnum = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    for k in range(phnum):
        at = phoff + 56 * k
        if struct.unpack_from("<I", data, at)[0] == 1 and struct.unpack_from("<Q", data, at + 8)[0]:
            struct.pack_into("<Q", data, at + 8, struct.unpack_from("<Q", data, at + 8)[0] + 1)   # p_offset
            break
    built.write_bytes(bytes(data))
    assert_matches(cluster, built, loads=False)


# -- healthy look-alikes keep loading ------------------------------------------------------

@pytest.mark.parametrize("source, flags", [
    (MATH_MODULE, ("-Wl,-z,now",)),
    pytest.param(MATH_MODULE, ("-Wl,-z,pack-relative-relocs",), marks=NO_RELR),  # with GLIBC_ABI_DT_RELR
    (MATH_MODULE, ("-fcf-protection=full",)),
    (tls_module(64), ("-mtls-dialect=gnu2",)),          # TLSDESC
    (tls_module(4096, "global-dynamic"), ("-mtls-dialect=gnu2",)),  # optional static TLS: falls back
], ids=["now", "relr", "cet", "tlsdesc", "tlsdesc-large"])
def test_healthy_variants_keep_loading(cluster, build, source, flags):
    built = build("healthy", source, "-lm", *flags)
    assert_matches(cluster, built, loads=True)


def test_executable_stack(cluster, build):
    """An object asking for an executable stack: dlopen() makes it so up to glibc
    2.40, and refuses from 2.41 (EINVAL)."""
    built = build("execstack", MATH_MODULE, "-lm", "-Wl,-z,execstack")
    assert_matches(cluster, built, loads=GLIBC < (2, 41))
    if GLIBC >= (2, 41):
        assert predicted(cluster, built)[2].endswith(
            ": cannot enable executable stack as shared object requires: Invalid argument")


# -- ld.so assertions that kill the backend ---------------------------------------------------

def test_versioned_reference_to_an_unversioned_copy(cluster, build, tmp_path):
    """Built against libpgdlv.so with symbol versions, run against a copy without
    any: dl-lookup.c's check_match() assertion aborts the process up to glibc
    2.40; 2.41 removed the assertion and accepts the symbol."""
    (tmp_path / "prov.map").write_text("PGDL_1 { global: pgdl_provided; local: *; };\n")
    build("versioned", PROVIDER, f"-Wl,--version-script={tmp_path}/prov.map", "-Wl,-soname,libpgdlv.so",
          output="libpgdlv.so")
    consumer = build("consumer_v", CONSUMER, f"-L{tmp_path}", "-lpgdlv", f"-Wl,-rpath,{tmp_path}")
    assert_matches(cluster, consumer, loads=True)
    build("unversioned", PROVIDER, "-Wl,-soname,libpgdlv.so", output="libpgdlv.so")
    if GLIBC >= (2, 41):
        assert_matches(cluster, consumer, loads=True)
        return
    row = predicted(cluster, consumer)
    assert row[:3] == (False, None, "server closed the connection unexpectedly")
    assert "check_match: Assertion" in row[3] and "exit code 127" in row[3]
    assert_load_kills_the_backend(cluster, consumer, row[3].split("The server log says: ")[1].split(" The postmaster")[0])
    verdict = cluster.query("SELECT status, message FROM pgdl.diagnose(%s) WHERE topic = 'verdict'", (str(consumer),))
    assert verdict[0][0] == "error" and "dies" in verdict[0][1]


# -- SIGSEGV: what ld.so touches is not mapped (or not writable) ---------------------------------

def mutate_writable_load(path, change) -> None:
    """Apply change(p_type, p_flags) -> (p_type, p_flags) to the writable PT_LOAD."""
    import struct
    data = bytearray(path.read_bytes())
    phoff, phnum = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    for k in range(phnum):
        at = phoff + 56 * k
        p_type, p_flags = struct.unpack_from("<II", data, at)
        if p_type == 1 and p_flags & 2:
            struct.pack_into("<II", data, at, *change(p_type, p_flags))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("mutation, why", [
    (lambda t, f: (4, f), "dynamic section"),          # PT_LOAD -> PT_NOTE: .dynamic is not mapped
    (lambda t, f: (t, f & ~2), "read-only segment"),  # PF_W cleared: relocations write to read-only pages
], ids=["pt_note", "read_only"])
def test_mutated_program_headers_kill_the_backend(cluster, build, mutation, why):
    built = build("mutated", MATH_MODULE, "-lm")
    mutate_writable_load(built, mutation)
    row = predicted(cluster, built)
    assert row[:3] == (False, None, "server closed the connection unexpectedly")
    assert "SIGSEGV" in row[3] and why in row[3]
    assert_load_kills_the_backend(cluster, built, "was terminated by signal 11")


def test_module_on_a_noexec_file_system(cluster, build):
    """scripts/as-test-user.sh mounts a noexec tmpfs when it runs as root (as CI does)."""
    import os
    import shutil
    where = os.environ.get("PGDL_NOEXEC_DIR")
    if not where:
        pytest.skip("no noexec file system: run the tests as root (scripts/test.sh) to get one")
    built = build("noexec_src", MATH_MODULE, "-lm")
    target = os.path.join(where, "noexec.so")
    shutil.copy(built, target)
    assert_matches(cluster, target, loads=False)
    assert predicted(cluster, target)[2].endswith(": failed to map segment from shared object")


def test_dependency_naming_the_server_executable(cluster, build, tmp_path):
    """A DT_NEEDED that names the postgres executable by path: ld.so maps it anew
    (the executable's link map has no file id) and refuses a PIE."""
    import subprocess as sp
    postgres = sp.run(["pg_config", "--bindir"], check=True, capture_output=True, text=True).stdout.strip() + "/postgres"
    stub = build("exe_stub", "int pgdl_stub;\n", f"-Wl,-soname,{postgres}", output="libexestub.so")
    built = build("needs_exe", MATH_MODULE, "-lm", "-Wl,--no-as-needed", str(stub))
    assert_matches(cluster, built, loads=False)
    assert predicted(cluster, built)[2].endswith(f"{postgres}: cannot dynamically load position-independent executable")


def patch_dynamic(path, tag: int, value: int, field: int = 8) -> None:
    """Set the value (field 8) or the tag (field 0) of every dynamic entry with `tag`."""
    import struct
    data = bytearray(path.read_bytes())
    phoff, phnum = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    for k in range(phnum):
        at = phoff + 56 * k
        if struct.unpack_from("<I", data, at)[0] == 2:                     # PT_DYNAMIC
            offset, size = struct.unpack_from("<Q", data, at + 8)[0], struct.unpack_from("<Q", data, at + 32)[0]
            for entry in range(offset, offset + size, 16):
                if struct.unpack_from("<Q", data, entry)[0] == tag:
                    struct.pack_into("<Q", data, entry + field, value)
    path.write_bytes(bytes(data))


def patch_dynamic_tag(path, tag: int, new_tag: int) -> None:
    patch_dynamic(path, tag, new_tag, field=0)


def assert_load_kills_the_backend(cluster, path, log_line: str) -> None:
    """The real LOAD ends the session, and the server log says why."""
    import psycopg2
    offset = cluster.log_size()
    with pytest.raises(psycopg2.OperationalError, match="server closed the connection unexpectedly"):
        cluster.query("LOAD %s", (str(path),))
    cluster.wait_for_recovery(offset)
    assert log_line in cluster.log_since(offset)


@pytest.mark.parametrize("tag, value, assertion, source", [
    (20, 17, "DT_PLTREL", MATH_MODULE), (9, 16, "DT_RELAENT", MATH_MODULE),
    pytest.param(37, 16, "DT_RELRENT", RELR_MODULE, marks=NO_RELR)],
    ids=["DT_PLTREL", "DT_RELAENT", "DT_RELRENT"])
def test_impossible_dynamic_entries_abort_ld_so(cluster, build, tag, value, assertion, source):
    built = build(f"dyn_{tag}", source, "-lm", "-Wl,-z,pack-relative-relocs")
    patch_dynamic(built, tag, value)
    row = predicted(cluster, built)
    assert row[:3] == (False, None, "server closed the connection unexpectedly")
    line = row[3].split("The server log says: ")[1].split(" The postmaster")[0]
    assert f"Assertion `info[{assertion}]" in line
    assert_load_kills_the_backend(cluster, built, line)
    assert "exited with exit code 127" in cluster.log_since(0)


@pytest.mark.parametrize("tag, source", [(9, MATH_MODULE), pytest.param(37, RELR_MODULE, marks=NO_RELR)],
                         ids=["DT_RELAENT", "DT_RELRENT"])
def test_missing_entry_size_kills_the_backend(cluster, build, tag, source):
    """A RELA or RELR table whose entry size is not given: the assertion reads through NULL."""
    built = build(f"nosize_{tag}", source, "-lm", "-Wl,-z,pack-relative-relocs")
    patch_dynamic_tag(built, tag, 21)                   # becomes DT_DEBUG, which a dlopen ignores
    row = predicted(cluster, built)
    assert row[:3] == (False, None, "server closed the connection unexpectedly")
    assert "SIGSEGV" in row[3]
    assert_load_kills_the_backend(cluster, built, "was terminated by signal 11")


def test_segment_larger_than_the_address_space(cluster, build):
    import struct
    built = build("huge", MATH_MODULE, "-lm")
    data = bytearray(built.read_bytes())
    phoff, phnum = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    last = [k for k in range(phnum) if struct.unpack_from("<I", data, phoff + 56 * k)[0] == 1][-1]
    struct.pack_into("<Q", data, phoff + 56 * last + 40, 1 << 47)          # p_memsz: 128 TiB
    built.write_bytes(bytes(data))
    assert_matches(cluster, built, loads=False)
    assert predicted(cluster, built)[2].endswith(": failed to map segment from shared object")


def test_a_mapping_failure_comes_before_a_crash(cluster, build):
    """A damaged module on a noexec mount: mmap() fails first, cleanly; nothing gets to crash."""
    import os
    import shutil
    where = os.environ.get("PGDL_NOEXEC_DIR")
    if not where:
        pytest.skip("no noexec file system: run the tests as root (scripts/test.sh) to get one")
    built = build("damaged_noexec", MATH_MODULE, "-lm")
    mutate_writable_load(built, lambda t, f: (t, f & ~2))     # would SIGSEGV once mapped
    target = os.path.join(where, "damaged.so")
    shutil.copy(built, target)
    assert_matches(cluster, target, loads=False)
    assert predicted(cluster, target)[2].endswith(": failed to map segment from shared object")


# -- what mapping and protecting can do past the object (dl-map-segments.h, dl-reloc.c) ---------

def patch_program_header(path, p_type: int, field: str, change, nth: int = 0) -> None:
    """Apply change(value) to one field (p_vaddr, p_memsz) of the nth program header of p_type."""
    import struct
    at_field = {"p_vaddr": 16, "p_memsz": 40}[field]
    data = bytearray(path.read_bytes())
    phoff, phnum = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    headers = [phoff + 56 * k for k in range(phnum) if struct.unpack_from("<I", data, phoff + 56 * k)[0] == p_type]
    at = headers[nth] + at_field
    struct.pack_into("<Q", data, at, change(struct.unpack_from("<Q", data, at)[0]))
    path.write_bytes(bytes(data))


PT_LOAD, PT_GNU_RELRO = 1, 0x6474E552


def test_zero_fill_past_the_top_of_the_address_space(cluster, build):
    """The first PT_LOAD's zero pages reach 128 TiB past it: the anonymous mmap() fails, wherever it lands."""
    built = build("zerofill", MATH_MODULE, "-lm")
    patch_program_header(built, PT_LOAD, "p_memsz", lambda _m: 1 << 47)
    assert_matches(cluster, built, loads=False)
    assert predicted(cluster, built)[2].endswith(": cannot map zero-fill pages")


def test_relro_far_outside_the_object(cluster, build):
    """mprotect() of pages 2 TiB past the object: past the top of user space wherever it lands."""
    built = build("relro_far", MATH_MODULE, "-lm")
    patch_program_header(built, PT_GNU_RELRO, "p_vaddr", lambda v: v + (2 << 40))
    assert_matches(cluster, built, loads=False)
    row = predicted(cluster, built)
    # ENOMEM: 53200 where dlerror() sets errno (glibc 2.34); before, a stale errno.
    assert row[1] == "53200" or GLIBC < (2, 34)
    assert row[2].endswith(": cannot apply additional memory protection after relocation: Cannot allocate memory")


@pytest.mark.parametrize("field, header, change", [
    ("relro", PT_GNU_RELRO, lambda v: v + (1 << 20)),         # protects whatever is mapped 1 MiB on
    ("zero fill", PT_LOAD, lambda m: m + (1 << 20) + 0x5000),  # zeroes whatever is mapped after the object
], ids=["relro", "zero_fill"])
def test_outcome_that_depends_on_the_address_layout(cluster, build, field, header, change):
    """Where the real outcome depends on what the kernel placed next to the object,
    pgdl says so (will_load NULL, with the error it gets if it fails), and the real
    LOAD does one of these: loads, fails so, or kills the backend."""
    built = build("layout", MATH_MODULE, "-lm")
    patch_program_header(built, header, "p_memsz" if field == "zero fill" else "p_vaddr", change)
    row = predicted(cluster, built)
    assert row[0] is None, row
    assert "depending on where the kernel maps" in [r for r in cluster.query(
        "SELECT topic, message FROM pgdl.diagnose(%s)", (str(built),)) if r[0] == "verdict"][0][1]
    offset = cluster.log_size()
    actual = real(cluster, built)
    # Zero pages over a neighbour's memory may kill the backend during the LOAD, or later.
    cluster.settle(offset)
    if actual != (False, None, None, None, None):          # the connection was not lost
        assert actual[0] is True or actual[1:] == row[1:], actual


def test_static_tls_left_depends_on_the_context(cluster, build):
    """What earlier loads took of the static TLS reserve counts: a 1000-byte
    initial-exec block fits in a fresh session, not in one whose role preloads
    another such module (session_preload_libraries)."""
    first = build("tls_first", tls_module(1000))
    second = build("tls_second", tls_module(1000).replace("pgdl_tls", "pgdl_tls2"))
    cluster.query("CREATE ROLE tls_preloading SUPERUSER LOGIN")
    try:
        cluster.query(f"ALTER ROLE tls_preloading SET session_preload_libraries = '{first}'")
        query = "SELECT * FROM pgdl.predict_load(%s, context => 'new session', role => %s)"
        for role, loads in ((cluster.dsn["user"], True), ("tls_preloading", False)):
            error = cluster.error_of("LOAD %s", (str(second),), user=role)
            actual = (True, None, None, None, None) if error is None else \
                (False, error.sqlstate, error.message, error.detail, error.hint)
            assert actual[0] is loads, (role, actual)
            assert cluster.query(query, (str(second), role))[0] == actual, role
        assert "cannot allocate memory in static TLS block" in cluster.query(query, (str(second), "tls_preloading"))[0][2]
    finally:
        cluster.query("DROP ROLE tls_preloading")


def test_a_damaged_dependency_kills_the_backend(cluster, build, tmp_path):
    provider = build("dep_provider", PROVIDER, "-Wl,-soname,libpgdldamaged.so", output="libpgdldamaged.so")
    consumer = build("dep_consumer", CONSUMER, f"-L{tmp_path}", "-lpgdldamaged", f"-Wl,-rpath,{tmp_path}")
    assert_matches(cluster, consumer, loads=True)
    mutate_writable_load(provider, lambda t, f: (t, f & ~2))     # its relocations now write to read-only pages
    row = predicted(cluster, consumer)
    assert row[:3] == (False, None, "server closed the connection unexpectedly")
    assert "a dependency of" in row[3] and "read-only segment" in row[3]
    assert_load_kills_the_backend(cluster, consumer, "was terminated by signal 11")
