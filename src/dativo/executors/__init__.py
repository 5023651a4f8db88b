"""Where splits run.

- :mod:`.local` — threads in this process (the default): at most ``parallelism`` splits at once; the first
  failure cancels the others.

An executor only runs the engine's :class:`~dativo.runs.SplitRun` tasks; planning and the commit stay with
the engine, so every executor keeps the same two-phase guarantees.
"""
