"""glibc's dynamic loader, as 2.36 does it: the search (dst, hwcaps, ldcache,
cachefile, loader), what is already in the process (startup), the walk of
one dlopen (ldso, linkmap), the module file's checks (openfile, openverify),
and binding (versions, binding, problems)."""
