"""python -m bench.convert ITERATE.yaml: a terratorch-iterate benchmark as bench config files."""
