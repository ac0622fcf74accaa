"""PostgreSQL's rules, per major version (chosen by server_version_num):
lookup (dfmgr.c expand_dynamic_library_name), dfmgr (its errors), magic
(fmgr.h's magic block), fmgr (entry points), extensions (extension.c)."""
