"""Test helpers (``tests/`` is on ``sys.path`` under pytest, as for ``conftest``): the Toloka
stand-in and the one tiny run config the end-to-end tests share. Not part of the package."""
