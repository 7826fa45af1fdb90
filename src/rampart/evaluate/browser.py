"""Rendering HTML reports in headless Chromium: a PNG screenshot and the rendered DOM.

Tests use this to check that a report really renders (not just that the HTML text contains
some strings), and users can turn a report into a picture for a slide or a ticket. Chromium
is found on ``PATH`` (``chromium``, ``chromium-browser``, ``google-chrome``) or named by the
``RAMPART_CHROMIUM`` environment variable. Each run gets a fresh profile folder and every
network-touching feature switched off, and is killed (with its child processes) when it
overruns its timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rampart.errors import RampartError

ENV_VAR = "RAMPART_CHROMIUM"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("install Chromium (Debian/Ubuntu: apt-get install chromium) or set "
                f"{ENV_VAR} to the browser's executable")
MAX_HEIGHT = 16_000  # tallest full-page screenshot, in CSS pixels
_HEIGHT_ATTR = "data-rampart-page-height"
_MEASURE = (
    "<script>addEventListener('load', function () {"
    " var d = document.documentElement, b = document.body;"
    f" d.setAttribute('{_HEIGHT_ATTR}', String(Math.ceil(Math.max(d.scrollHeight,"
    " b ? b.scrollHeight : 0))));"
    " });</script>"
)
_NOISE = re.compile(r"dbus|Fontconfig|bus\.cc|object_proxy|unexpected operator|"
                    r"DevTools listening|sandbox|gpu_init|viz_main|^\s*$", re.IGNORECASE)


class BrowserError(RampartError):
    """Chromium is missing, failed, or took too long to render a page."""


def find_chromium() -> str | None:
    """The Chromium executable to use (``RAMPART_CHROMIUM`` first, then PATH), or None."""
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        path = shutil.which(explicit)
        return path if path else None
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_chromium(chromium: str | None = None) -> str:
    """``chromium`` if given and runnable, else :func:`find_chromium`; BrowserError if none."""
    if chromium:
        path = shutil.which(chromium)
        if not path:
            raise BrowserError(f"Chromium executable {chromium!r} was not found or is not "
                               f"executable; {INSTALL_HINT}.")
        return path
    explicit = os.environ.get(ENV_VAR)
    path = find_chromium()
    if path:
        return path
    if explicit:
        raise BrowserError(f"{ENV_VAR}={explicit!r} does not name an executable file; fix it "
                           "or unset it to search PATH.")
    raise BrowserError(f"no Chromium found on PATH (looked for {', '.join(NAMES)}); "
                       f"{INSTALL_HINT}.")


def base_flags(user_data_dir: str) -> list[str]:
    """Flags for a quiet, offline, throwaway headless run."""
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--no-default-browser-check", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-extensions",
        "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
        "--force-device-scale-factor=1", f"--user-data-dir={user_data_dir}",
    ]


def _page(path: str | Path) -> Path:
    page = Path(path)
    if not page.is_file():
        raise BrowserError(f"no HTML file at {page}; write the report first.")
    return page.resolve()


@contextlib.contextmanager
def _profile() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="rampart-chromium-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(chromium: str, args: list[str], timeout: float, what: str) -> str:
    """Run Chromium with a fresh profile; stdout as text. Kills the whole process group
    on timeout so no renderer is left behind."""
    with _profile() as profile:
        cmd = [chromium, *base_flags(profile), *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise BrowserError(f"Chromium did not finish {what} within {timeout:g} s; the "
                               "page may be very large, or raise the timeout.") from None
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # renderers that outlived the browser
    if proc.returncode != 0:
        raise BrowserError(f"Chromium failed {what} (exit code {proc.returncode}): "
                           f"{_errors(err) or 'no error message'}")
    return out.decode("utf-8", errors="replace")


def _errors(stderr: bytes) -> str:
    """The last few meaningful lines of Chromium's stderr (its D-Bus chatter removed)."""
    raw = [ln for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    lines = [ln for ln in raw if not _NOISE.search(ln)] or raw  # all noise: show it anyway
    return " | ".join(ln.strip() for ln in lines[-3:])


def dump_dom(
    html: str | Path,
    *,
    width: int = 1280,
    height: int = 900,
    timeout: float = 60.0,
    chromium: str | None = None,
) -> str:
    """The DOM after Chromium loaded and laid out the page (scripts run), as HTML text."""
    page = _page(html)
    exe = require_chromium(chromium)
    return _run(exe, [f"--window-size={int(width)},{int(height)}", "--dump-dom",
                      page.as_uri()], timeout, f"loading {page.name}")


def _measured_dom(page: Path, width: int, timeout: float, chromium: str) -> tuple[str, int]:
    """The rendered DOM and the page's full height, from one Chromium run on a copy of the
    page with a small script that records its height once it has loaded."""
    text = page.read_text(encoding="utf-8", errors="replace")
    folder = page.parent if os.access(page.parent, os.W_OK) else None  # keeps relative links
    fd, probe = tempfile.mkstemp(prefix=f".{page.stem}.measure-", suffix=".html", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + _MEASURE)  # after </html> still runs: parsers move it into body
        dom = _run(chromium, [f"--window-size={int(width)},600", "--dump-dom",
                              Path(probe).as_uri()], timeout, f"loading {page.name}")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)
    found = re.search(rf' {_HEIGHT_ATTR}="(\d+)"', dom)
    if not found:
        raise BrowserError(f"could not measure the height of {page.name} (the page did not "
                           "finish loading); pass an explicit height.")
    dom = dom.replace(found.group(0), "", 1)
    dom = re.sub(r"<script>addEventListener\('load'.*?</script>", "", dom, count=1, flags=re.S)
    return dom, int(found.group(1))


def page_height(
    html: str | Path, *, width: int = 1280, timeout: float = 60.0, chromium: str | None = None
) -> int:
    """The page's full height in CSS pixels at ``width``, measured after it loaded."""
    return _measured_dom(_page(html), width, timeout, require_chromium(chromium))[1]


@dataclass(frozen=True)
class Rendered:
    """What Chromium made of a page: its DOM, its full height and the screenshot's path."""

    dom: str
    height: int
    png: Path | None


def render(
    html: str | Path,
    png: str | Path | None = None,
    *,
    width: int = 1280,
    timeout: float = 60.0,
    chromium: str | None = None,
) -> Rendered:
    """Load ``html`` once for its rendered DOM and height, then (with ``png``) capture the
    whole page: two Chromium runs for what :func:`dump_dom` plus :func:`screenshot` do in
    three."""
    page = _page(html)
    exe = require_chromium(chromium)
    dom, height = _measured_dom(page, width, timeout, exe)
    shot = None
    if png is not None:
        shot = screenshot(page, png, width=width, height=min(max(height, 100), MAX_HEIGHT),
                          timeout=timeout, chromium=exe)
    return Rendered(dom, height, shot)


def screenshot(
    html: str | Path,
    png: str | Path,
    *,
    width: int = 1280,
    height: int | None = None,
    timeout: float = 60.0,
    chromium: str | None = None,
) -> Path:
    """Render ``html`` to the PNG file ``png``; without ``height`` the whole page is captured
    (measured first, at most ``MAX_HEIGHT`` pixels). Returns the PNG's path."""
    page = _page(html)
    exe = require_chromium(chromium)
    if width < 200 or (height is not None and height < 100):
        raise BrowserError(f"window {width}x{height} is too small; use at least 200x100.")
    if height is None:
        height = min(max(_measured_dom(page, width, timeout, exe)[1], 100), MAX_HEIGHT)
    out = Path(png).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    _run(exe, [f"--window-size={int(width)},{int(height)}", f"--screenshot={out}",
               page.as_uri()], timeout, f"rendering {page.name}")
    if not out.is_file() or out.stat().st_size == 0:
        raise BrowserError(f"Chromium exited without writing the screenshot {out}.")
    return out
