"""comparison/REPORT.md and comparison/charts/*.png from the result files in comparison/results/.

Run from the repository root after the measurements (``make compare`` runs them all)::

    python -m comparison.bench            # bench.json
    python -m comparison.hub_bench        # hub_bench.json
    python -m comparison.rooms_bench      # rooms_bench.json
    python -m comparison.token_bench      # token_bench.json
    python -m comparison.cluster_bench    # cluster_bench.json
    python -m comparison.floor_bench      # floor_bench.json
    python -m comparison.idle_bench       # idle_bench.json
    python -m comparison.startup_bench    # timing.json
    python -m comparison.measure          # environment.json, loc.json, packages.json, contract.json
    pytest tests/parity --junitxml=comparison/results/parity.xml
    python -m comparison.report [--results DIR] [--out PATH] [--no-charts]

Rendering reads those files and comparison/notes.md (the one hand-written section, "What costs
what", included verbatim) and nothing else: the same files give the same REPORT.md, byte for
byte. One module per section (parity, targets, bench, hub, rooms, tokens, loc, packages, timing,
notes, idle), the Markdown helpers in `markdown`, the charts in `charts`, the whole document in
`document`.
"""
