"""The bottom layer: the exception tree, declared paths, signals and did-you-mean. Imports
nothing else of orch."""
