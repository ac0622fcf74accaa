"""C sources of modules broken in one way each, built by the tests at test time."""

import os

# The glibc the tests (and so the server beside them) run with: what a real
# load does depends on it (scripts/matrix.sh runs the tests on several).
GLIBC = tuple(int(x) for x in os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2])

# A module whose magic block is written out by hand, so each field can be
# set with -D: the real PG_MODULE_MAGIC takes them from the server headers.
# Brace elision makes the flat initializer fit PG 18's nested layout too.
HAND_MAGIC = r"""
#include "postgres.h"
#include "fmgr.h"

#ifndef M_VERSION
#define M_VERSION (PG_VERSION_NUM / 100)
#endif
#ifndef M_FUNC_MAX_ARGS
#define M_FUNC_MAX_ARGS FUNC_MAX_ARGS
#endif
#ifndef M_INDEX_MAX_KEYS
#define M_INDEX_MAX_KEYS INDEX_MAX_KEYS
#endif
#ifndef M_NAMEDATALEN
#define M_NAMEDATALEN NAMEDATALEN
#endif
#ifndef M_FLOAT8BYVAL
#define M_FLOAT8BYVAL FLOAT8PASSBYVAL
#endif
#ifndef M_ABI
#define M_ABI FMGR_ABI_EXTRA
#endif
#if PG_VERSION_NUM >= 150000
#define M_ABI_FIELD , M_ABI
#else
#define M_ABI_FIELD                 /* no ABI field before PostgreSQL 15 */
#endif

PGDLLEXPORT const Pg_magic_struct *Pg_magic_func(void);
const Pg_magic_struct *
Pg_magic_func(void)
{
    static const Pg_magic_struct Pg_magic_data = {
        sizeof(Pg_magic_struct), M_VERSION, M_FUNC_MAX_ARGS, M_INDEX_MAX_KEYS,
        M_NAMEDATALEN, M_FLOAT8BYVAL M_ABI_FIELD
    };
    return &Pg_magic_data;
}
"""

# The magic block of a PostgreSQL 8.2-12 build (with float4byval).
OLD_LAYOUT_MAGIC = r"""
#include "postgres.h"
#include "fmgr.h"

typedef struct { int len, version, funcmaxargs, indexmaxkeys, namedatalen, float4byval, float8byval; } OldMagic;

PGDLLEXPORT const Pg_magic_struct *Pg_magic_func(void);
const Pg_magic_struct *
Pg_magic_func(void)
{
    static const OldMagic Pg_magic_data = { sizeof(OldMagic), 1200, 100, 32, 64, 1, 1 };
    return (const Pg_magic_struct *) &Pg_magic_data;
}
"""

# This server's fields, but a struct four bytes longer.
LONGER_MAGIC = r"""
#include "postgres.h"
#include "fmgr.h"

typedef struct { Pg_magic_struct m; int extra; } LongerMagic;

PGDLLEXPORT const Pg_magic_struct *Pg_magic_func(void);
const Pg_magic_struct *
Pg_magic_func(void)
{
    static const LongerMagic Pg_magic_data = {
        { sizeof(LongerMagic), PG_VERSION_NUM / 100, FUNC_MAX_ARGS, INDEX_MAX_KEYS,
          NAMEDATALEN, FLOAT8PASSBYVAL
#if PG_VERSION_NUM >= 150000
          , FMGR_ABI_EXTRA
#endif
        }, 0 };
    return &Pg_magic_data.m;
}
"""

# PostgreSQL 18's layout with PG_MODULE_MAGIC_EXT(.name, .version): the two
# pointers are filled by RELATIVE relocations at load time.
PG18_EXT_MAGIC = r"""
typedef struct {
    int len;
    struct { int version, funcmaxargs, indexmaxkeys, namedatalen, float8byval; char abi_extra[32]; } abi;
    const char *name;
    const char *version;
} Magic18;

const Magic18 *Pg_magic_func(void);
const Magic18 *
Pg_magic_func(void)
{
    static const Magic18 Pg_magic_data = {
        sizeof(Magic18), { 1800, 100, 32, 64, 1, "PostgreSQL" }, "my_module", "1.2.3" };
    return &Pg_magic_data;
}
"""

GOOD_MODULE = r"""
#include "postgres.h"
#include "fmgr.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(good_answer);
Datum
good_answer(PG_FUNCTION_ARGS)
{
    PG_RETURN_INT32(42);
}
"""

NO_MAGIC_MODULE = r"""
int no_magic_answer(void) { return 42; }
"""
