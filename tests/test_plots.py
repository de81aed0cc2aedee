"""`plots` writes valid PNG files atomically, whatever parts of the data are missing."""

import numpy as np
import pytest
from PIL import Image

from cnncli import plots
from cnncli.errors import ConfigError, WriteError
from cnncli.plots import run_figures

HISTORY = [
    {"epoch": 1, "loss": 1.2, "accuracy": 0.55, "val_loss": 1.0, "val_accuracy": 0.6},
    {"epoch": 2, "loss": 0.7, "accuracy": 0.75, "val_loss": 0.8, "val_accuracy": 0.7},
    {"epoch": 3, "loss": 0.5, "accuracy": 0.82, "val_loss": 0.7, "val_accuracy": 0.74},
]


def assert_png(path):
    """`path` is the only file in its folder and opens as a non-empty PNG."""
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp files left
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode in ("RGB", "RGBA")
        assert image.width > 100 and image.height > 100
        return image.size


#: matplotlib's first two colours: a panel's first curve (training, if recorded) and second.
TRAINING, VALIDATION = (31, 119, 180), (255, 127, 14)


def curves_in(path, half: int) -> set[str]:
    """The curves drawn in the left (0) or right (1) panel, by their colour: "training"
    is the panel's first colour, "validation" its second."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    width = pixels.shape[1] // 2
    panel = pixels[:, half * width:(half + 1) * width]
    found = set()
    for name, colour in (("training", TRAINING), ("validation", VALIDATION)):
        if (np.abs(panel - colour).sum(axis=-1) < 30).sum() > 50:
            found.add(name)
    return found


def test_training_curves_draw_training_and_validation_in_both_panels(tmp_path):
    path = plots.training_curves(HISTORY, tmp_path / "curves.png")
    assert path == tmp_path / "curves.png"
    assert_png(path)
    assert curves_in(path, 0) == curves_in(path, 1) == {"training", "validation"}


def test_training_curves_work_without_validation_keys(tmp_path):
    history = [{"loss": row["loss"], "accuracy": row["accuracy"]} for row in HISTORY]
    path = plots.training_curves(history, tmp_path / "curves.png")
    assert_png(path)
    assert curves_in(path, 0) == curves_in(path, 1) == {"training"}


def test_training_curves_work_with_only_some_keys_in_some_epochs(tmp_path):
    history = [{"loss": 1.0}, {"loss": 0.8, "val_loss": None}, {"val_accuracy": np.float32(0.5)}]
    path = plots.training_curves(history, tmp_path / "curves.png")
    assert_png(path)
    assert curves_in(path, 0) == curves_in(path, 1) == {"training"}  # one curve each


def stage_line_columns(path) -> list[int]:
    """The pixel columns of the picture at `path` holding a vertical run of the stage
    line's grey (more than 40 pixels of it)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    grey = np.abs(pixels - (127, 127, 127)).sum(axis=-1) < 40
    return [int(c) for c in np.nonzero(grey.sum(axis=0) > 40)[0]]


def test_the_curves_of_a_fine_tuning_run_mark_where_its_second_stage_starts(tmp_path):
    five = HISTORY + [{"epoch": 4, "loss": 0.4, "accuracy": 0.85},
                      {"epoch": 5, "loss": 0.3, "accuracy": 0.9}]
    at_3 = [row | {"stage": 1 if row["epoch"] < 3 else 2} for row in five]
    at_4 = [row | {"stage": 1 if row["epoch"] < 4 else 2} for row in five]
    one_stage = [row | {"stage": 1} for row in five]
    lines_3 = stage_line_columns(plots.training_curves(at_3, tmp_path / "a" / "c.png"))
    lines_4 = stage_line_columns(plots.training_curves(at_4, tmp_path / "b" / "c.png"))
    assert stage_line_columns(plots.training_curves(five, tmp_path / "c" / "c.png")) == []
    assert stage_line_columns(plots.training_curves(one_stage, tmp_path / "d" / "c.png")) == []
    with Image.open(tmp_path / "a" / "c.png") as image:
        half = image.width // 2
    for lines in (lines_3, lines_4):  # one line in each panel
        assert [c for c in lines if c < half] and [c for c in lines if c > half]
    # a stage starting an epoch later: its lines an epoch further right, in both panels
    assert min(lines_4) > max(c for c in lines_3 if c < half)
    assert min(c for c in lines_4 if c > half) > max(lines_3)


def test_the_curves_of_a_one_epoch_run_have_one_whole_tick(tmp_path, monkeypatch):
    """One point: matplotlib's axis around it had ticks 0.96, 0.98, ..., 1.04."""
    drawn = []
    real = run_figures.save
    monkeypatch.setattr(run_figures, "save", lambda fig, path: drawn.append(fig) or
                        real(fig, path))
    plots.training_curves(HISTORY[:1], tmp_path / "c.png")
    for ax in drawn[0].axes:
        assert list(ax.get_xticks()) == [1]


def test_training_curves_create_missing_folders(tmp_path):
    assert_png(plots.training_curves(HISTORY, tmp_path / "a" / "b" / "curves.png"))


def test_plot_replaces_an_existing_file(tmp_path):
    path = tmp_path / "curves.png"
    path.write_bytes(b"old")
    plots.training_curves(HISTORY, path)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert_png(path)


def test_unwritable_target_is_a_config_error_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "plot.png"
    target.mkdir()  # a folder where the file should go: the final rename fails
    with pytest.raises(ConfigError, match="cannot write the plot: Is a directory. Hint: "
                                          "choose a writable output folder"):
        plots.training_curves(HISTORY, target)
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
    assert target.is_dir()


def test_a_full_disk_is_a_write_error_not_the_commands(tmp_path, monkeypatch):
    import errno
    import os

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(plots.saving, "write_atomic", full)
    with pytest.raises(WriteError, match="No space left on device. Hint: free some disk "
                                         "space") as caught:
        plots.training_curves(HISTORY, tmp_path / "plot.png")
    assert caught.value.exit_code == 3


def test_a_picture_is_written_in_the_format_its_name_says(tmp_path):
    panel = [("red", np.full((20, 30, 3), (200, 0, 0), np.uint8))]
    for name, data_starts, pil_format in (("x.jpg", b"\xff\xd8", "JPEG"),
                                          ("x.JPEG", b"\xff\xd8", "JPEG"),
                                          ("x.png", b"\x89PNG", "PNG")):
        path = plots.pixel_panels(panel, tmp_path / name)
        assert path.read_bytes().startswith(data_starts)
        with Image.open(path) as image:
            assert image.format == pil_format
    assert plots.pixel_panels(panel, tmp_path / "x.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in plots.pixel_panels(panel, tmp_path / "x.svg").read_bytes()


def test_a_title_wider_than_its_image_widens_the_picture_and_is_drawn_whole(tmp_path):
    title = "mobilenetv2_1.00_224/block_16_project_BN: 7x7x320 " * 2
    image = np.zeros((20, 30, 3), np.uint8)
    with Image.open(plots.pixel_panels([(title, image)], tmp_path / "x.png")) as png:
        pixels = np.asarray(png.convert("RGB"))
    inked = np.nonzero((pixels[:plots.PANEL_TITLE] < 128).any(axis=(0, 2)))[0]
    assert pixels.shape[1] > 400  # not 30 + 2 x 8
    assert inked[-1] < pixels.shape[1] - plots.PANEL_MARGIN // 2  # its end is inside
    np.testing.assert_array_equal(pixels[26:46, 8:38], image)  # the image where it was


def test_a_diagram_writes_the_text_across_a_short_wide_box_not_under_the_diagram(tmp_path):
    # Two branches in one column, each too short for its text upright: written below,
    # the two texts fell on each other.
    boxes = [plots.DiagramBox(0, 0, 10, 2, "#ff0000", text="7x7x256"),
             plots.DiagramBox(0, 3, 10, 2, "#ff0000", text="7x7x320")]
    with Image.open(plots.box_diagram(boxes, [], tmp_path / "d.png")) as png:
        pixels = np.asarray(png.convert("RGB")).astype(int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)
    dark = pixels.sum(axis=-1) < 200
    rows = np.nonzero(red.any(axis=1))[0]
    bands = np.split(rows, np.nonzero(np.diff(rows) > 1)[0] + 1)
    assert len(bands) == 2  # the two boxes
    for band in bands:
        assert dark[band[0] + 3:band[-1] - 2].any(), "no text on the box"
    assert not dark[rows[-1] + 5:].any(), "text under the diagram"


@pytest.mark.parametrize("name", ["x.gif", "x.pn", "picture"])
def test_a_name_without_a_picture_suffix_is_refused_and_nothing_written(tmp_path, name):
    with pytest.raises(ConfigError, match="cannot write a picture") as caught:
        plots.training_curves(HISTORY, tmp_path / name)
    assert ".png, .jpg, .jpeg, .pdf, .svg" in caught.value.hint
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_the_folder_should_be_is_named(tmp_path):
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(ConfigError, match="'.*afile' is a file"):
        plots.training_curves(HISTORY, tmp_path / "afile" / "sub" / "curves.png")
    assert (tmp_path / "afile").read_text() == "mine"


def test_confusion_matrix_for_ten_classes(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 5, (10, 10)) + np.diag(np.full(10, 50))
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"]
    path = plots.confusion_matrix(counts.tolist(), names, tmp_path / "cm.png")
    assert_png(path)
    red = cell_colours(path, 10)[..., 0]  # "Blues": the larger the share, the less red
    diagonal = np.eye(10, dtype=bool)
    assert red[diagonal].max() < 100 < 200 < red[~diagonal].min()


def cell_colours(path, n: int) -> np.ndarray:
    """The colour near the top-left corner of each cell of an n x n heat map, found from
    the frame of the plot (its longest dark lines)."""
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    dark = pixels.sum(axis=-1) < 150
    top, bottom = sorted(np.argsort(dark.sum(axis=1))[-2:])
    columns = dark[top:bottom].sum(axis=0)
    frame = np.flatnonzero(columns > 0.95 * (bottom - top))
    left, right = frame.min(), frame.max()
    ys = top + (np.arange(n) + 0.2) * (bottom - top) / n
    xs = left + (np.arange(n) + 0.2) * (right - left) / n
    return np.array([[pixels[int(y), int(x)] for x in xs] for y in ys])


def pixels_near(path, colour, tolerance=30) -> int:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB")).astype(int)
    return int((np.abs(pixels - colour).sum(axis=-1) < tolerance).sum())


def test_names_with_dollar_signs_are_drawn_as_text(tmp_path):
    """Matplotlib reads "$...$" as a formula and "\\foo" inside one crashed it."""
    names = ["dollar$\\foo$", "$5 note", "plain"]
    path = plots.confusion_matrix([[3, 1, 0], [0, 2, 0], [1, 0, 4]], names,
                                  tmp_path / "a" / "cm.png")
    assert_png(path)
    grid = plots.pixel_panels([("net$\\foo$: 33%", np.zeros((128, 128, 3), np.uint8))],
                              tmp_path / "b" / "panel.png")
    assert_png(grid)


def test_confusion_matrix_with_counts_instead_of_percentages(tmp_path):
    counts = [[5, 1, 0], [0, 0, 0], [2, 0, 3]]  # class 1 has no examples
    assert_png(plots.confusion_matrix(counts, ["a", "b", "c"], tmp_path / "cm.png",
                                      normalize=False))


def test_confusion_matrix_grows_for_a_hundred_classes(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3, (100, 100)) + np.diag(np.full(100, 20))
    names = [f"class_{i}" for i in range(100)]
    small = assert_png(plots.confusion_matrix(counts[:10, :10], names[:10],
                                              tmp_path / "small" / "cm.png"))
    large = assert_png(plots.confusion_matrix(counts, names, tmp_path / "large" / "cm.png"))
    assert large[0] > 2 * small[0]


def test_confusion_matrix_rejects_a_shape_that_does_not_match_the_names(tmp_path):
    with pytest.raises(ValueError, match="expected"):
        plots.confusion_matrix([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "cm.png")


def test_image_grid_with_one_channel_images(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (11, 28, 28, 1), dtype=np.uint8)
    titles = ["true: Shirt\npred: T-shirt/top 97%"] * 11
    assert_png(plots.image_grid(images, titles, tmp_path / "grid.png"))


def test_image_grid_with_three_channel_images(tmp_path):
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    for i in range(3):
        images[i, ..., i] = 255  # pure red, green, blue
    path = plots.image_grid(images, ["a", "b", "c"], tmp_path / "grid.png", columns=2)
    assert_png(path)
    for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255)):
        assert pixels_near(path, colour, tolerance=10) >= 32 * 32


def test_misclassified_images_with_long_class_names_keep_their_size(tmp_path):
    """Names of 200 characters wrapped into titles of ten lines: the images shrank to
    10 pixels, then matplotlib's layout collapsed."""
    import warnings

    from cnncli.plots.run_figures import misclassified_title

    images = np.zeros((16, 28, 28, 3), dtype=np.uint8)
    images[..., 0] = 255  # red
    short = plots.image_grid(images, [misclassified_title("a", "b", 0.5)] * 16,
                             tmp_path / "short.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (the layout's collapse is a warning)
        long = plots.image_grid(images, [misclassified_title("a" * 200, "b" * 200, 0.5)] * 16,
                                tmp_path / "long.png")
    assert pixels_near(long, (255, 0, 0), 10) >= 0.7 * pixels_near(short, (255, 0, 0), 10)


def test_image_grid_with_no_images_still_writes_a_png(tmp_path):
    images = np.zeros((0, 28, 28, 1), dtype=np.uint8)
    assert_png(plots.image_grid(images, [], tmp_path / "grid.png"))


def test_image_grid_rejects_images_that_are_not_uint8(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        plots.image_grid(np.zeros((1, 8, 8, 1), dtype=np.float32), ["x"], tmp_path / "g.png")


def test_misclassified_title_names_both_classes_and_confidence():
    assert plots.misclassified_title("Shirt", "T-shirt/top", 0.968) == \
        "true: Shirt\npred: T-shirt/top 97%"


def test_a_misclassified_title_breaks_between_its_classes_never_inside_a_name():
    assert plots.misclassified_title("shirt / top", "new\nline", 0.5).split("\n") == [
        "true: shirt / top", "pred: new\\nline 50%"]


def test_confusion_axes_tell_apart_long_names_alike_at_the_start():
    from cnncli.plots import run_figures

    labels = run_figures._axis_labels(["Sony Alpha 7 IV mirrorless camera body - front view",
                                       "Sony Alpha 7 IV mirrorless camera body - back view"])
    assert len(set(labels)) == 2 and all(len(label) <= 18 for label in labels)


def test_control_characters_in_names_are_drawn_escaped_not_as_missing_glyphs(tmp_path):
    import warnings

    names = ["\x1b[31mred", "plain"]
    panel = np.zeros((8, 8, 3), np.uint8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plots.confusion_matrix(np.array([[3, 1], [0, 4]]), names, tmp_path / "c.png")
        plots.pixel_panels([("layer \x1b[2J", panel)], tmp_path / "p.png")
        plots.image_grid(np.zeros((1, 8, 8, 1), np.uint8), ["true: \x07bell"],
                         tmp_path / "g.png")
    assert [str(w.message) for w in caught if "Glyph" in str(w.message)] == []
    assert run_figures._short("\x1b[31mred") == "\\x1b[31mred"


def test_characters_the_font_lacks_are_said_once_with_the_picture(tmp_path):
    """Class names in Chinese gave four of matplotlib's warnings per picture."""
    import warnings

    from matplotlib.figure import Figure

    from cnncli.plots.saving import save

    fig = Figure()
    ax = fig.add_subplot()
    ax.set_title("猫 数 猫")
    ax.set_xticks([0, 1], ["猫", "数"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save(fig, tmp_path / "confusion.png")
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'confusion.png'}: the picture's font has no '猫数': those characters "
        "are drawn as boxes (the text and JSON output have them)"]


def test_pixel_panels_titled_in_characters_the_font_lacks_say_it_once(tmp_path):
    """Measuring a title's width gave matplotlib's own warning beside cnncli's."""
    import warnings

    from cnncli.plots import pixels

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels.pixel_panels([("猫", np.zeros((8, 8, 3), np.uint8))], tmp_path / "p.png")
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'p.png'}: the picture's font has no '猫': those characters are drawn "
        "as boxes (the text and JSON output have them)"]


def test_confusion_cells_never_round_a_share_to_a_certainty_it_is_not(tmp_path, monkeypatch):
    """996 of 1,000 right is not 100%, and the 4 mistakes are not 0%; a share that is
    exactly that (no mistake) still is."""
    from cnncli.plots import run_figures

    figures = []
    monkeypatch.setattr(run_figures, "save", lambda fig, path: figures.append(fig) or path)
    plots.confusion_matrix([[996, 4], [0, 10]], ["a", "b"], tmp_path / "cm.png")
    cells = [t.get_text().split("\n")[0] for t in figures[0].axes[0].texts]
    assert cells == [">99%", "<1%", "0%", "100%"]
