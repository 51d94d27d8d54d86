"""Side-by-side measurements of Flask-Store against what users would pick instead.

Run ``python -m benchmarks`` (or ``make bench``); ``--help`` lists the options. Every
contender is a minimal Flask app doing the same job (save an upload under a unique name,
serve it back); all of them run in one process, interleaved, for several rounds, and the
report quotes medians and ratios to plain Flask. Importing this package installs and starts
nothing: servers and temporary folders exist only while a run is in progress.
"""
