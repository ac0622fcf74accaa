# pgdl: PGXS build.  `make install` installs the control file, the SQL
# scripts and the Python package (under $(datadir)/pgdl, where the SQL
# functions find it through pg_config() at run time).
# The control file lives in extension/, so EXTENSION is not set (PGXS would
# look for ./pgdl.control); MODULEDIR sends DATA to the extension directory.
MODULEDIR = extension
DATA = extension/pgdl.control $(wildcard sql/pgdl--*.sql)
PYTHON_SOURCES = $(wildcard python/pgdl/*.py)
PYTHON_DIR = $(datadir)/pgdl/pgdl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

install: install-python
installdirs: installdirs-python
uninstall: uninstall-python

installdirs-python:
	$(MKDIR_P) '$(DESTDIR)$(PYTHON_DIR)'

# Byte-compiled here: the server's OS user cannot write __pycache__ under
# $(datadir), and compiling pgdl in every new backend would cost more than
# everything else its first call does.  PGXS sets PYTHON to the Python the
# server was built with, which is PL/Python's.
PYTHON ?= python3

install-python: installdirs-python
	$(INSTALL_DATA) $(PYTHON_SOURCES) '$(DESTDIR)$(PYTHON_DIR)/'
	$(PYTHON) -m compileall -q '$(DESTDIR)$(PYTHON_DIR)'

uninstall-python:
	rm -rf '$(DESTDIR)$(datadir)/pgdl'

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

.PHONY: install-python installdirs-python uninstall-python test demo
