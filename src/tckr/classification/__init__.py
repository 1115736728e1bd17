"""Layer 5: MobileNetV3 classifiers. classifiers (build, save, load), batches/augment/loop/checkpoints/inference (the
pieces of training and prediction), train (fit, teacher, students), evaluate, ablation."""
