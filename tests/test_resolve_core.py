"""The pure lookup rules, per PostgreSQL major version, without a server."""

from __future__ import annotations


import pytest

from pgdl.errors import INVALID_NAME
from pgdl.postgres.lookup import canonicalize_path, resolve
from pgdl.server import Server

VERSIONS = [120000, 130000, 140000, 150000, 160000, 170000, 180000, 190000]   # 19: from its source


@pytest.fixture
def libdir(tmp_path):
    lib = tmp_path / "lib"
    (lib / "plugins").mkdir(parents=True)
    (lib / "foo.so").write_bytes(b"x")
    (lib / "bar").write_bytes(b"x")
    (lib / "plugins" / "plug.so").write_bytes(b"x")
    (lib / "dirmod.so").mkdir()
    return lib


def server(version, libdir, path="$libdir", data="."):
    return Server(version_num=version, pkglibdir=str(libdir), dynamic_library_path=path, data_directory=data)


def steps(res):
    return [(c.rule, c.candidate, c.chosen) for c in res.candidates]


@pytest.mark.parametrize("version", VERSIONS)
def test_bare_name_tries_path_then_suffix(version, libdir):
    res = resolve("foo", server(version, libdir))
    assert steps(res) == [
        ("dynamic_library_path entry 1 ($libdir)", f"{libdir}/foo", False),
        ("dynamic_library_path entry 1 ($libdir) + DLSUFFIX", f"{libdir}/foo.so", True),
    ]
    assert res.found and res.full_name == f"{libdir}/foo.so"


@pytest.mark.parametrize("version", VERSIONS)
def test_exact_name_wins_over_suffixed(version, libdir):
    res = resolve("bar", server(version, libdir))
    assert res.full_name == f"{libdir}/bar" and len(res.candidates) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_directory_is_not_a_file(version, libdir):
    res = resolve("dirmod.so", server(version, libdir))
    assert res.candidates[0].file_exists and not res.candidates[0].chosen
    assert not res.found and res.full_name == "dirmod.so"


@pytest.mark.parametrize("version", VERSIONS)
def test_libdir_macro(version, libdir):
    res = resolve("$libdir/plugins/plug", server(version, libdir))
    assert res.full_name == f"{libdir}/plugins/plug.so"
    assert [c.rule for c in res.candidates] == ["$libdir macro", "$libdir macro + DLSUFFIX"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("for_function", [False, True])
def test_libdir_prefix_and_path(version, libdir, tmp_path, for_function):
    """PG 18's load_external_function() strips "$libdir/" so the name is searched
    in dynamic_library_path; LOAD (load_file) does not."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "foo.so").write_bytes(b"x")
    res = resolve("$libdir/foo", server(version, libdir, path=f"{other}:$libdir"), for_function=for_function)
    if version >= 180000 and for_function:
        assert res.full_name == f"{other}/foo.so"
    else:
        assert res.full_name == f"{libdir}/foo.so"
    nested = resolve("$libdir/plugins/plug", server(version, libdir, path=f"{other}:$libdir"), for_function=True)
    assert nested.full_name == f"{libdir}/plugins/plug.so"


@pytest.mark.parametrize("version", VERSIONS)
def test_stripped_name_not_found(version, libdir):
    res = resolve("$libdir/nosuch", server(version, libdir), for_function=True)
    assert res.full_name == ("nosuch" if version >= 180000 else "$libdir/nosuch")


@pytest.mark.parametrize("version", VERSIONS)
def test_path_order_and_entries(version, libdir, tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    (first / "foo.so").write_bytes(b"x")
    res = resolve("foo", server(version, libdir, path=f"{first}/:$libdir"))
    assert res.full_name == f"{first}/foo.so"
    assert steps(res) == [
        (f"dynamic_library_path entry 1 ({first}/)", f"{first}/foo", False),
        ("dynamic_library_path entry 2 ($libdir)", f"{libdir}/foo", False),
        (f"dynamic_library_path entry 1 ({first}/) + DLSUFFIX", f"{first}/foo.so", True)]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path, message", [
    ("$libdir::/x", 'zero-length component in parameter "dynamic_library_path"'),
    (":$libdir", 'zero-length component in parameter "dynamic_library_path"'),
    ("$libdir:relative/dir", 'component in parameter "dynamic_library_path" is not an absolute path'),
    ("$libdir:", 'component in parameter "dynamic_library_path" is not an absolute path'),
    ("$libdirx", "invalid macro name in dynamic library path: $libdirx"),
])
def test_path_errors(version, libdir, path, message):
    if version >= 180000:
        message = message.replace("in dynamic library path", "in path")
    res = resolve("nosuch", server(version, libdir, path=path))
    assert res.error is not None
    assert (res.error.sqlstate, res.error.message) == (INVALID_NAME, message)


@pytest.mark.parametrize("version", VERSIONS)
def test_invalid_macro_in_name(version, libdir):
    res = resolve("$libdirx/foo", server(version, libdir))
    wording = "in path" if version >= 180000 else "in dynamic library path"
    assert res.error.message == f"invalid macro name {wording}: $libdirx/foo"


@pytest.mark.parametrize("version", VERSIONS)
def test_relative_name_with_slash_is_relative_to_data_directory(version, libdir, tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "sub" / "m.so").write_bytes(b"x")
    monkeypatch.chdir(data)      # the backend's cwd is the data directory
    res = resolve("sub/m", server(version, libdir, data=str(data)))
    assert res.full_name == "sub/m.so"
    assert res.candidates[-1].rule == "relative to the data directory + DLSUFFIX"


@pytest.mark.parametrize("version", VERSIONS)
def test_unusual_stat_errors_raise(version, libdir):
    res = resolve("/" + "x" * 5000, server(version, libdir))
    assert res.error.message.endswith(": File name too long")
    assert res.error.sqlstate == ("58P03" if version >= 180000 else "XX000")


def test_empty_path_searches_nothing(libdir):
    res = resolve("foo", server(150000, libdir, path=""))
    assert res.candidates == [] and res.full_name == "foo"


@pytest.mark.parametrize("major, path, expected", [
    (15, "/a/b/../c/./d/", "/a/c/d"),
    (14, "/a/b/../c/./d/", "/a/b/../c/./d"),
    (14, "/a/b/..", "/a"),
    (15, "//a//b", "/a/b"),
])
def test_canonicalize_path(major, path, expected):
    assert canonicalize_path(path, major) == expected
