"""Teacher client throughput against a rate-limited loopback server, next to the plain sequential loop.

The local OpenAI-compatible server answers every request after `--latency-ms` (default 100 ms) and answers 429
(with Retry-After) above `--rpm` requests per minute, counted over a sliding window of `--window-s` seconds (a
short window so the limit bites within a short run). The teacher client (orca_utils.teacher, paced to the same
rpm) and a plain sequential loop (one `openai` call after the other) each send `--requests` uncached requests.
Reported: achieved requests/s as a fraction of the limit (goal: >= 0.95 for the client). Last line: one JSON object.

    .venv/bin/python benchmarks/teacher_throughput.py [--requests 300] [--rpm 1200] [--latency-ms 100]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from orca_utils.backends.endpoints import openai_client
from orca_utils.backends.local_server import Completion, serve_openai_compatible
from orca_utils.schemas import TeacherEndpointParams
from orca_utils.teacher import ChatRequest, complete_chats


class Instant:
    def complete(self, messages, max_tokens, temperature, stop):
        return Completion("ok", "stop", 10, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--rpm", type=float, default=1200.0)
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument("--window-s", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    limit_rps = args.rpm / 60.0
    figures: dict = {"requests": args.requests, "rpm_limit": args.rpm, "latency_ms": args.latency_ms,
                     "window_s": args.window_s, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp, \
            serve_openai_compatible({"m": Instant()}, latency_s=args.latency_ms / 1000.0,
                                    rpm_limit=args.rpm, rate_window_s=args.window_s) as base_url:
        # Client: paced to the limit, cache in a temp dir, so every request is really sent.
        reqs = [ChatRequest(f"r{i}", "m", [{"role": "user", "content": f"query {i}"}], 8) for i in range(args.requests)]
        endpoint = TeacherEndpointParams(base_url=base_url, concurrency=args.concurrency,
                                         requests_per_minute=args.rpm, tokens_per_minute=1e9, max_retries=8,
                                         backoff_base_s=0.1)
        t0 = time.perf_counter()
        run = complete_chats(reqs, endpoint, Path(tmp) / "cache.sqlite", progress=False)
        client_s = time.perf_counter() - t0
        ok = run.status_counts()["ok"]
        send_s = run.stats["wall_s"]          # first request out to last answer in (no client/cache set-up)
        figures.update(client_ok=ok, client_wall_s=round(send_s, 3), client_rps=round(ok / send_s, 3),
                       client_end_to_end_s=round(client_s, 3), client_end_to_end_rps=round(ok / client_s, 3),
                       client_429=run.stats["rate_limited"])
        print(f"teacher client : {ok}/{args.requests} ok in {send_s:.2f}s of sending = {ok / send_s:.2f} req/s "
              f"({ok / send_s / limit_rps:.1%} of the {limit_rps:.1f} req/s limit; end to end with set-up "
              f"{client_s:.2f}s = {ok / client_s / limit_rps:.1%}), 429s: {run.stats['rate_limited']}")
        time.sleep(args.window_s)   # let the server's window drain
        client = openai_client(base_url, "OPENAI_API_KEY", max_retries=0)   # loopback: no key needed
        n_seq = min(args.requests, 50)
        t0 = time.perf_counter()
        for i in range(n_seq):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"seq {i}"}],
                                           max_tokens=8)
        seq_s = time.perf_counter() - t0
        figures.update(sequential_requests=n_seq, sequential_wall_s=round(seq_s, 3),
                       sequential_rps=round(n_seq / seq_s, 3))
        print(f"sequential loop: {n_seq} requests in {seq_s:.2f}s = {n_seq / seq_s:.2f} req/s "
              f"({n_seq / seq_s / limit_rps:.1%} of the limit)")
    figures.update(limit_rps=round(limit_rps, 3),
                   client_fraction_of_limit=round(figures["client_rps"] / limit_rps, 4),
                   sequential_fraction_of_limit=round(figures["sequential_rps"] / limit_rps, 4),
                   speedup_vs_sequential=round(figures["client_rps"] / figures["sequential_rps"], 2),
                   goal_fraction=0.95)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
