"""pgdl.predict_load(): one row, the server's own words when it fails."""

from __future__ import annotations

from ..engine.predict import Prediction, predict_load
from ..server import Server


def predict_load_row(name: str, server: Server, symbol: str | None = None) -> tuple:
    """(will_load, sqlstate, message, detail, hint)."""
    return prediction_row(predict_load(name, server, symbol))


def prediction_row(p: Prediction) -> tuple:
    e = p.error
    if e is None:
        return (p.will_load, None, None, None, None)
    return (p.will_load, e.sqlstate, e.message, e.detail, e.hint)
