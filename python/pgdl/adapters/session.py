"""What one backend's pgdl calls share: the database's encoding, and the
poll that lets the server act on a cancel request (pgdl.interrupts)."""

from __future__ import annotations

import json

from .. import interrupts
from .servertext import codec_of, from_server, shown


class Session:
    def __init__(self, plpy):
        self.codec = codec_of(plpy.execute("SELECT pg_catalog.current_setting('server_encoding') AS e")[0]["e"])
        check = plpy.prepare("SELECT 1")     # the executor checks for interrupts first thing

        def poll():
            try:
                plpy.execute(check)
            except plpy.SPIError as exc:
                raise interrupts.Interrupted(getattr(exc, "sqlstate", None) or "57014", str(exc)) from None

        self.poll = poll

    def fs(self, text: str | None) -> str | None:
        """Text from SQL as the bytes the server would hand the file system."""
        return None if text is None else from_server(text, self.codec)

    def text(self, value):
        return shown(value, self.codec) if isinstance(value, str) else value

    def dumps(self, result: dict) -> str:
        """pgdl._run()'s JSON, every text in the database's encoding (servertext.shown)."""
        rows = result.get("rows")
        if rows is not None:
            text = self.text
            result = {"rows": [{k: text(v) for k, v in row.items()} for row in rows]}
        return json.dumps(result, ensure_ascii=False)

    def error(self, sqlstate, message, detail=None, hint=None) -> str:
        error = {"sqlstate": sqlstate, "message": self.text(message)}
        if detail:
            error["detail"] = self.text(detail)
        if hint:
            error["hint"] = self.text(hint)
        return self.dumps({"error": error})


_SESSION: Session | None = None


def session(plpy) -> Session:
    """This backend's Session, made by its first pgdl call."""
    global _SESSION
    if _SESSION is None:
        _SESSION = Session(plpy)
    return _SESSION
