"""Download and unpack CIFAR-10 ("python version") from the official site.

    from ttabench.reference_impls import download, cifar10
    data = cifar10.load(download.download("data"))    # -> data/cifar-10-batches-py

This runs before the clock starts (data download is untimed), once per
machine. Every step can be interrupted and run again:

1. ``dest/cifar-10-batches-py/.complete`` holds the archive's md5 and is
   written last, so a folder with it (and all seven data files) is finished
   and is returned without touching the network.
2. The archive streams into ``cifar-10-python.tar.gz.part``; a later call
   resumes it with an HTTP Range request. Only once the md5 is right is the
   part renamed to ``cifar-10-python.tar.gz``, so a truncated or corrupt
   download never looks complete. An archive already there with the right
   md5 is not fetched again.
3. Unpacking never calls tarfile's extraction: each member is checked
   (regular files and folders under ``cifar-10-batches-py/`` only: no links,
   devices, absolute paths or ``..``) and written by this module into a
   ``.extract-*`` folder inside ``dest``, which is renamed into place only
   when every data file is there.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from typing import Callable, Optional

from ttabench import UserError, __version__
from ttabench.reference_impls.cifar10_layout import BATCHES_DIR, META_FILE, TEST_FILE, TRAIN_FILES

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE = "cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = BATCHES_DIR
MARKER = ".complete"
PART_SUFFIX = ".part"
REQUIRED_FILES = TRAIN_FILES + (TEST_FILE, META_FILE)

_CHUNK = 1 << 20
# The real archive unpacks to ~178 MB; anything far beyond is not CIFAR-10
# and must not be allowed to fill the disk (a decompression bomb).
_MAX_EXTRACTED_BYTES = 1 << 30
# Names in the official archive are plain ASCII; anything else (backslashes,
# drive letters, control characters) has no business in it.
_SAFE_PART = re.compile(r"[A-Za-z0-9._+-]+")

Progress = Callable[[int, Optional[int]], None]


def download(
    dest_dir: str, url: str = URL, md5: str = MD5, progress: Progress | None = None, timeout: float = 60
) -> str:
    """Make sure ``dest_dir/cifar-10-batches-py`` holds CIFAR-10; return its path.

    ``progress(done_bytes, total_bytes_or_None)`` is called while the archive
    downloads. ``timeout`` (seconds) bounds connecting and each read.
    Raises UserError for anything the user can act on (network, md5, disk,
    permissions, a malformed archive).
    """
    md5 = md5.strip().lower()
    folder = os.path.join(dest_dir, FOLDER)
    if is_complete(folder, md5):
        return folder
    try:
        os.makedirs(dest_dir, exist_ok=True)
        # Probe by writing: permission bits say little for root or on network
        # file systems, and failing here beats failing after the download.
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=dest_dir)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise UserError(f"cannot write to data directory {dest_dir}: {e.strerror or e}") from None
    archive = os.path.join(dest_dir, ARCHIVE)
    if not (os.path.isfile(archive) and _file_md5(archive) == md5):
        _download_archive(url, archive, md5, progress, timeout)
    _extract(archive, dest_dir, md5)
    return folder


def is_complete(folder: str, md5: str = MD5) -> bool:
    """True when ``folder`` was fully unpacked from the archive with this md5."""
    try:
        with open(os.path.join(folder, MARKER)) as f:
            recorded = f.read().strip().lower()
    except (OSError, UnicodeDecodeError):
        return False
    return recorded == md5.strip().lower() and all(
        os.path.isfile(os.path.join(folder, n)) for n in REQUIRED_FILES
    )


# --- download -----------------------------------------------------------------


def _download_archive(url: str, archive: str, md5: str, progress: Progress | None, timeout: float) -> None:
    part = archive + PART_SUFFIX
    offset = _file_size(part)
    # At most two requests: a resume attempt, then a fresh start when the
    # server's answer does not fit the part file we have.
    for attempt in range(2):
        resp = _open(url, offset, timeout)
        if resp is None:
            # 416: the server has nothing past `offset`, so the part is
            # either already whole or longer than the file (stale junk).
            if _file_md5(part) == md5:
                os.replace(part, archive)
                return
            _remove(part)
            offset = 0
            continue
        with resp:
            start, total = _body_range(resp)
            if start != 0 and start != offset:
                # A 206 for bytes we did not ask for: trust nothing, restart.
                if attempt == 0:
                    _remove(part)
                    offset = 0
                    continue
                raise UserError(
                    f"cannot download {url}: the server sent an unusable "
                    f"partial response (Content-Range "
                    f"{resp.headers.get('Content-Range')!r})"
                )
            # start == 0 also covers a server that ignores Range and answers
            # 200 with the whole file: the part is then rewritten from scratch.
            hasher = _file_hasher(part) if start else hashlib.md5()
            done = _stream(resp, url, part, start, total, hasher, progress)
        if total is not None and done < total:
            raise UserError(
                f"download of {url} stopped after {done} of {total} bytes "
                f"(kept in {part}); run again to resume"
            )
        actual = hasher.hexdigest()
        if actual != md5:
            _remove(part)
            raise UserError(
                f"md5 mismatch for {url}: expected {md5}, got {actual} (download deleted; run again to retry)"
            )
        os.replace(part, archive)
        return
    raise UserError(f"cannot download {url}: the server does not serve a consistent file")


def _open(url: str, offset: int, timeout: float):
    """The HTTP response for `url` from byte `offset`, or None on 416."""
    headers = {"User-Agent": f"ttabench/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            return None
        raise UserError(f"cannot download {url}: HTTP {e.code} {_one_line(e.reason)}") from None
    except urllib.error.URLError as e:
        raise UserError(f"cannot download {url}: {_one_line(e.reason)}{_resume_hint(offset)}") from None
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise UserError(f"cannot download {url}: {_one_line(e)}{_resume_hint(offset)}") from None
    status = getattr(resp, "status", 200)
    if status not in (200, 206):
        resp.close()
        raise UserError(f"cannot download {url}: unexpected HTTP status {status}")
    return resp


def _body_range(resp) -> tuple[int | None, int | None]:
    """(offset of the body in the file, file size or None) for a 200/206 response."""
    if getattr(resp, "status", 200) != 206:
        length = resp.headers.get("Content-Length")
        return 0, int(length) if length and length.isdigit() else None
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", resp.headers.get("Content-Range") or "")
    if not m:
        return None, None
    return int(m[1]), None if m[3] == "*" else int(m[3])


def _stream(
    resp, url: str, part: str, start: int, total: int | None, hasher, progress: Progress | None
) -> int:
    """Append the response body to `part` (rewriting it when start == 0);
    return the number of bytes the part file now holds."""
    done = start
    # read1 returns what has arrived: a plain read(n) waits for all n bytes,
    # and a timeout would then lose what it had already buffered.
    read = getattr(resp, "read1", resp.read)
    try:
        f = open(part, "ab" if start else "wb")
    except OSError as e:
        raise UserError(f"cannot write {part}: {e.strerror or e}") from None
    with f:
        if progress:
            progress(done, total)
        while True:
            try:
                chunk = read(_CHUNK)
            except (OSError, http.client.HTTPException) as e:
                f.flush()
                raise UserError(
                    f"download of {url} failed after {done} bytes: "
                    f"{_one_line(e) or type(e).__name__} (kept in {part}; "
                    "run again to resume)"
                ) from None
            if not chunk:
                break
            try:
                f.write(chunk)
            except OSError as e:
                raise UserError(f"cannot write {part}: {e.strerror or e}") from None
            hasher.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return done


# --- extraction ----------------------------------------------------------------


def _extract(archive: str, dest_dir: str, md5: str) -> None:
    try:
        tmp = tempfile.mkdtemp(prefix=".extract-", dir=dest_dir)
    except OSError as e:
        raise UserError(f"cannot write to data directory {dest_dir}: {e.strerror or e}") from None
    try:
        written = 0
        try:
            # Stream mode: one pass over the gzip, members in archive order.
            with tarfile.open(archive, "r|gz") as tar:
                for member in tar:
                    target = os.path.join(tmp, *_member_parts(member, archive))
                    if member.isdir():
                        os.makedirs(target, exist_ok=True)
                        continue
                    written += member.size
                    if written > _MAX_EXTRACTED_BYTES:
                        raise UserError(
                            f"refusing to extract {archive}: it unpacks to more "
                            f"than {_MAX_EXTRACTED_BYTES >> 20} MiB, not CIFAR-10"
                        )
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    src = tar.extractfile(member)
                    # Nothing but plain files and folders is ever created in
                    # tmp, so no path below it can lead elsewhere.
                    with src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            # An errno means the disk (full, permissions), anything else a bad archive.
            hint = "" if getattr(e, "errno", None) else " (delete it and run again)"
            raise UserError(f"cannot extract {archive}: {_one_line(e) or type(e).__name__}{hint}") from None
        new = os.path.join(tmp, FOLDER)
        missing = [n for n in REQUIRED_FILES if not os.path.isfile(os.path.join(new, n))]
        if missing:
            raise UserError(f"{archive} is not CIFAR-10: {FOLDER}/ lacks {', '.join(missing)}")
        final = os.path.join(dest_dir, FOLDER)
        if os.path.lexists(final):
            # An unfinished earlier attempt (no marker): park it in tmp, which
            # is removed below, since rename cannot replace a non-empty folder.
            os.replace(final, os.path.join(tmp, ".old"))
        os.replace(new, final)
        _write_marker(final, md5)
    except OSError as e:
        raise UserError(f"cannot unpack CIFAR-10 into {dest_dir}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _member_parts(member: tarfile.TarInfo, archive: str) -> list[str]:
    """The checked path components of a member, or UserError naming it."""
    name = member.name

    def reject(why: str) -> UserError:
        return UserError(f"refusing to extract {archive}: member {name!r} {why}")

    if member.issym():
        raise reject(f"is a symlink (to {member.linkname!r})")
    if member.islnk():
        raise reject(f"is a hardlink (to {member.linkname!r})")
    if member.ischr() or member.isblk():
        raise reject("is a device file")
    if member.isfifo():
        raise reject("is a FIFO")
    if not (member.isfile() or member.isdir()):
        raise reject("is not a regular file or folder")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise reject("has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise reject("has a '..' component")
    if not parts or parts[0] != FOLDER or (len(parts) == 1 and not member.isdir()):
        raise reject(f"is outside {FOLDER}/")
    if not all(_SAFE_PART.fullmatch(p) for p in parts):
        raise reject("has unexpected characters in its name")
    return parts


def _write_marker(folder: str, md5: str) -> None:
    tmp = os.path.join(folder, MARKER + ".tmp")
    with open(tmp, "w") as f:
        f.write(md5 + "\n")
    os.replace(tmp, os.path.join(folder, MARKER))


# --- small helpers ---------------------------------------------------------------


def _file_hasher(path: str):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h


def _file_md5(path: str) -> str:
    try:
        return _file_hasher(path).hexdigest()
    except OSError:
        return ""


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _one_line(x) -> str:
    return " ".join(str(x).split())


def _resume_hint(offset: int) -> str:
    return "; run again to resume" if offset else ""
