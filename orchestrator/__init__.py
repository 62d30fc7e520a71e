"""orch: declarative pipelines with Make-like semantics for shell, template and LLM steps."""

__version__ = "0.1.0"
