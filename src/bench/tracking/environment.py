"""What produced a benchmark: package versions and the project's git commit (no torch import)."""

from __future__ import annotations

import subprocess
from importlib import metadata

from bench.paths import IN_CHECKOUT, REPO_ROOT

PACKAGES = ("bench", "terratorch", "torch", "lightning", "optuna", "mlflow", "hydra-core")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str | None:
    """HEAD of the bench checkout, with '-dirty' when tracked files differ; None outside git, and for
    an installed wheel (package_versions' bench version says what ran; site-packages may well sit
    inside some other repository, whose commit is not bench's)."""
    if not IN_CHECKOUT:
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None
