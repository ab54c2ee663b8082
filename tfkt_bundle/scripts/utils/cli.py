"""What ``python -m monai.bundle run`` leaves to the bundle: catching command-line mistakes and reporting expected
errors in one line.

The MONAI runner applies any ``--key value`` as a config override, even one that names no id (a misspelt
``--max_epoch 1`` silently trains with the default), drops ``None`` values, and lets every error end in a traceback
dozens of lines long in which the useful line is buried. Each workflow's ``initialize`` starts with
:func:`check_command_line`, which, when the process runs under the MONAI runner:

- refuses an override that names no id of the merged configs, naming the nearest ids;
- refuses ``None``/``null`` values, which the runner would drop, and says how to write them;
- installs :func:`report_error` as ``sys.excepthook``: an expected error (bad path, missing file, bad data or
  setting) is printed as one line with its real class; ``TFKT_DEBUG=1`` restores the full traceback. The exit status
  stays non-zero.
"""

from __future__ import annotations

import ast
import difflib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "is_bundle_runner",
    "split_flags",
    "DEBUG_ENV",
    "check_command_line",
    "check_overrides",
    "report_error",
    "root_cause",
    "runner_overrides",
    "config_ids",
]

DEBUG_ENV = "TFKT_DEBUG"
# Arguments of monai.bundle.run itself, not config ids.
RUNNER_ARGS = frozenset(
    {
        "run_id",
        "init_id",
        "final_id",
        "meta_file",
        "config_file",
        "logging_file",
        "tracking",
        "args_file",
        "bundle_root",
    }
)
# What a user's mistake raises; anything else is a defect and keeps its traceback.
EXPECTED_ERRORS = (OSError, ValueError, KeyError, ImportError, LookupError)
NONE_WORDS = frozenset({"None", "none", "null", "Null", "NULL"})


def is_bundle_runner(program: str) -> bool:
    """Whether ``program`` (``sys.argv[0]``) is MONAI's runner, ``python -m monai.bundle``."""
    return Path(program).parts[-3:] == ("monai", "bundle", "__main__.py")


def _under_runner(argv: Sequence[str]) -> bool:
    return len(argv) > 1 and is_bundle_runner(argv[0]) and argv[1] == "run"


def split_flags(tokens: Sequence[str], hint: str = "") -> list[tuple[str, str | bool]]:
    """``--key value`` / ``--key=value`` / bare ``--flag`` tokens as (key, text) pairs in order, as fire reads them.

    A bare flag (followed by another flag or nothing) gives True. Any other token is a ValueError (``hint`` is added).
    """
    pairs: list[tuple[str, str | bool]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise ValueError(f"unexpected argument {token!r}: give each setting as --id value{hint}")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value, i = tokens[i + 1], i + 1
            else:
                value = True
        pairs.append((key, value))
        i += 1
    return pairs


def runner_overrides(argv: Sequence[str]) -> list[tuple[str, str | bool]]:
    """The ``--key value`` / ``--key=value`` pairs of a ``monai.bundle run`` command line, in order."""
    tokens = list(argv[2:])
    if tokens and not tokens[0].startswith("--"):
        tokens = tokens[1:]  # the run id
    return split_flags(tokens)


def config_ids(config_files: str | Sequence[str]) -> set[str]:
    """Every id (``a``, ``a#b``, ``a#0``, ...) of the configs merged as the runner merges them."""
    files = _as_files(config_files)
    ids: set[str] = set()

    def walk(value, prefix: str) -> None:
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            name = f"{prefix}#{key}" if prefix else str(key)
            ids.add(name)
            walk(item, name)

    from monai.bundle import ConfigParser  # imported here: --help and usage errors of the commands stay instant

    walk(ConfigParser.load_config_files(files), "")
    return ids


def _as_files(config_files: str | Sequence[str]) -> list[str]:
    if isinstance(config_files, str):
        text = config_files.strip()
        return [str(f) for f in ast.literal_eval(text)] if text.startswith("[") else [text]
    return [str(f) for f in config_files]


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """Check the overrides of a ``python -m monai.bundle run`` command line (nothing to do otherwise).

    Raises:
        ValueError: an override names no config id (the message lists the nearest ones), or gives None/null.
    """
    argv = list(sys.argv if argv is None else argv)
    if not _under_runner(argv):
        return
    sys.excepthook = report_error
    pairs = runner_overrides(argv)
    files = dict(pairs).get("config_file")
    if not isinstance(files, str):
        return
    check_overrides(files, dict(pairs))


def check_overrides(config_files: str | Sequence[str], overrides: dict) -> None:
    """Raise ValueError for an override that names no id of the merged configs, or that gives None/null."""
    ids = config_ids(config_files)
    for key, value in overrides.items():
        _check_override(key.replace("::", "#"), value, ids)


def _check_override(key: str, value, ids: set[str]) -> None:
    if key in RUNNER_ARGS or key.startswith("_meta_"):
        return
    if key not in ids:
        near = difflib.get_close_matches(key, sorted(ids), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join('--' + n for n in near)}?" if near else "; see the config files for ids"
        raise ValueError(f"--{key} names no id of the configs{hint}")
    if value in NONE_WORDS:
        raise ValueError(f"--{key} {value}: the MONAI runner drops None values; to set None write --{key} '$None'")


def report_error(exc_type, exc, tb) -> None:
    """``sys.excepthook``: expected errors as one line (their innermost cause, class and message), else as usual."""
    root = root_cause(exc)
    if os.environ.get(DEBUG_ENV) or not isinstance(root, EXPECTED_ERRORS):
        sys.__excepthook__(exc_type, exc, tb)
        return
    message = str(root).strip().splitlines()[0] if str(root).strip() else repr(root)
    print(f"error: {type(root).__name__}: {message}", file=sys.stderr)
    print(f"(full traceback: {DEBUG_ENV}=1)", file=sys.stderr)


def root_cause(exc: BaseException) -> BaseException:
    """The innermost ``__cause__``: MONAI wraps every failure in "Failed to evaluate/instantiate ..."."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc
