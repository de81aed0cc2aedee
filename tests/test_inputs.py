"""Tests for cnncli.data.inputs: expanding predict inputs, and fetching URLs from a local server."""

from __future__ import annotations

import io
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cnncli.data.inputs import expand_inputs, fetch_url, is_image_name
from cnncli.errors import DataError


@pytest.fixture
def photos(tmp_path):
    """photos/{b.jpg, a.PNG, notes.txt, .hidden.jpg, sub/c.webp, .cache/d.jpg}."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / ".cache").mkdir()
    for rel in ["b.jpg", "a.PNG", "notes.txt", ".hidden.jpg", "sub/c.webp", ".cache/d.jpg"]:
        (root / rel).write_bytes(b"x")
    return root


def rel(paths, base):
    return [os.path.relpath(p, base) for p in paths]


# --- expand_inputs --------------------------------------------------------------------


def test_a_file_is_kept_as_given(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"x")
    assert expand_inputs([str(path)]) == [str(path)]


def test_a_named_file_is_kept_whatever_its_extension(tmp_path):
    path = tmp_path / "scan.dat"
    path.write_bytes(b"x")
    assert expand_inputs([str(path)]) == [str(path)]


def test_a_folder_gives_its_images_recursively_sorted_without_hidden(photos):
    out = expand_inputs([str(photos)])
    assert rel(out, photos) == ["a.PNG", "b.jpg", os.path.join("sub", "c.webp")]


def test_a_folder_follows_links_as_training_does_and_a_loop_adds_nothing(photos, tmp_path):
    """A linked sub-folder is read (training reads it: one listing of a folder); a link
    back up would list the folder again, forever."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "e.jpg").write_bytes(b"x")
    (photos / "linked").symlink_to(elsewhere)
    (photos / "sub" / "up").symlink_to(photos)
    out = expand_inputs([str(photos)])
    assert rel(out, photos) == ["a.PNG", "b.jpg", os.path.join("linked", "e.jpg"),
                                os.path.join("sub", "c.webp")]


def test_a_folders_images_are_named_from_the_folder_as_given(photos, monkeypatch):
    monkeypatch.chdir(photos.parent)
    assert expand_inputs(["./photos"])[0] == "./photos/a.PNG"  # as scripts expect it
    monkeypatch.chdir(photos)
    assert expand_inputs(["."])[0] == "./a.PNG"


def test_a_folder_without_images_is_an_error(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match="holds no images") as err:
        expand_inputs([str(tmp_path)])
    assert ".jpg" in err.value.hint


def test_a_folders_photos_cnncli_cannot_read_are_said(tmp_path, photos):
    from cnncli.data.dataset import DataWarning

    (tmp_path / "iphone").mkdir()
    (tmp_path / "iphone" / "IMG_1.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    with pytest.raises(DataError, match="holds no images cnncli reads: 1 photo in formats "
                                        r"cnncli cannot read \(1 HEIC; e.g. "):
        expand_inputs([str(tmp_path / "iphone")])
    (photos / "IMG_2.heic").write_bytes(b"\0\0\0\x18ftypheic")
    with pytest.warns(DataWarning, match=r"skipped 1 photo in formats cnncli cannot read"):
        assert len(expand_inputs([str(photos)])) == 3  # the images, as before


def test_a_glob_pattern_gives_matching_images_sorted(photos):
    out = expand_inputs([str(photos / "*")])
    assert rel(out, photos) == ["a.PNG", "b.jpg", os.path.join("sub", "c.webp")]


def test_a_recursive_glob_pattern_searches_subfolders(photos):
    out = expand_inputs([str(photos / "**" / "*.webp")])
    assert rel(out, photos) == [os.path.join("sub", "c.webp")]


@pytest.mark.timeout(60)
def test_a_recursive_glob_pattern_follows_links_as_a_folder_does_and_loops_add_nothing(
        photos, tmp_path):
    """Python's own glob followed each link back up again and again: an image given 41
    times for one such link, and with two, an expansion that never ended."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "e.jpg").write_bytes(b"x")
    (photos / "linked").symlink_to(elsewhere)
    for name in ("up", "again"):
        (photos / "sub" / name).symlink_to(photos)
    out = expand_inputs([str(photos / "**" / "*.jpg"), str(photos / "**" / "*.webp")])
    assert rel(out, photos) == ["b.jpg", os.path.join("linked", "e.jpg"),
                                os.path.join("sub", "c.webp")]


def test_a_pattern_ending_in_two_stars_gives_every_image_below(photos, monkeypatch):
    monkeypatch.chdir(photos)
    assert expand_inputs(["**"]) == ["a.PNG", "b.jpg", os.path.join("sub", "c.webp")]


def test_a_glob_pattern_matching_nothing_is_an_error(photos):
    with pytest.raises(DataError, match="matches no images"):
        expand_inputs([str(photos / "*.gif")])


def test_a_file_whose_name_looks_like_a_pattern_is_a_file(tmp_path):
    path = tmp_path / "shot[1].jpg"
    path.write_bytes(b"x")
    assert expand_inputs([str(path)]) == [str(path)]


def test_list_file_entries_are_relative_to_the_list_folder(photos, tmp_path, monkeypatch):
    listing = photos / "sub" / "list.txt"
    listing.write_text("# my picks\n\n../b.jpg\n  c.webp  \nhttps://example.com/z.png\n")
    monkeypatch.chdir(tmp_path)  # somewhere else than the list's folder
    out = expand_inputs([f"@{listing}"])
    assert out == [
        os.path.join(str(photos / "sub"), "../b.jpg"),
        os.path.join(str(photos / "sub"), "c.webp"),
        "https://example.com/z.png",
    ]


def test_list_file_entry_can_be_a_folder(photos, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("photos/sub\n")
    assert rel(expand_inputs([f"@{listing}"]), photos) == [os.path.join("sub", "c.webp")]


def test_a_list_file_saved_with_a_byte_order_mark_keeps_its_first_path(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "list.txt").write_bytes("\ufeffa.png\r\n".encode())  # Windows' Notepad
    assert expand_inputs([f"@{tmp_path / 'list.txt'}"]) == [str(tmp_path / "a.png")]


def test_a_list_file_of_names_whose_bytes_are_not_utf8_names_those_files(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")
    (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.txt").write_bytes(b"caf\xe9.png\n")  # as `find > list.txt` writes it
    assert expand_inputs([f"@{tmp_path / 'list.txt'}"]) == [str(tmp_path / name)]


def test_missing_list_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="list file .* does not exist"):
        expand_inputs([f"@{tmp_path / 'nope.txt'}"])


def test_missing_list_entry_names_the_list_file_and_line(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# header\nghost.jpg\n")
    with pytest.raises(DataError, match="ghost.jpg") as err:
        expand_inputs([f"@{listing}"])
    assert err.value.file == str(listing) and err.value.line == 2


def test_dash_reads_names_whose_bytes_are_not_utf8_whatever_the_locale(tmp_path,
                                                                       monkeypatch):
    """A UTF-8 locale's stdin is strict: `find | cnncli predict -` of a Latin-1 name
    failed (UnicodeDecodeError), where the C locale's stdin took it."""
    name = os.fsdecode(b"caf\xe9.png")
    (tmp_path / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    strict = io.TextIOWrapper(io.BytesIO(b"caf\xe9.png\n"), encoding="utf-8")
    assert expand_inputs(["-"], stdin=strict) == [name]


def test_dash_reads_paths_from_stdin(photos, monkeypatch):
    monkeypatch.chdir(photos)
    out = expand_inputs(["-"], stdin=io.StringIO("b.jpg\n# skip\n\nsub/c.webp\n"))
    assert out == ["b.jpg", "sub/c.webp"]


def test_urls_are_kept_as_urls():
    urls = ["http://example.com/a.jpg", "HTTPS://example.com/b"]
    assert expand_inputs(urls) == urls


def test_other_url_schemes_are_refused():
    with pytest.raises(DataError, match="only http:// and https://"):
        expand_inputs(["ftp://example.com/a.jpg"])


def test_duplicates_are_dropped_keeping_the_first(photos):
    out = expand_inputs([str(photos / "b.jpg"), str(photos), str(photos / "b.jpg")])
    assert rel(out, photos) == ["b.jpg", "a.PNG", os.path.join("sub", "c.webp")]


def test_missing_paths_are_all_named_in_one_error(tmp_path):
    with pytest.raises(DataError) as err:
        expand_inputs([str(tmp_path / "one.jpg"), str(tmp_path / "two.jpg")])
    message = str(err.value)
    assert "one.jpg" in message and "two.jpg" in message and "do not exist" in message
    assert "relative paths" in err.value.hint


def test_missing_paths_may_stay_in_their_place_when_others_were_found(tmp_path):
    """predict reads each and reports the missing one alone, as an unreadable image."""
    (tmp_path / "a.png").write_bytes(b"")
    found = [str(tmp_path / "gone.png"), str(tmp_path / "a.png")]
    assert expand_inputs(found, missing_ok=True) == found
    for none in ([str(tmp_path / "gone.png")], [str(tmp_path / "gone.png")] * 2):
        with pytest.raises(DataError, match="no such file or folder"):  # none: at once
            expand_inputs(none, missing_ok=True)


def test_no_arguments_give_no_inputs():
    assert expand_inputs([]) == []


def test_image_names_are_recognised_in_any_case():
    assert is_image_name("A.JPEG") and is_image_name("b.tif") and not is_image_name("c.txt")


# --- fetch_url against a real local HTTP server -----------------------------------------

BODY = b"\x89PNG fake image bytes"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        if self.path == "/img.png":
            self._send(200, BODY)
        elif self.path == "/big":
            self._send(200, b"x" * 5000)
        elif self.path == "/big-no-length":
            self.send_response(200)
            self.end_headers()  # no Content-Length: read until the server closes
            self.wfile.write(b"x" * 5000)
            self.close_connection = True
        elif self.path == "/to-ftp":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/secret")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/to-img":
            self.send_response(301)
            self.send_header("Location", "/img.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/announces-"):  # a size it does not send
            self.send_response(200)
            self.send_header("Content-Length", self.path.removeprefix("/announces-"))
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.close_connection = True
        elif self.path == "/slow":
            time.sleep(1.5)
            self._send(200, BODY)
        elif self.path == "/trickle":  # one byte every 0.2 s: each read is quick
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        else:
            self._send(404, b"not here")

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy_for_localhost(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def test_fetch_returns_the_body(server):
    assert fetch_url(f"{server}/img.png") == BODY


def test_fetch_follows_http_redirects(server):
    assert fetch_url(f"{server}/to-img") == BODY


def test_fetch_refuses_redirect_to_another_scheme(server):
    with pytest.raises(DataError, match="not http"):
        fetch_url(f"{server}/to-ftp")


def test_fetch_404_is_a_data_error_naming_the_url(server):
    url = f"{server}/missing.png"
    with pytest.raises(DataError, match="HTTP 404") as err:
        fetch_url(url)
    assert err.value.file == url


def test_fetch_refuses_announced_oversize_response(server):
    with pytest.raises(DataError, match="larger than"):
        fetch_url(f"{server}/big", max_bytes=1000)


@pytest.mark.parametrize("announced", [1001, 1_000_000_000])
def test_fetch_refuses_a_response_announced_oversize_whatever_it_sends(server, announced):
    url = f"{server}/announces-{announced}"  # 10 bytes sent: only the announcement tells
    with pytest.raises(DataError, match="the response is larger than 0.001 MB") as err:
        fetch_url(url, max_bytes=1000)
    assert err.value.file == url


def test_fetch_refuses_unannounced_oversize_response(server):
    with pytest.raises(DataError, match="larger than"):
        fetch_url(f"{server}/big-no-length", max_bytes=1000)


def test_fetch_accepts_a_response_of_exactly_max_bytes(server):
    assert len(fetch_url(f"{server}/big", max_bytes=5000)) == 5000


def test_fetch_times_out_as_a_data_error(server):
    with pytest.raises(DataError, match="no answer within"):
        fetch_url(f"{server}/slow", timeout=0.3)


def test_fetch_has_a_deadline_for_the_whole_download_not_each_read(server):
    started = time.monotonic()
    with pytest.raises(DataError, match="no answer within 1 s"):
        fetch_url(f"{server}/trickle", timeout=1)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/a.png", "file:///etc/passwd", "/etc/passwd"])
def test_fetch_refuses_non_http_schemes(url):
    with pytest.raises(DataError, match="only http:// and https://"):
        fetch_url(url)


def test_fetch_unreachable_host_is_a_data_error():
    # Port 9 on localhost ("discard") is closed on any ordinary machine.
    with pytest.raises(DataError, match="cannot fetch"):
        fetch_url("http://127.0.0.1:9/a.png", timeout=5)
