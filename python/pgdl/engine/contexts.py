"""The process a question is about, made from the description of this one.

'this session' is this backend as it is.  'server start' is the postmaster:
the server executable with what ld.so maps at startup (LD_PRELOAD,
/etc/ld.so.preload, its DT_NEEDED tree), then each library of
shared_preload_libraries loaded in order, as miscinit.c
process_shared_preload_libraries() does (not restricted; an error there is
FATAL and the server does not start).  'new session' is a backend forked
from that postmaster (its mapped files, where they can be read, else the
simulated start), then session_preload_libraries and
local_preload_libraries (restricted to $libdir/plugins/) as
process_session_preload_libraries() loads them.  A load is simulated with
predict_load() and what it maps is added to the next one's `loaded`.
"""

from __future__ import annotations

from .. import filestate
from ..glibc.loader import Loader
from ..glibc.startup import executable_closure
from ..record import Record
from ..server import Context, LoadedObject, Server
from ..postgres.preloads import preload_target
from .predict import predict_load
from .trace import Prediction


class PreloadStep(Record):
    """One library of a preload setting, as the process loads it."""
    __slots__ = ("setting", "name", "target", "prediction")

    def __init__(self, setting: str, name: str, target: str, prediction: Prediction):
        self.setting = setting          # shared_preload_libraries, session_... or local_preload_libraries
        self.name = name                # as listed
        self.target = target            # as loaded: local_preload_libraries go to $libdir/plugins/
        self.prediction = prediction


class Boot(Record):
    """A process made ready: the loads on the way, the first that fails, and the process then."""
    __slots__ = ("server", "steps", "failed", "from_maps")

    def __init__(self, server: Server, steps: tuple[PreloadStep, ...], failed: PreloadStep | None,
                 from_maps: bool):
        self.server = server            # the description to ask about the next load in
        self.steps = steps
        self.failed = failed            # FATAL: the server does not start / the session does not start
        self.from_maps = from_maps      # shared_preload_libraries read from the postmaster's mapped files


_BOOTS = filestate.Memo(16)


def boot(server: Server) -> Boot:
    """The process of `server.context`, ready for the load asked about."""
    return _BOOTS.get(server.fingerprint, lambda: _boot(server))


def in_context(server: Server) -> Server:
    return boot(server).server


def _boot(server: Server) -> Boot:
    role = server.role
    if server.context is Context.THIS_SESSION:
        return Boot(server if role is None else server.replace(is_superuser=role.is_superuser), (), None, False)
    start = _postmaster(server)
    if server.context is Context.SERVER_START or start.failed is not None:
        return start
    backend = start.server.replace(context=Context.NEW_SESSION,
                                   is_superuser=role.is_superuser if role else server.is_superuser)
    steps = list(start.steps)
    lists = (("session_preload_libraries", server.preloads.session, False),
             ("local_preload_libraries", server.preloads.local, True))
    for setting, names, restricted in lists:
        for name in names:
            target = preload_target(name, restricted)
            loading = backend.replace(is_superuser=not restricted)   # dfmgr.c load_libraries(restricted)
            step = PreloadStep(setting, name, target, predict_load(target, loading))
            steps.append(step)
            if step.prediction.will_load is False:
                return Boot(backend, tuple(steps), step, start.from_maps)
            backend = _after(backend, step.prediction)
    return Boot(backend, tuple(steps), None, start.from_maps)


def _postmaster(server: Server) -> Boot:
    """The postmaster once shared_preload_libraries are loaded.  For a new
    session its mapped files are the answer where they could be read (the
    custom settings its libraries define are still worked out)."""
    as_postmaster = server.replace(context=Context.SERVER_START, is_superuser=True)
    from_maps = server.context is Context.NEW_SESSION and server.postmaster_loaded is not None
    current = as_postmaster.replace(loaded=list(server.postmaster_loaded) if from_maps
                                    else _startup_objects(as_postmaster))
    steps = []
    for name in server.preloads.of(server.context):
        step = PreloadStep("shared_preload_libraries", name, name, predict_load(name, current))
        steps.append(step)
        if step.prediction.will_load is False:
            return Boot(current, tuple(steps), step, from_maps)
        current = _after(current, step.prediction, keep_loaded=from_maps)
    return Boot(current, tuple(steps), None, from_maps)


def _after(server: Server, p: Prediction, keep_loaded: bool = False) -> Server:
    """The process once `p`'s load is done: its new objects mapped, its settings defined."""
    check = p.pg_init
    custom = server.custom_settings | (check.defines if check is not None else frozenset())
    if keep_loaded or p.tree is None:
        return server.replace(custom_settings=custom)
    new = [_mapped(m) for m in p.tree.maps[p.tree.first_new:]]
    return server.replace(loaded=list(server.loaded) + new, custom_settings=custom)


def _startup_objects(server: Server) -> list[LoadedObject]:
    """The executable and what ld.so maps at its start, as /proc/PID/maps would list them."""
    bare = server.replace(loaded=[])
    objects = [LoadedObject(server.executable, *(filestate.state(server.executable).identity or (0, 0)))]
    return objects + [_mapped(m) for m in executable_closure(bare, Loader(bare, preloaded=[]))]


def _mapped(m) -> LoadedObject:
    """A link map as /proc/PID/maps would list its file."""
    return LoadedObject(m.name, *next(iter(sorted(m.ids)), (0, 0)))
