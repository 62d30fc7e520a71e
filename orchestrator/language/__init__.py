"""The pipeline file: YAML source with locations, pydantic models, the loader's messages,
sandboxed Jinja templates and what they reach, settings, and v2 migration."""
