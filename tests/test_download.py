"""CIFAR-10 download against a real HTTP server on 127.0.0.1.

The server serves a small synthetic archive in the official layout and can
honour or ignore Range, drop the connection part-way once, stall, or answer
with an error status; it records every request it sees.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import shutil
import socket
import tarfile
import tempfile
import threading

import pytest
from conftest import call_unprivileged

from ttabench import UserError
from ttabench.reference_impls import cifar10
from ttabench.reference_impls import download as dl

# --- server ----------------------------------------------------------------------


class _State:
    def __init__(self, root: str):
        self.root = root
        self.requests: list[dict] = []  # {"path": ..., "range": header or None}
        self.honour_range = True
        self.cut_after: int | None = None  # drop the connection after K body bytes, once
        self.status: int | None = None  # answer every request with this error
        self.stall = threading.Event()  # when cleared, hold the body until set
        self.stall.set()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        st: _State = self.server.state
        rng = self.headers.get("Range")
        st.requests.append({"path": self.path, "range": rng})
        if st.status:
            self.send_error(st.status)
            return
        path = os.path.join(st.root, os.path.basename(self.path))
        if not os.path.isfile(path):
            self.send_error(404)
            return
        with open(path, "rb") as f:
            data = f.read()
        start = 0
        if rng and st.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng)[1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if st.cut_after is not None:
            body, st.cut_after = body[: st.cut_after], None
            self.close_connection = True
        if not st.stall.is_set():  # half the body, then silence until released
            half = len(body) // 2
            self.wfile.write(body[:half])
            self.wfile.flush()
            st.stall.wait(10)
            body = body[half:]
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, request, monkeypatch):
    # Traffic stays on 127.0.0.1 even where the environment sets a proxy.
    monkeypatch.setenv("no_proxy", "*")
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = _State(str(root))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop():
        httpd.state.stall.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

    request.addfinalizer(stop)
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    return httpd


def publish(server, name: str, blob: bytes) -> tuple[str, str]:
    """Serve `blob` as `name`; return (url, md5)."""
    with open(os.path.join(server.state.root, name), "wb") as f:
        f.write(blob)
    return server.url + name, hashlib.md5(blob).hexdigest()


# --- archives --------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> bytes:
    """A synthetic CIFAR-10 (50 train / 10 test) as cifar-10-python.tar.gz bytes."""
    src = tmp_path_factory.mktemp("src") / dl.FOLDER
    cifar10.write(cifar10.synthetic(train_size=50, test_size=10), str(src))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(str(src), arcname=dl.FOLDER)
    return buf.getvalue()


def tarball(members) -> bytes:
    """A .tar.gz from (TarInfo, data-or-None) pairs, kept exactly as given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def regular(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def all_files(root) -> set[str]:
    return {
        os.path.relpath(os.path.join(d, n), root) for d, dirs, names in os.walk(root) for n in names + dirs
    }


# --- tests -----------------------------------------------------------------------


def test_download_extract_then_no_network(server, archive, tmp_path):
    url, md5 = publish(server, dl.ARCHIVE, archive)
    dest = tmp_path / "data"
    seen = []
    folder = dl.download(str(dest), url=url, md5=md5, progress=lambda d, t: seen.append((d, t)))

    assert folder == os.path.join(str(dest), dl.FOLDER)
    data = cifar10.load(folder)
    assert len(data.train_labels) == 50 and len(data.test_labels) == 10
    assert tuple(data.train_images.shape) == (50, 3, 32, 32)
    assert seen[0] == (0, len(archive)) and seen[-1] == (len(archive), len(archive))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    with open(os.path.join(folder, dl.MARKER)) as f:
        assert f.read().strip() == md5
    # Only the finished folder and the verified archive remain.
    assert sorted(os.listdir(dest)) == sorted([dl.ARCHIVE, dl.FOLDER])
    assert len(server.state.requests) == 1

    assert dl.download(str(dest), url=url, md5=md5) == folder
    assert len(server.state.requests) == 1


def test_resume_with_range_after_dropped_connection(server, archive, tmp_path):
    url, md5 = publish(server, dl.ARCHIVE, archive)
    dest = tmp_path / "data"
    cut = len(archive) // 3
    server.state.cut_after = cut

    with pytest.raises(UserError, match="resume") as e:
        dl.download(str(dest), url=url, md5=md5)
    assert "\n" not in str(e.value)
    part = dest / (dl.ARCHIVE + dl.PART_SUFFIX)
    assert part.stat().st_size == cut
    assert not (dest / dl.ARCHIVE).exists() and not (dest / dl.FOLDER).exists()

    seen = []
    folder = dl.download(str(dest), url=url, md5=md5, progress=lambda d, t: seen.append((d, t)))
    assert server.state.requests[-1]["range"] == f"bytes={cut}-"
    assert seen[0] == (cut, len(archive))
    assert hashlib.md5((dest / dl.ARCHIVE).read_bytes()).hexdigest() == md5
    assert not part.exists()
    assert len(cifar10.load(folder).train_labels) == 50


def test_server_ignoring_range_restarts_from_scratch(server, archive, tmp_path):
    url, md5 = publish(server, dl.ARCHIVE, archive)
    dest = tmp_path / "data"
    server.state.cut_after = 1000
    with pytest.raises(UserError):
        dl.download(str(dest), url=url, md5=md5)

    server.state.honour_range = False
    folder = dl.download(str(dest), url=url, md5=md5)
    assert server.state.requests[-1]["range"] == "bytes=1000-"  # asked, got a 200
    assert (dest / dl.ARCHIVE).read_bytes() == archive
    assert dl.is_complete(folder, md5)


def test_416_on_a_whole_part_file_only_verifies(server, archive, tmp_path):
    url, md5 = publish(server, dl.ARCHIVE, archive)
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / (dl.ARCHIVE + dl.PART_SUFFIX)).write_bytes(archive)
    folder = dl.download(str(dest), url=url, md5=md5)
    assert [r["range"] for r in server.state.requests] == [f"bytes={len(archive)}-"]
    assert dl.is_complete(folder, md5)


def test_416_on_a_junk_part_file_starts_over(server, archive, tmp_path):
    url, md5 = publish(server, dl.ARCHIVE, archive)
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / (dl.ARCHIVE + dl.PART_SUFFIX)).write_bytes(b"\0" * (len(archive) + 5))
    folder = dl.download(str(dest), url=url, md5=md5)
    assert [r["range"] for r in server.state.requests] == [f"bytes={len(archive) + 5}-", None]
    assert dl.is_complete(folder, md5)


def test_wrong_md5_leaves_nothing_that_looks_complete(server, archive, tmp_path):
    url, md5 = publish(server, dl.ARCHIVE, archive)
    dest = tmp_path / "data"
    wrong = "0" * 32
    with pytest.raises(UserError, match="md5") as e:
        dl.download(str(dest), url=url, md5=wrong)
    assert wrong in str(e.value) and md5 in str(e.value)
    assert os.listdir(dest) == []  # no archive, no part, no folder


@pytest.mark.parametrize(
    "evil, why",
    [
        (lambda t: [regular(f"{dl.FOLDER}/../../../evil")], "'..'"),
        (lambda t: [regular("../evil")], "'..'"),
        (lambda t: [regular(str(t / "abs-sentinel"))], "absolute"),
        (
            lambda t: [
                special(f"{dl.FOLDER}/link", tarfile.SYMTYPE, str(t)),
                regular(f"{dl.FOLDER}/link/abs-sentinel"),
            ],
            "symlink",
        ),
        (
            lambda t: [
                special(f"{dl.FOLDER}/hl", tarfile.LNKTYPE, str(t / "outside.txt")),
                regular(f"{dl.FOLDER}/hl", b"pwned"),
            ],
            "hardlink",
        ),
        (lambda t: [special(f"{dl.FOLDER}/fifo", tarfile.FIFOTYPE)], "FIFO"),
        (lambda t: [special(f"{dl.FOLDER}/dev", tarfile.CHRTYPE)], "device"),
        (lambda t: [regular("elsewhere/file")], "outside"),
    ],
    ids=["dotdot-in-folder", "dotdot", "absolute", "symlink", "hardlink", "fifo", "device", "outside-folder"],
)
def test_unsafe_archive_members_are_refused(server, archive, tmp_path, evil, why):
    (tmp_path / "outside.txt").write_bytes(b"original")
    # A valid data set first, so the unsafe member arrives mid-extraction.
    with tarfile.open(fileobj=io.BytesIO(archive)) as t:
        good = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    bad = evil(tmp_path)
    url, md5 = publish(server, dl.ARCHIVE, tarball(good + bad))
    dest = tmp_path / "a" / "b" / "data"
    before = all_files(tmp_path)

    with pytest.raises(UserError, match=re.escape(why)) as e:
        dl.download(str(dest), url=url, md5=md5)
    assert repr(bad[0][0].name) in str(e.value)
    assert "\n" not in str(e.value)
    # Nothing new anywhere but the verified archive; no temp folder left.
    assert all_files(tmp_path) - before == {"a", "a/b", "a/b/data", f"a/b/data/{dl.ARCHIVE}"}
    assert (tmp_path / "outside.txt").read_bytes() == b"original"


def test_archive_missing_data_files_is_refused(server, tmp_path):
    url, md5 = publish(server, dl.ARCHIVE, tarball([regular(f"{dl.FOLDER}/readme.html")]))
    dest = tmp_path / "data"
    with pytest.raises(UserError, match="data_batch_1"):
        dl.download(str(dest), url=url, md5=md5)
    assert sorted(os.listdir(dest)) == [dl.ARCHIVE]


def test_archive_present_is_only_extracted(server, archive, tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / dl.ARCHIVE).write_bytes(archive)
    # An unfinished earlier extraction (no marker) is replaced.
    (dest / dl.FOLDER).mkdir()
    (dest / dl.FOLDER / "data_batch_1").write_bytes(b"truncated")
    md5 = hashlib.md5(archive).hexdigest()
    folder = dl.download(str(dest), url=server.url + dl.ARCHIVE, md5=md5)
    assert server.state.requests == []
    assert len(cifar10.load(folder).train_labels) == 50
    assert sorted(os.listdir(dest)) == sorted([dl.ARCHIVE, dl.FOLDER])


def test_http_404_is_one_line(server, tmp_path):
    url = server.url + "nothing-here.tar.gz"
    with pytest.raises(UserError) as e:
        dl.download(str(tmp_path / "data"), url=url, md5="0" * 32)
    msg = str(e.value)
    assert "\n" not in msg and "404" in msg and url in msg


def test_connection_refused_is_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{dl.ARCHIVE}"
    with pytest.raises(UserError, match=re.escape(url)) as e:
        dl.download(str(tmp_path / "data"), url=url, md5="0" * 32, timeout=5)
    assert "\n" not in str(e.value)


def test_read_timeout_keeps_part(server, archive, tmp_path):
    url, md5 = publish(server, dl.ARCHIVE, archive)
    dest = tmp_path / "data"
    server.state.stall.clear()
    with pytest.raises(UserError, match="timed out"):
        dl.download(str(dest), url=url, md5=md5, timeout=0.3)
    server.state.stall.set()
    assert (dest / (dl.ARCHIVE + dl.PART_SUFFIX)).stat().st_size == len(archive) // 2


def test_dest_not_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write"):
        dl.download(str(blocker / "data"), url="http://127.0.0.1:9/", md5="0" * 32)


def test_dest_read_only():
    # Permission bits do not stop root: as root, the download runs as an ordinary user.
    # The folder is outside pytest's private tmp so that user can reach it.
    top = tempfile.mkdtemp(prefix="ttabench-ro-")
    ro = os.path.join(top, "ro")
    os.mkdir(ro)
    os.chmod(top, 0o755)
    os.chmod(ro, 0o555)
    try:
        got = call_unprivileged(dl.download, ro, "http://127.0.0.1:9/", "0" * 32)
        assert got.get("error") == "UserError" and "cannot write" in got["message"], got
        assert os.listdir(ro) == []  # nothing half-written
    finally:
        os.chmod(ro, 0o755)
        shutil.rmtree(top)
