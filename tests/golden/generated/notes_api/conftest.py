"""Root conftest: pytest puts this folder on sys.path, so the tests can import notes_api."""
