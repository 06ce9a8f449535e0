"""Every command in the README's shell blocks names a program this checkout provides (a console script of this
package or of nerfstudio, a file under scripts/ or the repository root, or a listed system tool), and every
``--flag`` given to one of this package's reference-flag tools is listed by its tyro-built ``--help``. Static: nothing
is run."""
from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

from difix_ns.cli.tyro_style import option_strings

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_TOOLS = {"accelerate", "python3", "pip", "pytest", "ffmpeg", "apt-get", "source", ".", ":"}
NERFSTUDIO_TOOLS = {"ns-train", "ns-render", "ns-eval", "ns-viewer", "ns-export", "ns-process-data"}
TYRO_TOOLS = {  # console script / script -> (module, its tyro config dataclass)
    "difix-fix": ("difix_ns.cli.fix_images", "FixImagesConfig"),
    "scripts/inference_difix.py": ("difix_ns.cli.fix_images", "FixImagesConfig"),
    "difix-enhance-video": ("difix_ns.cli.enhance_video", "EnhanceVideoConfig"),
    "scripts/enhance_existing_video.py": ("difix_ns.cli.enhance_video", "EnhanceVideoConfig"),
    "enhance_existing_video.py": ("difix_ns.cli.enhance_video", "EnhanceVideoConfig"),
    "difix-demo": ("difix_ns.cli.demo", "DemoConfig"),
}


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = line.split("  #")[0].split("# ")[0] if not line.lstrip().startswith("#") else ""
            for part in re.split(r"&&|;", line):
                words = shlex.split(part.replace("[", "").replace("]", ""))
                if words:
                    commands.append(words)
    return commands


def program(words: list[str]) -> str:
    return words[1] if words[0] in ("python", "python3") and words[1].endswith(".py") else words[0]


def test_readme_has_commands():
    assert len(readme_commands()) >= 20


def test_every_readme_program_exists():
    section = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    scripts = set(re.findall(r"^([\w.-]+)\s*=", section, flags=re.M))
    assert "difix-fix" in scripts and "ns-difix-render" in scripts
    missing = []
    for words in readme_commands():
        prog = program(words)
        if prog in ("python", "python3") and words[1:3] == ["-m", "venv"]:
            continue
        if prog.endswith(".py"):
            ok = (ROOT / prog).is_file()
        else:
            ok = prog in scripts or prog in NERFSTUDIO_TOOLS or prog in SYSTEM_TOOLS
        if not ok:
            missing.append(" ".join(words))
    assert missing == []


def test_readme_flags_exist_in_the_tyro_tools():
    unknown = []
    for words in readme_commands():
        tool = TYRO_TOOLS.get(program(words))
        if tool is None:
            continue
        known = option_strings(getattr(importlib.import_module(tool[0]), tool[1]))  # the flags --help lists
        assert {"--help", "--model_name", "--model-name"} <= known  # the tool's real help, not an empty one
        unknown += [f"{program(words)} {w}" for w in words if w.startswith("--") and w.split("=")[0] not in known]
    assert unknown == []
