"""The ELF reader: what the dynamic loader reads of a file, read as it reads it.

Headers, program headers and the dynamic section (objects), string tables,
version tables, section headers, the dynamic symbol table and its hash
tables (dynsym), and decoding of a function's returned address (code).
"""

from .objects import *  # noqa: F401,F403  (the reader's constants, ElfObject, open_elf, cached_elf)
