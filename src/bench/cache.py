"""bench cache ls|rm (or python -m bench.cache ls|rm): the probes' embedding cache (bench.probes.cache).

    bench cache ls                  every entry: key, model, task, split, size, created
    bench cache rm KEY [KEY ...]    removes those entries
    bench cache rm --all            removes every entry
    --dir DIR                       another cache dir (default: $BENCH_CACHE_DIR, else
                                    ~/.cache/bench/embeddings, as embeddings.cache_dir)
Only entries directly inside the cache dir are ever removed. No torch import.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.probes.cache import entries, remove


def default_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR") or Path.home() / ".cache" / "bench" / "embeddings").expanduser()


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def main(argv: list[str] | None = None, prog: str = "python -m bench.cache") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=None, help="the cache dir (default: $BENCH_CACHE_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ls", help="list the entries")
    rm = sub.add_parser("rm", help="remove entries by key")
    rm.add_argument("keys", nargs="*")
    rm.add_argument("--all", action="store_true", help="remove every entry")
    args = parser.parse_args(argv)
    cache = (args.dir or default_dir()).expanduser()
    if args.command == "ls":
        found = entries(cache)
        if not found:
            print(f"{cache}: no embedding cache entries")
            return 0
        print(f"{'key':32}  {'model':16} {'task':20} {'split':6} {'size':>9}  created")
        for meta in found:
            print(
                f"{meta.get('key', '?'):32}  {str(meta.get('model', '?')):16} {str(meta.get('task', '?')):20} "
                f"{str(meta.get('split', '?')):6} {_size(meta['bytes']):>9}  {meta.get('created', 'damaged')}"
            )
        return 0
    if args.all == bool(args.keys):
        parser.error("rm takes entry keys, or --all")
    keys = [str(m.get("key")) for m in entries(cache)] if args.all else args.keys
    missing = []
    for key in keys:
        try:
            if remove(cache, key):
                print(f"removed {key}")
            else:
                missing.append(key)
        except ValueError as exc:
            missing.append(f"{key} ({exc})")
    if missing:
        print(f"{cache}: no such entry: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
