"""What orch keeps on disk: digests, file hashes, the lock file, the cache, safe writes and the
`.orch/` layout. Knows nothing of the pipeline language."""
