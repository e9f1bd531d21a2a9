"""Where bench's own files live.

bench runs from a checkout (the Makefile installs it editable): conf/ is part of the project that
users edit and extend, so it stays at the repository root rather than inside the package.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "conf"
