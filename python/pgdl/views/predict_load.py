"""pgdl.predict_load(): one row, the server's own words when it fails."""

from __future__ import annotations

from ..engine.contexts import boot
from ..engine.predict import Prediction, predict_load
from ..postgres.translate import as_server_says
from ..record import Value
from ..server import Server


class LoadPrediction(Value):
    """The row of pgdl.predict_load() (the SQL type pgdl.load_prediction)."""
    __slots__ = ("will_load", "sqlstate", "message", "detail", "hint")

    def __init__(self, will_load: bool | None, sqlstate: str | None = None, message: str | None = None,
                 detail: str | None = None, hint: str | None = None):
        self.will_load = will_load      # None: not predicted (see Prediction.will_load)
        self.sqlstate = sqlstate        # None with a message: the backend dies (the client loses the connection)
        self.message = message
        self.detail = detail
        self.hint = hint


def predict_load_row(name: str, server: Server, symbol: str | None = None) -> LoadPrediction:
    """In server.context: at 'server start', `name` appended to shared_preload_libraries
    (a library before it that fails stops the start: its error is the answer)."""
    start = boot(server)
    if start.failed is not None:
        return prediction_row(start.failed.prediction, server)
    return prediction_row(predict_load(name, start.server, symbol), server)


def prediction_row(p: Prediction, server: Server) -> LoadPrediction:
    """In the server's language (its lc_messages)."""
    e = as_server_says(p.error, server)
    if e is None:
        return LoadPrediction(p.will_load)
    return LoadPrediction(p.will_load, e.sqlstate, e.message, e.detail, e.hint)
