"""What each SQL function shows, rendered from traces: resolve, predict_load,
dependencies, check_magic, diagnose (diagnose_library, diagnose_extension,
explain), audit.  Statuses come from one vocabulary (status)."""
