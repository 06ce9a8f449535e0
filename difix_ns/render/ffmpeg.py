"""An ``ffmpeg`` for nerfstudio's video writers: the system one, else the binary imageio-ffmpeg ships.

Import-light (standard library only until a binary is needed), so the plugin can call it when ``ns-render`` starts.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def ensure_ffmpeg() -> str:
    """Path of an ``ffmpeg`` on PATH; when there is none, expose imageio-ffmpeg's bundled binary under that name.

    The name is a link in a temporary folder put first on this process's ``PATH`` (children inherit it) and removed
    when the process exits; a second call finds it on ``PATH``.

    ns-render checks for ``ffmpeg`` (and mediapy calls it) even though the package already ships one.
    """
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise RuntimeError("no `ffmpeg` on PATH and imageio-ffmpeg is not installed: "
                           "`pip install imageio-ffmpeg` or install ffmpeg") from err

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    folder = Path(tempfile.mkdtemp(prefix="difix-ffmpeg-"))
    atexit.register(shutil.rmtree, folder, True)  # the link is this process's (and its children's) only
    (folder / "ffmpeg").symlink_to(exe)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(folder / "ffmpeg")
