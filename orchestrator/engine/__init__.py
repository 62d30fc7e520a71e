"""A build: the rebuild decision, the workspace, the pure scheduler, the runner, lock writes, the
build lock, and what a killed build left behind."""
