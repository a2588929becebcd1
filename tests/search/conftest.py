"""The tiny store of the trainer's tests, shared by the search tests."""

from tests.training.conftest import tiny_data_dir  # noqa: F401  (a session fixture)
