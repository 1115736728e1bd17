"""Layer 4: the generator side of TCKR. captions and prompt_files (captioners and the prompt-file formats), generator
(diffusers pipelines and LoRA files), lora (fine-tuning on D), synthesis (the synthetic set), pretrain (the mini
tier's base generator)."""
