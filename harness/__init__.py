"""What the tests and the benchmarks share to run things for real. Neither `tests` nor `comparison`
imports the other; both import this. Not part of the installed package (setup.cfg lists packages).

- `net`: loopback ports (`free_port`, `accepts`, `wait_for_port`), `wait_until` a thing is ready,
  `stop_process` (SIGTERM, then SIGKILL), `reset` a socket with a RST.
- `servers`: `UvicornServer` (app, env, args, workers, CPU placement, log level, cProfile), `health`,
  the log's `errors_in`.
- `services`: redis-server and PostgreSQL in temp dirs, Chromium's path, `Unavailable`, `in_ci`.
- `rawws`: WebSocket clients on a bare socket: `StalledClient` (never reads) and the asyncio
  `RawWebSocket` the load generator drives.
"""
