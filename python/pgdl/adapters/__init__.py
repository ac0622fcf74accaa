"""The PL/Python adapter: backend (the entry point of pgdl._run), session
(encoding, cancellation), describe (the Server), catalog (the database's
functions), maps (/proc/self/maps), servertext (bytes and the database's
encoding), validate (arguments)."""
