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

install-python: installdirs-python
	$(INSTALL_DATA) $(PYTHON_SOURCES) '$(DESTDIR)$(PYTHON_DIR)/'

uninstall-python:
	rm -rf '$(DESTDIR)$(datadir)/pgdl'

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

.PHONY: install-python installdirs-python uninstall-python test demo
