"""Writers of tiny datasets in each catalog dataset's real on-disk layout (no downloads), and the
one check every format test runs on them (check.py)."""
