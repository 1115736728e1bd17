"""Layer 8: running the study. study (every phase notebook headless, done-records, resuming) and launch (shards on
SLURM or local processes)."""
