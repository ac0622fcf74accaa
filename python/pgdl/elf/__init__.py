"""The ELF reader: what the dynamic loader reads of a file, read as it reads it.

  format    elf.h's constants, bounds for hostile files, the records handed out
  objects   ElfObject: the ELF header, program headers, dynamic section (open_elf, cached_elf)
  strings   DT_STRTAB, whole or a page at a time
  versions  VERDEF and VERNEED chains
  sections  section headers: .symtab and RELATIVE relocations (for the magic block)
  hashing   gnu_hash, elf_hash, the Bloom filter, damaged-table indexes
  dynsym    the dynamic symbol table, searched as do_lookup_x() searches it
  code      a function's returned address, decoded from its machine code

Other packages import the reader's public names from here.
"""

from .format import *  # noqa: F401,F403
from .objects import ElfObject, cached_elf, open_elf  # noqa: F401
from .strings import MAX_NAME, PagedStrings, cstring, string_table  # noqa: F401
