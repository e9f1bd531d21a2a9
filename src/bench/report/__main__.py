"""`python -m bench.report INPUT... [options]`: see bench/report/build.py and --help."""

from bench.report.build import main

if __name__ == "__main__":
    main()
