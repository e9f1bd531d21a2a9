"""Where bench's own files live.

The configs ship inside the package (bench/conf, read by Hydra as pkg://bench.conf), so an
installed wheel runs anywhere. A checkout also has them at conf/ (a symlink to src/bench/conf),
where the docs point. Users add their own tasks and models in a folder of their own, passed with
Hydra's --config-dir (or hydra.searchpath); nothing is written into the installed package.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "conf"
# Hydra's name for CONFIG_DIR: found through the import system, installed or editable.
CONFIG_PATH = "pkg://bench.conf"
# The checkout's root, for its git commit and its scripts; in an installed wheel this is
# site-packages' parent, which is no checkout of bench (IN_CHECKOUT is false there).
REPO_ROOT = PACKAGE_DIR.parents[1]
# True when bench runs from its source tree (src/bench under a pyproject.toml), not from a wheel.
IN_CHECKOUT = PACKAGE_DIR.parent.name == "src" and (REPO_ROOT / "pyproject.toml").is_file()
# Where `python -m bench.convert` writes by default, relative to the working directory: a config
# folder of the user's, read with `python -m bench --config-dir bench_conf`.
USER_CONFIG_DIR = Path("bench_conf")
