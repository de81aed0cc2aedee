"""Image folders: one sub-folder per class (or ``train/`` and ``test/`` folders of them).

Only the list of files and labels is made here; the images are decoded by the training
pipeline as they are used (`cnncli.data.loader`), with the one decoder of cnncli
(`cnncli.data.images`), so a folder of any size and of mixed image sizes trains. Each
file gets a cheap check first (its first bytes, `images.sniff`): unreadable files are
skipped with a count and examples (an error with ``strict``). A file reached from two
class folders (a symlink, a hard link) keeps its first label only, and never lands on
both sides of a split; a link (to a file or a folder) from one class folder into another
is skipped (it would relabel that class's images), and a class folder that is a link to
another is an error.

>>> ds = read_image_folder("photos/")           # doctest: +SKIP
>>> ds.class_names, ds.train.kind                # doctest: +SKIP
(['cat', 'dog'], 'files')
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cnncli.data import checks, images, splits
from cnncli.data.dataset import Dataset, DataWarning, Split
from cnncli.data.inputs import IMAGE_EXTENSIONS, image_files, is_image_name, unread_photos
from cnncli.errors import ConfigError, DataError
from cnncli.text import as_text, composed, count, some

#: Threads checking files' first bytes (opening files waits on the disk: threads help
#: even on 2 cores), each a chunk of files at a time: a task per file cost the pool more
#: than the checks. 20,000 JPEGs on 2 cores, seconds cold (warm): a task each on 8
#: threads 2.9-3.2 (1.4-1.8), chunks of 256 on 4 threads 1.5 (0.8), one thread 2.5-2.7.
SNIFF_THREADS = 4
SNIFF_CHUNK = 256
#: Unreadable files named in the warning.
EXAMPLES = 3
#: Unreadable files, more than half of those listed, that are not a few damaged files but
#: the wrong ones (a CSV pointing at another folder): refused. Fewer are skipped.
MOSTLY_UNREADABLE = 5


def detect(path: Path) -> bool:
    """Any folder (the last source asked: its errors say what a folder needs)."""
    return path.is_dir()


def read_image_folder(root: str | os.PathLike, *, strict: bool = False,
                      test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Read a folder with one sub-folder per class (or ``train/`` and ``test/`` ones).

    Without ``train/`` + ``test/``, a seeded, per-class ``test_fraction`` is held out;
    ``test_fraction=1``: every image is a test image and one class folder is enough (what
    `cnncli evaluate --data` asks of photos the model was not trained on; of ``train/`` +
    ``test/``, the test images are, and one class folder in ``train/`` is enough).
    """
    root = Path(root)
    if not 0 < test_fraction <= 1:
        raise ConfigError(f"test fraction must be between 0 and 1, not {test_fraction}",
                          hint="use e.g. 0.2")
    _check_no_validation_folder(root)
    seen: dict[tuple, str] = {}  # a file's (device, inode) -> where it was first used
    if _split_layout(root):
        layout = "train/ and test/"
        _warn_of_folders_beside(root)
        for folder in (root, root / "train", root / "test"):
            _warn_of_loose_images(folder)
        names = _class_names(root / "train", least=1 if test_fraction == 1 else 2)
        _check_known_classes(root / "test", names)
        classes = _class_folders(root, [root / "train", root / "test"], names)
        train = _class_tree(root / "train", names, strict, seen, classes)
        test = _class_tree(root / "test", names, strict, seen, classes)
    else:
        layout = "class folders"
        _check_not_a_lone_split(root)
        names = _class_names(root, least=1 if test_fraction == 1 else 2)
        _warn_of_loose_images(root)
        everything = _class_tree(root, names, strict, seen, _class_folders(root, [root], names))
        train_idx, test_idx = splits.split_off_test(everything.labels, test_fraction, seed)
        train, test = everything.take(train_idx), everything.take(test_idx)
        if len(test) == 0:
            raise DataError(f"{root.name} leaves no test images: each class has a single "
                            "image", file=str(root),
                            hint="give each class at least 2 images (one is held out for "
                                 "testing), or give train/ and test/ folders")
    shown = [as_text(name) for name in names]  # (written in models, plots, JSON)
    checks.names_alike(shown, str(root))
    return Dataset(root.name or root.resolve().name, train, test, shown,
                   f"{root} ({layout}, streamed)",
                   held_out=test_fraction if layout == "class folders" and test_fraction < 1
                   else 0.0)


def class_names(root: str | os.PathLike) -> list[str]:
    """The class names of an image folder, from its sub-folders alone (no file is
    listed: cheap for a folder of a million images); a `DataError` as `read_image_folder`
    gives it for a folder without class folders."""
    root = Path(root)
    _check_no_validation_folder(root)
    if _split_layout(root):
        return _class_names(root / "train")
    _check_not_a_lone_split(root)
    return _class_names(root)


#: Folder names of a held-out split in other tools' layouts (ImageNet's train/ + val/).
VALIDATION_FOLDERS = ("val", "valid", "validation")


def _check_no_validation_folder(root: Path) -> None:
    """A `DataError` for ``train/`` beside ``val/`` (or ``validation/``): read as class
    folders, it would train a classifier of "train" against "val"; beside ``test/``, it
    would be left out without a word."""
    if not (root / "train").is_dir():
        return
    for name in VALIDATION_FOLDERS:
        if (root / name).is_dir():
            raise DataError(
                f"{root.name} has train/ and {name}/ folders; cnncli reads train/ and test/ "
                "(its validation images come from train/, `data.validation_split`)",
                file=str(root / name), hint=f"rename {name}/ to test/" if not (
                    root / "test").is_dir() else f"move {name}/ out of {root.name}, or its "
                "images into train/ or test/")


def _check_not_a_lone_split(root: Path) -> None:
    """A `DataError` for a folder whose one sub-folder is ``train/`` or ``test/`` holding
    class folders (and no image of its own): read as class folders, it would be one class
    named "test"."""
    folders = _sub_folders(root)
    if len(folders) != 1 or folders[0].name not in ("train", "test"):
        return
    lone = folders[0]
    try:
        own_images = any(is_image_name(p.name) and not p.name.startswith(".")
                         for p in lone.iterdir())
        classes = _sub_folders(lone)
    except OSError:
        return  # said when its images are listed
    if own_images or not classes:
        return  # images of its own: a class of that name
    other = "test" if lone.name == "train" else "train"
    name = root.name or root.resolve().name
    raise DataError(f"{name} has a {lone.name}/ folder but no {other}/ folder beside it; "
                    "cnncli reads class folders, or train/ and test/ folders of them",
                    file=str(root), hint=f"point at {lone} itself (its sub-folders are the "
                    f"classes), or add {other}/" + (
                        f" (to evaluate on every image of it: cnncli evaluate RUN --data "
                        f"{lone} --all-images)" if lone.name == "test" else ""))


#: Folders an archive or a tool leaves that are nobody's class (macOS' zip: __MACOSX).
NOT_CLASSES = ("__MACOSX", "__pycache__")


def _sub_folders(root: Path) -> list[Path]:
    """`root`'s sub-folders, hidden ones (.git, .ipynb_checkpoints) and `NOT_CLASSES`
    left out."""
    return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
            and p.name not in NOT_CLASSES]


def _warn_of_folders_beside(root: Path) -> None:
    """Say which folders beside ``train/`` and ``test/`` are left out (a class folder
    put there by mistake would be lost without a word)."""
    others = sorted(p.name for p in _sub_folders(root) if p.name not in ("train", "test"))
    if others:
        shown = some((f"{name}/" for name in others), shown=EXAMPLES)
        warnings.warn(f"{root} has train/ and test/: the folder(s) beside them ({shown}) "
                      "are not read; put a class's folder inside train/ and test/",
                      DataWarning, stacklevel=4)


def _warn_of_loose_images(folder: Path) -> None:
    """Say that images lying beside the class folders are not read (an image's class is
    the folder it is in): left out without a word, they would be missed."""
    loose = sorted(p.name for p in folder.iterdir()  # not hidden: ._x.jpg is macOS' own
                   if is_image_name(p.name) and not p.name.startswith(".") and p.is_file())
    if loose:
        warnings.warn(f"{count(len(loose), 'image')} directly in {folder} "
                      f"({some(loose, shown=EXAMPLES)}) {'is' if len(loose) == 1 else 'are'} "
                      "not read: "
                      "an image's class is the folder it is in; move them into class "
                      "folders", DataWarning, stacklevel=4)


def _split_layout(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def _class_names(root: Path, least: int = 2) -> list[str]:
    folders = sorted(p.name for p in _sub_folders(root))
    checks.names_alike([as_text(f) for f in folders], str(root), warn=False)  # (warned
    # of once, when read)
    if not folders:
        raise DataError(f"{root.name} has no class sub-folders", file=str(root),
                        hint="put the images in one sub-folder per class, e.g. "
                             f"{root}/cat/1.jpg and {root}/dog/2.jpg")
    if len(folders) < least:
        raise DataError(f"{root.name} has only one class folder ({folders[0]})",
                        file=str(root), hint="a classifier needs at least two class "
                        "sub-folders (to evaluate a model on photos of one class: "
                        "cnncli evaluate RUN --data FOLDER --all-images)")
    return folders


def _check_known_classes(tree: Path, names: list[str]) -> None:
    unknown = sorted(p.name for p in _sub_folders(tree) if p.name not in names)
    if unknown:
        same = {composed(name): name for name in names}
        twin = next((same[composed(name)] for name in unknown if composed(name) in same),
                    None)
        raise DataError(f"{tree} has class folder(s) {', '.join(unknown)} that the train "
                        "folder lacks", file=str(tree / unknown[0]), hint=(
                            f"{twin} in train/ is the same name in other Unicode characters "
                            "(an accent written apart, as macOS writes it): rename one so "
                            "both are written alike" if twin else
                            "use the same class folders in train/ and test/"))


def _class_folders(root: Path, trees: list[Path], names: list[str]) -> dict[Path, str]:
    """Where each class folder of `trees` really is (links resolved) -> its name under
    `root` (``train/cat``). A `DataError` for a class folder that is, or leads into, or
    holds another through a link (``zebra -> cat``: cat's images would be learnt as
    both), naming the link. One look-up per folder and parent: ImageNet's 1,000 classes
    cost nothing."""
    found: list[tuple[Path, Path]] = []
    for tree in trees:
        found += [(tree / name, Path(os.path.realpath(tree / name))) for name in names
                  if (tree / name).is_dir()]
    by_real: dict[Path, list[Path]] = {}
    for folder, real in found:
        by_real.setdefault(real, []).append(folder)
    for folder, real in found:
        pairs = [(other, "the same folder as") for other in by_real[real] if other != folder]
        pairs += [(other, "a folder inside") for parent in real.parents
                  for other in by_real.get(parent, [])]
        if pairs:
            _refuse_linked_class(root, folder, *pairs[0])
    return {real: str(folder.relative_to(root)) for folder, real in found}


def _refuse_linked_class(root: Path, folder: Path, other: Path, how: str) -> None:
    """The `DataError` for class folder `folder`, which is `how` (relative to) class
    folder `other`; it names the link that makes it so."""
    if _link_in(other, root) and not _link_in(folder, root):
        folder, other = other, folder
        how = "a folder holding" if how == "a folder inside" else how
    link = _link_in(folder, root) or folder
    shown, target = folder.relative_to(root), other.relative_to(root)
    through = "is a link to" if link == folder else \
        f"is reached through the link {link.relative_to(root)}, to"
    why = (f"its images would be learnt as {folder.name}" if folder.parent == other.parent
           else "the same images would be training and test images")
    raise DataError(f"class folder {shown} {through} {how} class folder {target}: {why}",
                    file=str(link), hint=f"remove the link {link.relative_to(root)}, or "
                                         "give the folder images of its own")


def _link_in(folder: Path, root: Path) -> Path | None:
    """The first link on the way from `root` down to `folder` (`folder` itself
    included), if any."""
    path = root
    for part in folder.relative_to(root).parts:
        path = path / part
        if path.is_symlink():
            return path
    return None


def _class_tree(root: Path, names: list[str], strict: bool, seen: dict[tuple, str],
                classes: dict[Path, str]) -> Split:
    """The readable image files under `root`'s class folders, and their labels; a
    warning for a class left with no image (training refuses it, `checks`)."""
    paths, labels, twice, links, listed, unread = [], [], [], [], [], []
    for label, name in enumerate(names):
        folder = root / name
        files, elsewhere = image_files(folder, classes, unread) if folder.is_dir() \
            else ([], [])
        links += elsewhere
        listed.append(len(files))
        for path in files:
            try:
                stat = path.stat()
                same = (stat.st_dev, stat.st_ino)  # hard links, and links from outside
            except OSError:
                same = (path,)  # unreadable: sniff says so below
            if same in seen:
                twice.append((path, seen[same]))
                continue
            seen[same] = f"{root.name}/{name}"
            paths.append(str(path))
            labels.append(label)
    if links:
        path, target = links[0]
        warnings.warn(f"skipped {count(len(links), 'link')} from one class folder into another in "
                      f"{root} (e.g. {path} leads into {target}): a class's images are the "
                      "ones in its own folder", DataWarning, stacklevel=3)
    if unread and strict:
        raise DataError(f"{root} holds {unread_photos(unread)}", file=str(unread[0]),
                        hint="convert them, or turn strict mode off (data.strict: false) to "
                             "skip them")
    if unread:
        warnings.warn(f"skipped {unread_photos(unread)}", DataWarning, stacklevel=3)
    if twice:
        path, first = twice[0]
        warnings.warn(f"{count(len(twice), 'file')} in {root} {'is' if len(twice) == 1 else 'are'} "
                      "the same file as one already "
                      f"used (e.g. {path} is also in {first}): each is used once, with its "
                      "first label", DataWarning, stacklevel=3)
    paths, labels = readable(paths, labels, root, strict)
    kept = np.bincount(np.array(labels, np.int64), minlength=len(names))
    _warn_of_imageless([(root / names[i], listed[i]) for i in np.flatnonzero(kept == 0)],
                       root, unread)
    return Split(paths, np.array(labels, np.int64), ids=list(paths))


def _warn_of_imageless(folders: list[tuple[Path, int]], root: Path, unread: list[Path]):
    """A warning for each way class folders (with the number of image files listed in
    each) came to give no image: missing, none to read, none left; one for all the
    folders of a way, however many (a test/ folder with 3 of train/'s 200 classes)."""
    unread_in: dict[Path, list[Path]] = {}  # each folder's photos cnncli cannot read
    for photo in unread:
        for parent in photo.parents:
            unread_in.setdefault(parent, []).append(photo)
    ways: dict[str, list[tuple[Path, int]]] = {}
    for folder, listed in folders:
        way = ("missing" if not folder.is_dir() else "no files" if listed == 0 else "none left")
        ways.setdefault(way, []).append((folder, listed))
    for way, found in ways.items():
        none = [p for folder, _ in found for p in unread_in.get(folder, [])]
        if len(found) == 1:
            [(folder, listed)] = found
            said = f"class folder {folder} " + {
                "missing": "is missing",
                "no files": "holds no image files" + (
                    f" cnncli reads: {unread_photos(none)}" if none else ""),
                "none left": f"is left with no image: its {listed} image file(s) could not be "
                             "read or are the same files as images already used"}[way]
        else:
            which = some(folder.name for folder, _ in found)
            said = f"{len(found):,} class folders of {root} " + {
                "missing": f"are missing: {which}",
                "no files": f"hold no image files cnncli reads: {which}" + (
                    f" ({unread_photos(none)})" if none else ""),
                "none left": f"are left with no image: {which}: their image files could not "
                             "be read or are the same files as images already used"}[way]
        warnings.warn(said, DataWarning, stacklevel=4)


def readable(paths: list[str], labels: list[int], root: Path, strict: bool):
    """Drop files whose first bytes are not an image (`images.sniff`), saying so."""
    chunks = [paths[i:i + SNIFF_CHUNK] for i in range(0, len(paths), SNIFF_CHUNK)]
    with ThreadPoolExecutor(SNIFF_THREADS) as pool:
        problems = [why for chunk in pool.map(lambda c: [images.sniff(p) for p in c], chunks)
                    for why in chunk]
    bad = [(p, why) for p, why in zip(paths, problems, strict=True) if why]
    if bad and strict:
        path, why = bad[0]
        raise DataError(f"{why}", file=path,
                        hint=f"remove it ({count(len(bad), 'such file')} in {root}), or turn "
                             "strict mode off (data.strict: false) to skip them")
    if len(bad) * 2 > len(paths) and len(bad) >= MOSTLY_UNREADABLE:  # the wrong files
        examples = "; ".join(f"{p}: {why}" for p, why in bad[:EXAMPLES])
        raise DataError(f"{len(bad)} of the {len(paths)} image files in {root} cannot be "
                        f"read, e.g. {examples}", file=str(root),
                        hint="more than half: the wrong folder, or a copy cut short? Check "
                             "where the files are" + (" (the CSV's paths are relative to "
                                                      "it)" if root.suffix.lower() == ".csv"
                                                      else ""))
    if bad:
        examples = "; ".join(f"{p}: {why}" for p, why in bad[:EXAMPLES])
        warnings.warn(f"skipped {count(len(bad), 'unreadable file')} in {root}, e.g. {examples}",
                      DataWarning, stacklevel=4)
    keep = [i for i, why in enumerate(problems) if not why]
    if not keep:
        raise DataError(f"{root.name} holds no readable images", file=str(root),
                        hint=f"cnncli reads files ending in {', '.join(IMAGE_EXTENSIONS)} "
                             "(or with no extension, when an image's)")
    return [paths[i] for i in keep], [labels[i] for i in keep]
