"""Layer 6: privacy. attacks, metrics and auditing are pure mathematics (no torch, no run folders); mia (classifier
shadows, target attacks), attack_results (the one writer of attack results), pipelines and pipeline_attacks (shadow
pipelines), generator_mia and synthetic_mia (generator and synthetic-set attacks), audit, ledger (every release
point's rows and the one home of the headline attack)."""
