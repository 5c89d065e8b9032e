"""Open-weights teachers on this machine: one vLLM server per distinct 127.0.0.1 `base_url` of a profile.

    python -m orca_utils serve-teachers --profile paper_open_weights --print   # the commands, nothing started
    python -m orca_utils serve-teachers --profile paper_open_weights           # start them, wait until ready

Every teacher-client model of the profile (02's stage1/stage2, 07's references and judge, 08's judge) whose own
`base_url` is on the loopback interface names a server to run here: its port is the URL's, its model the params'
`model` (also the `--served-model-name`, so requests carry the name the params use). Placement comes from the
optional `server` block of the teacher params (`schemas.TeacherServerParams`, set once per base_url):
`gpus` (CUDA_VISIBLE_DEVICES; tensor parallel size = their count), `gpu_memory_utilization`, `max_model_len`.
A server without `gpus` gets the next GPU that no other server takes, in order of appearance, so two servers never
share a device unless the params say so; servers given the same GPU must sum their memory fractions to <= 0.95
(vLLM sizes its KV cache from the fraction it is given, and two at the default 0.9 cannot both start).

This module plans (params -> servers and devices) and is the command line; the servers themselves (the `vllm serve`
command, its environment, launching, readiness, stopping) are `orca_utils.backends.gpu_servers`.

Started servers log to `outputs/<profile>/servers/<port>.log`; a port that already answers `GET /v1/models` with
the expected model is left alone. The command stays in the foreground and stops the servers it started on
Ctrl-C, or with `--detach` leaves them running and prints how to stop them.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from .backends.endpoints import LOOPBACK, is_loopback
from .backends.gpu_servers import GpuServer, launch_servers, models_served, stop_server

TeacherServer = GpuServer            # one open-weights teacher's vLLM server (orca_utils.backends.gpu_servers)
_stop = stop_server

__all__ = ["LOOPBACK", "MAX_SHARED_FRACTION", "ServerPlanError", "TeacherServer", "launch_servers", "models_served",
           "plan_servers", "server_for_url"]

MAX_SHARED_FRACTION = 0.95         # sum of gpu_memory_utilization of the servers sharing one GPU


class ServerPlanError(ValueError):
    """Params that cannot be served as written; `param` names the one to change (`<notebook>.<dotted.param>`)."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param, self.message = param, message


def _teachers(cfg) -> list[tuple[str, object]]:
    from .schemas import TeacherModelParams

    found = [(n, getattr(cfg, n, None)) for n in ("stage1", "stage2")]
    found += [(f"references[{i}]", t) for i, t in enumerate(getattr(cfg, "references", None) or [])]
    found.append(("judge", getattr(cfg, "judge", None)))
    return [(n, t) for n, t in found if isinstance(t, TeacherModelParams)]


def _local_uses(cfgs: dict) -> list[tuple[str, object]]:
    """(`<notebook>.<name>`, teacher params) of every real-endpoint teacher whose own base_url is on 127.0.0.1."""
    return [(f"{stem}.{name}", t) for stem, cfg in cfgs.items() for name, t in _teachers(cfg)
            if t.offline_backend == "none" and is_loopback(t.base_url)]


@dataclass
class _Group:
    base_url: str
    port: int
    model: str
    params: list[str] = field(default_factory=list)
    server: object = None
    server_param: str | None = None


def plan_servers(cfgs: dict) -> list[TeacherServer]:
    """The servers a loaded profile ({notebook stem: params}) needs on this machine, in order of appearance, with
    their devices; ServerPlanError (one line naming the param) when the params cannot be served as written."""
    groups: dict[int, _Group] = {}
    for param, t in _local_uses(cfgs):
        url = urlparse(t.base_url)
        if url.port is None:
            raise ServerPlanError(f"{param}.base_url", f"{t.base_url} names no port: write the server's port, "
                                                       f"e.g. http://127.0.0.1:8001/v1")
        g = groups.setdefault(url.port, _Group(t.base_url.rstrip("/"), url.port, t.model))
        if t.model != g.model:
            raise ServerPlanError(f"{param}.model", f"{t.model}, but {g.params[0]} sends {g.model} to the same "
                                                    f"server (port {g.port}): one server serves one model: give "
                                                    f"{t.model} its own port")
        g.params.append(param)
        if t.server is not None:
            if g.server is not None and t.server != g.server:
                raise ServerPlanError(f"{param}.server", f"differs from {g.server_param} for the same server "
                                                         f"(port {g.port}): set the server block once")
            if g.server is None:
                g.server, g.server_param = t.server, f"{param}.server"
    explicit = {g.port: tuple(g.server.gpus) for g in groups.values() if g.server is not None and g.server.gpus}
    taken = {i for gpus in explicit.values() for i in gpus}
    servers = []
    for g in groups.values():
        gpus = explicit.get(g.port)
        if gpus is None:
            gpus = (min(set(range(len(taken) + 1)) - taken),)
            taken.add(gpus[0])
        s = g.server
        servers.append(TeacherServer(g.base_url, g.port, g.model, tuple(g.params), gpus,
                                     s.gpu_memory_utilization if s else 0.9, s.max_model_len if s else None))
    _check_shared(servers, groups)
    return servers


def _check_shared(servers: list[TeacherServer], groups: dict[int, _Group]) -> None:
    for gpu in sorted({i for s in servers for i in s.gpus}):
        sharing = [s for s in servers if gpu in s.gpus]
        total = sum(s.gpu_memory_utilization for s in sharing)
        if len(sharing) > 1 and total > MAX_SHARED_FRACTION + 1e-9:
            who = " and ".join(f"{s.model} on port {s.port} ({s.gpu_memory_utilization:g})" for s in sharing)
            last = sharing[-1]
            param = groups[last.port].server_param or f"{last.params[0]}.server"
            raise ServerPlanError(param, f"GPU {gpu} is given to {who}: memory fractions sum to {total:.2f} > "
                                         f"{MAX_SHARED_FRACTION}: give them different server.gpus, or lower "
                                         f"server.gpu_memory_utilization")


def server_for_url(servers: list[TeacherServer], base_url: str | None) -> TeacherServer | None:
    port = urlparse(base_url or "").port if is_loopback(base_url) else None
    return next((s for s in servers if s.port == port), None) if port else None


# ---- command line: python -m orca_utils serve-teachers -----------------------------------------------------------
def add_args(p) -> None:
    p.add_argument("--profile", default="paper_open_weights")
    p.add_argument("--params-override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--print", dest="print_only", action="store_true", help="print the commands, start nothing")
    p.add_argument("--detach", action="store_true", help="leave the servers running when this command exits")
    p.add_argument("--ready-timeout-s", type=float, default=3600.0)


def main(args) -> int:
    from .config import load_profile
    from .runs import profile_root

    cfgs = load_profile(args.profile, overrides=args.params_override)
    try:
        servers = plan_servers(cfgs)
    except ServerPlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not servers:
        print(f"params/{args.profile}.yaml: no teacher has a base_url on 127.0.0.1: nothing to serve")
        return 0
    for s in servers:
        print(f"# {s.model} for {', '.join(s.params)}")
        print(s.command())
    if args.print_only:
        return 0
    log_dir = profile_root(next(iter(cfgs.values()))) / "servers"
    try:
        procs = launch_servers(servers, log_dir, args.ready_timeout_s)
    except (RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.detach or not procs:
        for port, proc in procs.items():
            print(f"port {port}: process group {proc.pid} (stop it with: kill -- -{proc.pid})")
        return 0
    print("servers ready; Ctrl-C stops them")
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(5.0)
        dead = [port for port, p in procs.items() if p.poll() is not None]
        print(f"error: the server on port(s) {dead} exited: see {log_dir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs.values():
            _stop(proc)

