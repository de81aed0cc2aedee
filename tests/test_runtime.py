"""How cnncli imports Keras (`cnncli.runtime`): quietly, checked, and without what it
does not use."""

import subprocess
import sys


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_keras_is_imported_without_matplotlib_which_imports_later_as_usual():
    out = run_python("import sys\n"
                     "from cnncli.runtime import import_keras\n"
                     "import_keras()\n"
                     "print('after keras', 'matplotlib' in sys.modules)\n"
                     "import matplotlib.pyplot\n"
                     "print('then', 'matplotlib.pyplot' in sys.modules)\n")
    assert out.split("\n")[:2] == ["after keras False", "then True"]


def test_matplotlib_imported_before_keras_is_left_as_it_was():
    out = run_python("import matplotlib.pyplot\n"
                     "from cnncli.runtime import import_keras\n"
                     "import_keras()\n"
                     "from keras.src.visualization import plot_image_gallery\n"
                     "print(plot_image_gallery.plt is matplotlib.pyplot)\n")
    assert out.strip() == "True"


def test_threads_silencing_stderr_at_once_leave_it_as_it_was():
    """Two exported models loaded at once in a service's threads: the one ending last put
    back the silence the other had begun, and standard error stayed /dev/null."""
    import os
    import threading

    from cnncli.runtime import stderr_silenced

    before = os.fstat(2)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first():
        with stderr_silenced():
            first_in.set()
            second_in.wait()
        first_out.set()

    def second():
        first_in.wait()
        with stderr_silenced():
            second_in.set()
            first_out.wait()
            assert os.fstat(2).st_ino != before.st_ino  # still silent while one is inside

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_silencing_stderr_that_fails_keeps_no_descriptor_open(monkeypatch):
    import builtins
    import os

    import pytest

    from cnncli import runtime

    def failing(*args, **kwargs):
        raise OSError("no /dev/null here")

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(builtins, "open", failing)
    for _ in range(3):
        with pytest.raises(OSError), runtime.stderr_silenced():
            pass
    monkeypatch.undo()
    assert len(os.listdir("/proc/self/fd")) == before
    with runtime.stderr_silenced():  # and it still works
        pass


def test_without_a_home_folder_keras_and_the_caches_go_to_tmp(monkeypatch):
    """A container's user with neither HOME nor a passwd entry: every command that
    reached Keras' or the disk cache's folder failed as a bug (Path.home() raised), and
    TensorFlow made a folder named "~" in the working folder."""
    import os
    from pathlib import Path

    from cnncli import runtime
    from cnncli.data import loader

    def homeless():
        raise RuntimeError("Could not determine home directory.")

    for name in ("KERAS_HOME", "CNNCLI_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(Path, "home", homeless)
    assert (runtime.keras_home(), loader.cache_dir()) == (Path("/tmp/.keras"),
                                                        Path("/tmp/.cache/cnncli"))
    monkeypatch.setenv("XDG_CACHE_HOME", "/vol/cache")
    assert loader.cache_dir() == Path("/vol/cache/cnncli")
    code = "import os; os.path.expanduser = lambda p: p; import cnncli; " \
           "print(os.environ['KERAS_HOME'])"
    env = {k: v for k, v in os.environ.items() if k != "KERAS_HOME"}
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env).stdout == "/tmp/.keras\n"
