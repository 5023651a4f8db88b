"""Where splits run.

- :mod:`.local` — threads in this process (the default): at most ``parallelism`` splits at once; the first
  failure cancels the others.
- :mod:`.ray` — one Ray task per split across a cluster (``executor: ray``); the driver merges the results
  of each task's final attempt and the engine commits once.
- :mod:`.task` — a split as picklable data (:class:`~.task.SplitTask`), what a worker sends back
  (:class:`~.task.SplitResult`) and how a worker runs it (:func:`~.task.execute`).
- :mod:`.reach` — which places of a job only the driver's disk holds (refused under ``executor: ray``).

An executor only runs the engine's splits; planning, preparing the target and the commit stay with the
engine, so every executor keeps the same two-phase guarantees.
"""
