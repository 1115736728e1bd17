"""Layer 1 (bottom): files and checksums (io), the project's folders (paths), typed settings (config, schema), the dataset
registry, progress lines, shards, papermill execution. Imports no other tckr layer."""
