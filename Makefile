# pgdl: PGXS build.  `make install` installs the control file, the SQL
# scripts and the Python package (under $(datadir)/pgdl, where the SQL
# functions find it through pg_config() at run time).
# The control file lives in extension/, so EXTENSION is not set (PGXS would
# look for ./pgdl.control); MODULEDIR sends DATA to the extension directory.
MODULEDIR = extension
DATA = extension/pgdl.control $(wildcard sql/pgdl--*.sql)
PYTHON_SOURCES = $(wildcard python/pgdl/*.py python/pgdl/*/*.py)
# The shell tool, into the installation's bindir beside pg_config.
SCRIPTS = scripts/pgdl
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

# The package is installed afresh: a module an earlier version had (the flat
# modules before the subpackages) must not survive to be imported.
install-python: installdirs-python
	rm -rf '$(DESTDIR)$(PYTHON_DIR)'
	$(MKDIR_P) $(foreach d,$(sort $(dir $(PYTHON_SOURCES))),'$(DESTDIR)$(PYTHON_DIR)/$(patsubst python/pgdl/%,%,$(d))')
	for f in $(patsubst python/pgdl/%,%,$(PYTHON_SOURCES)); do \
	  $(INSTALL_DATA) python/pgdl/$$f '$(DESTDIR)$(PYTHON_DIR)/'$$f || exit 1; \
	done
	$(PYTHON) -m compileall -q '$(DESTDIR)$(PYTHON_DIR)'

uninstall-python:
	rm -rf '$(DESTDIR)$(datadir)/pgdl'

test:
	bash scripts/test.sh

demo:
	bash scripts/demo.sh

.PHONY: install-python installdirs-python uninstall-python test demo
