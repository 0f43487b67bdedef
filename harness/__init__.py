"""What the tests and the benchmarks share to run things for real: uvicorn servers on free
loopback ports, the engines they broadcast through, raw clients. Neither `tests` nor
`comparison` imports the other; both import this. Not part of the installed package."""
