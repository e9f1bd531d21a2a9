"""bench's Hydra configs, a package so Hydra finds them as pkg://bench.conf (installed or not)."""
