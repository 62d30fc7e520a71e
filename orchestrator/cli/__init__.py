"""The top layer: the `orch` commands and everything they print (progress lines, the live view,
the text of runs), and the JSON schema files."""
