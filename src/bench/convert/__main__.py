"""`python -m bench.convert ITERATE.yaml [--out DIR] [--force]`: see bench/convert/iterate.py."""

from bench.convert.cli import main

if __name__ == "__main__":
    main()
