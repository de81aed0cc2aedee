"""Shared test set-up: quiet TensorFlow, a seeded Keras, and helpers to write files."""

import os
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402


@pytest.fixture
def write(tmp_path):
    """write("name.yaml", text) -> path, with the text dedented."""

    def _write(name: str, text: str):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


@pytest.fixture(autouse=True, scope="module")
def _free_models_after_each_module():
    """A test process runs many modules: free each module's models (VGGs among them)."""
    yield
    import gc
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()


@pytest.fixture(autouse=True)
def _float32_after_each_test():
    """Training sets Keras' global dtype policy (mixed_bfloat16 where auto picks it): put it
    back, so a test never runs in the precision an earlier test left behind."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].config.set_dtype_policy("float32")


@pytest.fixture(autouse=True)
def _errors_exit_through_python(monkeypatch):
    """`main()` run inside pytest's own process ends an error with `SystemExit`, not at
    once with os._exit (`cnncli.cli.app.EXIT_AT_ONCE`), which would end pytest: the tests
    of exiting at once run cnncli in a process of its own."""
    from cnncli.cli import app

    monkeypatch.setattr(app, "EXIT_AT_ONCE", False)


def pytest_collection_modifyitems(config, items):
    """Modules of slow end-to-end tests run first: those with only slow tests (minutes
    each), then those with some; whole modules, so a module's fixtures are made once.
    `make test` runs two worker processes a module at a time (pytest-xdist's loadscope,
    in this order): started early, the long ones end with the rest, not after them."""
    def module(item):
        return item.nodeid.split("::")[0]

    slow, fast = set(), set()
    for item in items:
        (slow if item.get_closest_marker("slow") else fast).add(module(item))

    def rank(item):  # 0: only slow tests, 1: some, 2: none
        name = module(item)
        return 0 if name not in fast else 1 if name in slow else 2

    items.sort(key=rank)
