"""``ensure_ffmpeg``: ns-render finds an ``ffmpeg`` without a system one, and the process leaves nothing behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import shutil, subprocess
from difix_ns.render.ffmpeg import ensure_ffmpeg
path = ensure_ffmpeg()
assert ensure_ffmpeg() == path  # a second call reuses the first link
assert shutil.which("ffmpeg") == path
version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout
print(path)
print(version.splitlines()[0])
"""


def test_bundled_ffmpeg_is_on_path_and_removed_at_exit(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    bare = tmp_path / "bin"  # a PATH without any ffmpeg
    bare.mkdir()
    env = dict(os.environ, PATH=str(bare), TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    link, version = out.stdout.splitlines()[:2]
    assert version.startswith("ffmpeg version")
    assert Path(link).parent.parent == tmp_path  # made in the temporary folder...
    assert not Path(link).parent.exists()  # ...and gone once the process exited
    assert [p.name for p in tmp_path.iterdir()] == ["bin"]
