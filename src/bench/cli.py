"""What `python -m bench` says on its own: its `--help`, and one sentence for a mistyped command line.

`--help` is rendered here rather than by Hydra: Hydra's lists every config group by building a
config repository per group and option (about 1 s for bench's configs, before printing a line) and
has no way to hide a group. This reads the same files (the primary config's `hydra.help` header
and footer, the group folders of the config dirs) in milliseconds, and leaves out the internal
groups that tasks and models build on. `--hydra-help` stays Hydra's.

A typo (`model=resnet50_unet`, `hparams.lrr=0.1`, `hydra.sweeper.n_trails=3`) makes Hydra raise
while it composes the config, before anything is created; `usage_error` turns that into one
sentence: Hydra's message, and the nearest option or key with the valid ones.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

# Config groups that tasks and models build on (their defaults lists), and what a preset picks for
# itself (experiment_task/<experiment>/<task>): never chosen on a command line.
INTERNAL_GROUPS = frozenset({"task_defaults", "model_defaults", "experiment_task"})
HELP_FLAGS = ("--help", "-h")


def wants_help(argv: list[str]) -> bool:
    """`--help`/`-h` on the command line, and not `--hydra-help` (which Hydra answers)."""
    return any(a in HELP_FLAGS for a in argv) and "--hydra-help" not in argv


def config_dirs(argv: list[str]) -> list[Path]:
    """bench's config dir and any `--config-dir`/`-cd` the command line adds (searched first by Hydra)."""
    from bench.paths import CONFIG_DIR

    extra = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            extra.append(Path(argv[i + 1]))
        elif arg.startswith("--config-dir="):
            extra.append(Path(arg.split("=", 1)[1]))
    return [*extra, CONFIG_DIR]


def config_groups(dirs: list[Path]) -> dict[str, list[str]]:
    """{group: its options} over these config dirs, as Hydra lists them (a nested group as a/b),
    without Hydra's own groups (hydra/...) and the internal ones."""
    groups: dict[str, set[str]] = {}
    for root in dirs:
        if not root.is_dir():
            continue
        for path in root.rglob("*.yaml"):
            group = path.parent.relative_to(root).as_posix()
            if group == "." or group.split("/")[0] in INTERNAL_GROUPS | {"hydra"}:
                continue
            groups.setdefault(group, set()).add(path.stem)
    return {group: sorted(options) for group, options in sorted(groups.items())}


def help_text(argv: list[str]) -> str:
    import yaml

    from bench.paths import CONFIG_DIR

    primary = yaml.safe_load((CONFIG_DIR / "config.yaml").read_text())
    hydra_help = primary.get("hydra", {}).get("help", {})
    groups = config_groups(config_dirs(argv))
    keys = {k: v for k, v in primary.items() if k not in ("defaults", "hydra")}
    return "\n".join(
        [
            hydra_help.get("header", "").rstrip(),
            "",
            "== Configuration groups ==",
            "Compose your configuration from those groups (group=option)",
            "",
            *(f"{group}: {', '.join(options)}" for group, options in groups.items()),
            "",
            "== Config ==",
            "Override anything in the config (foo.bar=value); `--cfg job` prints it composed with the groups",
            "",
            yaml.safe_dump(keys, sort_keys=False, default_flow_style=False).rstrip(),
            "",
            hydra_help.get("footer", "").rstrip(),
        ]
    )


def usage_error(exc: BaseException) -> str:
    """One sentence for a command line that Hydra could not compose: its message's first line, and
    what the user may have meant."""
    from hydra.errors import MissingConfigException

    first = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MissingConfigException) and exc.options:
        missing = (exc.missing_cfg_file or "").strip("/")
        group, _, option = missing.rpartition("/")
        return first.rstrip(".") + _nearest(
            option, list(exc.options), group + "=" if group else "", f"options of {group}" if group else "options"
        )
    node, key, full_key = _missing_key(exc)
    if node is not None and key:
        prefix = full_key[: -len(key)] if full_key.endswith(key) else ""
        where = prefix.rstrip(".") or "the config"
        return first.rstrip(".") + _nearest(key, [str(k) for k in node.keys()], prefix, f"keys of {where}")
    return first


def _nearest(wrong: str, valid: list[str], prefix: str, what: str) -> str:
    close = difflib.get_close_matches(wrong, valid, n=1, cutoff=0.6)
    guess = f": did you mean {prefix}{close[0]}?" if close else ""
    shown = ", ".join(valid[:40]) + (", ..." if len(valid) > 40 else "")
    return f"{guess} Valid {what}: {shown}" if guess else f". Valid {what}: {shown}"


def _missing_key(exc: BaseException) -> tuple[Any, str, str]:
    """(the config node, the key it lacks, its full key) from the omegaconf error behind a failed
    override; (None, "", "") when there is none."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ConfigAttributeError, ConfigKeyError)) and getattr(seen, "parent_node", None) is not None:
            return seen.parent_node, str(getattr(seen, "key", "") or ""), str(getattr(seen, "full_key", "") or "")
        seen = seen.__cause__ or seen.__context__
    return None, "", ""
