"""The converter's command line: write the files (never over a different file of the user's unless
--force), print what was not carried over, and end with the command that runs the benchmark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from bench.convert.iterate import convert
from bench.errors import BenchError
from bench.paths import CONFIG_DIR


def render(header: str, body: dict[str, Any]) -> str:
    lines = header.splitlines()
    comment = "\n".join(line if line.startswith("#") else f"# {line}" for line in lines)
    return f"{comment}\n{OmegaConf.to_yaml(OmegaConf.create(body), sort_keys=False)}"


def main(argv: list[str] | None = None, config_dir: Path = CONFIG_DIR) -> None:
    """`config_dir` is bench's config dir: the catalog the files refine, and the default --out (tests
    pass a copy of it)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.convert",
        description="Write bench config files for a terratorch-iterate benchmark config.",
    )
    parser.add_argument("config", type=Path, help="the terratorch-iterate YAML")
    parser.add_argument(
        "--out", type=Path, default=config_dir, help=f"config dir to write into (default: {config_dir})"
    )
    parser.add_argument("--force", action="store_true", help="replace files that exist with other contents")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"{args.config} is not a file")
    try:
        conversion = convert(args.config, config_dir)
    except BenchError as exc:
        sys.exit(f"bench.convert: error: {exc}")
    texts = {args.out / path: render(header, body) for path, (header, body) in conversion.files.items()}
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
    # bench reads its own config dir without being told; any other needs --config-dir.
    extra = "" if args.out.resolve() == config_dir.resolve() else f" --config-dir {args.out.resolve()}"
    print(f"python -m bench{extra} -m experiment={conversion.stem}")
