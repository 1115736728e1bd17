"""Layer 7: what a reader sees. plots (every figure from result files), canvas (drawing helpers), phase_figures (the
figures the phase notebooks show), report (result folders and the README's generated blocks), release."""
