"""Layer 2: real datasets (real: loading, the resized-image cache, channel statistics), seeded splits and canaries
(splitting), and the provenance of pretrained models (which real indices they saw; the disjointness check)."""
