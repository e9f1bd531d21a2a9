"""One masking policy for everything a sweep writes: files, logs, the console, MLflow.

A value is secret when
  - its key, or any key above it, names a secret in any case or style: password, passwd, pass,
    pwd, passphrase, token (HFToken, hf_token), secret, api/access/secret/private key
    (aws_access_key_id), auth, authorization, credential(s), cookie; the longer words also inside
    a word written without separators (MYSECRET, DBPASSWORD, GHTOKEN, myapikey), except in the
    words and names NOT_SECRET lists (tokenizer, a model's cls_token, ...);
  - it is the password of a URL (scheme://user:PASSWORD@host) or the value of NAME=VALUE text
    whose NAME is secret (`export HF_TOKEN=...` inside a list);
  - it came from an environment variable whose name is secret (so `${oc.env:MY_TOKEN}` is masked
    wherever its value ends up).
Every secret value met is remembered for this process, so free text (tracebacks, log lines,
launch lines) is scrubbed of it too. Jobs still receive the real values: only what is written is
masked. The module name starts with "_" so Hydra's plugin scan never re-executes it (which would
forget the remembered values).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

MASK = "***"
SECRET_WORDS = {
    "password",
    "passwd",
    "pass",
    "pwd",
    "passphrase",
    "token",
    "secret",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "cookie",
}
# Found inside a longer word too (MYSECRET, DBPASSWORD, GHTOKEN). The short words (pass, pwd, auth)
# only on their own: inside a word they are mostly something else (compass, author).
SECRET_INSIDE = (
    "password",
    "passwd",
    "passphrase",
    "token",
    "secret",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "credential",
    "authorization",
    "cookie",
)
# Names that contain a secret word and are known not to be secrets, as lower-case words joined by
# "_": a word here is never secret, and a whole key equal to a name here is not either.
NOT_SECRET = {
    "tokenizer",
    "tokenizers",
    "tokenize",
    "tokenized",
    "tokenization",
    "tokens",  # text and ViT token counts
    "cls_token",
    "remove_cls_token",
    "mask_token",
    "pad_token",
    "register_tokens",
    "num_tokens",  # model args
    "max_tokens",
    "num_register_tokens",
}
# Shell variables whose names only look secret: PWD is the working directory.
NOT_SECRET_ENV = {"PWD", "OLDPWD"}
# Shorter values are still masked under their key, but not scrubbed from free text, where "abc"
# or "1" would mangle unrelated words and numbers. Variables of the environment are held to a
# longer minimum: RAY_AUTH_MODE=token names a mode, not a secret, and "token" is a common word.
MIN_SCRUB_LENGTH = 4
MIN_ENV_SCRUB_LENGTH = 8
# snake_case, kebab-case, dots, camelCase and acronyms: HFToken -> HF Token, apiKey -> api Key.
_WORD_BREAK = re.compile(r"[_\-\s.]+|(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@'\"]*:)(?P<secret>[^\s@/'\"]+)(?=@)")
_ASSIGNMENT = re.compile(
    r"(?P<head>(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)['\"]?\s*[=:]\s*['\"]?)(?P<secret>[^\s'\",;&\]\)\}]+)"
)
_BEARER = re.compile(r"(?P<head>\b(?:Bearer|Basic)\s+)(?P<secret>[A-Za-z0-9._~+/\-]+=*)")

_known: set[str] = set()


def is_secret_key(key: Any) -> bool:
    """True for keys such as db.password, HF_TOKEN, HFToken, aws_access_key_id, apiKey, MYSECRET;
    False for tokenizer or model_args.remove_cls_token (NOT_SECRET). A dotted key is secret when
    any of its parts is."""
    if not isinstance(key, str):
        return False
    return any(_is_secret_name(part) for part in key.lstrip("+~").split("."))


@functools.lru_cache(maxsize=4096)  # asked for every key masked and every NAME=VALUE in every log line
def _is_secret_name(name: str) -> bool:
    words = [w.lower() for w in _WORD_BREAK.split(name) if w]
    if "_".join(words) in NOT_SECRET:
        return False
    words = [w for w in words if w not in NOT_SECRET]
    names = [*words, *(a + b for a, b in zip(words, words[1:]))]  # api_key -> apikey
    return bool(SECRET_WORDS & set(names)) or any(secret in name for name in names for secret in SECRET_INSIDE)


def remember(*values: Any, min_length: int = MIN_SCRUB_LENGTH) -> None:
    """Scrub these values from every text this process writes from now on."""
    for value in values:
        if isinstance(value, str) and len(value) >= min_length and value != MASK:
            _known.add(value)


def remember_environment(environ: Mapping[str, str] | None = None) -> None:
    for name, value in (os.environ if environ is None else environ).items():
        if is_secret_key(name) and name not in NOT_SECRET_ENV:
            remember(value, min_length=MIN_ENV_SCRUB_LENGTH)


def remember_config(node: Any) -> None:
    """Remember every secret value in a (resolved where possible) config, dict or list."""
    _collect(resolved_container(node), secret=False)


def _collect(value: Any, secret: bool) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _collect(item, secret or is_secret_key(key))
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, secret)
    elif isinstance(value, str):
        if secret:
            remember(value)
        for pattern in (_URL_PASSWORD, _ASSIGNMENT, _BEARER):
            for match in pattern.finditer(value):
                if pattern is not _ASSIGNMENT or is_secret_key(match.group("name")):
                    remember(match.group("secret"))
    elif secret and value is not None:
        remember(str(value))


def mask_text(text: str) -> str:
    """Text with every remembered secret, URL password and secret NAME=VALUE masked."""
    if not isinstance(text, str) or not text:
        return text
    for value in sorted(_known, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _BEARER.sub(lambda m: m.group("head") + MASK, text)
    return _ASSIGNMENT.sub(lambda m: m.group("head") + MASK if is_secret_key(m.group("name")) else m.group(0), text)


def mask_data(value: Any, secret: bool = False) -> Any:
    """A masked copy of nested dicts/lists: values under secret keys become ***, strings are scrubbed."""
    if isinstance(value, Mapping):
        return {k: mask_data(v, secret or is_secret_key(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_data(v, secret) for v in value]
    if secret and value is not None:
        return MASK
    return mask_text(value) if isinstance(value, str) else value


def mask_override(line: str) -> str:
    """'db.password=hunter2' -> 'db.password=***' (Hydra override syntax, +/++/~ prefixes too)."""
    key, sep, value = line.partition("=")
    if not sep:
        return mask_text(line)
    return f"{key}={MASK}" if is_secret_key(key) else f"{key}={mask_text(value)}"


def mask_config(cfg: Any, resolve: bool = True) -> Any:
    """A masked plain copy of an OmegaConf config: resolved where possible (a value that cannot be
    resolved here, e.g. ${hydra:...} outside a job, keeps its interpolation text)."""
    plain = resolved_container(cfg, resolve)
    _collect(plain, secret=False)
    return mask_data(plain)


def resolved_container(cfg: Any, resolve: bool = True) -> Any:
    """A plain container of `cfg`; with resolve, every value that can be resolved here is, and one
    that cannot (such as ${hydra:runtime.output_dir} outside a job) keeps its interpolation text
    without keeping the others unresolved (${oc.env:...} secrets among them)."""
    from omegaconf import OmegaConf

    if not OmegaConf.is_config(cfg):
        return cfg
    raw = OmegaConf.to_container(cfg, resolve=False)
    if not resolve:
        return raw
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:
        return _resolve_leaves(cfg, raw, "")


def _resolve_leaves(cfg: Any, raw: Any, path: str) -> Any:
    from omegaconf import OmegaConf

    if isinstance(raw, dict):
        return {k: _resolve_leaves(cfg, v, f"{path}.{k}" if path else str(k)) for k, v in raw.items()}
    if isinstance(raw, list) and not any(isinstance(v, str) and "${" in v for v in raw):
        return [_resolve_leaves(cfg, v, f"{path}[{i}]") for i, v in enumerate(raw)]
    try:
        value = OmegaConf.select(cfg, path)
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    except Exception:
        return raw


class MaskedStream:
    """A text stream that scrubs secrets from what is written to it, then passes it on. Everything
    else (isatty, fileno, encoding, ...) is the wrapped stream's: not io.TextIOBase, whose own
    isatty() would always say False."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(mask_text(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer, ...
        return getattr(self.stream, name)


def install(config: Any = None) -> None:
    """Mask this process's console and logs from now on: remember the secrets of `config` and of
    the environment, wrap sys.stdout/sys.stderr, and scrub every log record when it is made (so
    handlers Hydra or Lightning add later are covered too). Safe to call again."""
    remember_environment()
    if config is not None:
        remember_config(config)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, MaskedStream):
            setattr(sys, name, MaskedStream(stream))
    global _factory
    if logging.getLogRecordFactory() is not _factory:
        _factory = _masking_factory(logging.getLogRecordFactory())
        logging.setLogRecordFactory(_factory)


_factory: Any = None  # the record factory install() set, so that it is set once


def _masking_factory(make_record: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = make_record(*args, **kwargs)
        try:
            record.msg, record.args = mask_text(record.getMessage()), None
        except Exception:  # a record whose args don't match its format: leave it to logging
            return record
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        return record

    return factory
