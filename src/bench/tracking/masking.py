"""Mask secrets in anything bench stores or logs: configs, overrides, params."""

from __future__ import annotations

import re
from typing import Any

# Words that mark a key as secret: password, db_passwd, HF_TOKEN, client_secret, api_key, apiKey,
# credentials, aws_secret_access_key, ... Matched word by word, so `tokenizer` or `bypass` are not.
SECRET_WORDS = {"password", "passwd", "pass", "pwd", "token", "secret", "apikey", "credential", "credentials"}
_WORD_BREAK = re.compile(r"[_\-\s]+|(?<=[a-z0-9])(?=[A-Z])")
MASK = "***"


def is_secret_key(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    words = [w.lower() for w in _WORD_BREAK.split(key.rsplit(".", 1)[-1]) if w]
    pairs = {a + b for a, b in zip(words, words[1:])}  # api_key -> apikey
    return bool(SECRET_WORDS & (set(words) | pairs))


def mask(value: Any) -> Any:
    """A copy of a (nested) dict/list with the value of every secret-looking key replaced."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(k) and v is not None else mask(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v) for v in value]
    return value


def mask_override(line: str) -> str:
    """'db.password=hunter2' -> 'db.password=***' (Hydra override syntax, with +/++/~ prefixes)."""
    key, sep, _ = line.partition("=")
    return f"{key}{sep}{MASK}" if sep and is_secret_key(key.lstrip("+~")) else line


def mask_config(cfg: Any) -> dict:
    """A resolved, masked plain dict of an OmegaConf config (unresolvable values kept as text)."""
    from omegaconf import OmegaConf

    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # e.g. ${hydra:...} outside a Hydra job: keep the interpolation text
        plain = OmegaConf.to_container(cfg, resolve=False)
    return mask(plain)
