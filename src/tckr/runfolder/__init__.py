"""Layer 3: a run folder. runs (the run: settings, splits, canaries), environment (threads, devices, seeds, the
environment record), artifacts (every path and reader of a run folder), synthetic (the synthetic-set store), phases
(the phase list and what each phase reads and writes), lock (one process per run folder), figure_inputs."""
