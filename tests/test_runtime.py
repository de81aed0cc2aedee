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
