"""The staged load: predict runs the rules in the server's order and records
each stage in an immutable trace (trace: Stage, Loading, Prediction)."""
