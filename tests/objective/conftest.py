"""The tiny store fixture of the trainer's tests, shared with the config tests."""

from tests.training.conftest import tiny_data_dir  # noqa: F401
