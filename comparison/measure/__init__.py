"""What the report needs from this checkout and this machine, measured once into comparison/results/.

``python -m comparison.measure`` writes:

- environment.json: the machine (CPU model, logical CPUs, memory), the git commit, `make run`'s defaults
- loc.json: lines of code per demo, ours and the FastAPI twin's
- packages.json: each side's dependency closure, with versions and sizes
- contract.json: the behaviour contract's part A groups and part B rows (docs/behaviour.md)
"""
