"""The converter's command line: write the files into a config folder of the user's (never into the
installed package, never over a different file unless --force), print what was not carried over,
and end with the command that runs the benchmark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bench.convert.iterate import convert
from bench.errors import BenchError
from bench.paths import CONFIG_DIR, PACKAGE_DIR, USER_CONFIG_DIR


def render(header: str, body: dict[str, Any]) -> str:
    lines = header.splitlines()
    comment = "\n".join(line if line.startswith("#") else f"# {line}" for line in lines)
    return f"{comment}\n{OmegaConf.to_yaml(OmegaConf.create(body), sort_keys=False)}"


def main(argv: list[str] | None = None, config_dir: Path = CONFIG_DIR) -> None:
    """`config_dir` is bench's config dir: the catalog the converted files refine (read, never written)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.convert",
        description=(
            "Write bench config files for a terratorch-iterate benchmark config into a config folder of "
            "your own (task/, model/, search_space/, experiment/, experiment_task/), and print the "
            "command that runs it: python -m bench --config-dir FOLDER -m experiment=NAME."
        ),
    )
    parser.add_argument("config", type=Path, help="the terratorch-iterate YAML")
    parser.add_argument(
        "--out",
        type=Path,
        default=USER_CONFIG_DIR,
        help=(
            f"your config folder, created if missing (default: ./{USER_CONFIG_DIR}); bench reads it with "
            "Hydra's --config-dir. Never bench's own package."
        ),
    )
    parser.add_argument("--force", action="store_true", help="replace files that exist with other contents")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"{args.config} is not a file")
    out = args.out.resolve()
    for package in {PACKAGE_DIR, config_dir.resolve()}:
        if out == package or package in out.parents:
            sys.exit(
                f"bench.convert: error: --out {args.out} is inside bench's package ({package}); converted "
                "configs go into a folder of your own (the default ./bench_conf, or --out DIR), which "
                "bench reads with --config-dir DIR"
            )
    try:
        conversion = convert(args.config, config_dir)
    except BenchError as exc:
        sys.exit(f"bench.convert: error: {exc}")
    texts = {out / path: render(header, body) for path, (header, body) in conversion.files.items()}
    clashes = [p for p, text in texts.items() if p.exists() and p.read_text() != text]
    if clashes and not args.force:
        sys.exit(
            "bench.convert: error: these files exist with other contents; nothing was written "
            f"(--force replaces them): {', '.join(map(str, clashes))}"
        )
    for path, text in texts.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    for note in conversion.notes:
        print(f"note: {note}")
    # Hydra's --config-dir adds the folder to bench's own (pkg://bench.conf) search path.
    print(f"python -m bench --config-dir {out} -m experiment={conversion.stem}")
