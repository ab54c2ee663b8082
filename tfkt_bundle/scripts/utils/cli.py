"""What ``python -m monai.bundle run`` leaves to the bundle: catching command-line mistakes and reporting expected
errors in one line.

The MONAI runner applies any ``--key value`` as a config override, even one that names no id (a misspelt
``--max_epoch 1`` silently trains with the default), drops ``None`` values, and lets every error end in a traceback
dozens of lines long in which the useful line is buried. Each workflow's ``initialize`` starts with
:func:`check_command_line`, which, when the process runs under the MONAI runner:

- refuses an override that names no id of the merged configs, naming the nearest ids;
- refuses ``None``/``null`` values, which the runner would drop, and says how to write them;
- refuses a value of the wrong type for a plain literal default (``--max_epochs two``, ``--use_mlflow false``: the
  runner reads ``false`` as the string "false", which is true); ``$`` expressions, ``@`` references and ``%``
  macros, given or default, are not checked;
- refuses a new id in a later config file that is one typo away from an id of the files before it (a misspelt
  ``"max_epoch": 3`` in an override file would otherwise add an unused id and train with the default);
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
    "one_line",
    "check_config_files",
    "config_values",
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
# Values that are worked out when the config is parsed: their type is unknown here.
EXPRESSION_PREFIXES = ("$", "@", "%")
# Ids whose value MONAI itself documents as one of several types, beyond that of the bundle's default.
ALSO_ACCEPTED: dict[str, tuple[type, ...]] = {"save_execute_config": (str,)}  # False, True or a file path
# What each plain default type accepts (bool is an int in Python: refused where a number is meant).
ACCEPTED: dict[type, tuple[type, ...]] = {
    bool: (bool,),
    int: (int,),
    float: (int, float),
    str: (str,),
    list: (list, tuple),
    dict: (dict,),
}
EXPECTED_WORDS = {
    bool: "True or False",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a dict",
}


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
    return set(config_values(config_files))


def config_values(config_files: str | Sequence[str]) -> dict[str, object]:
    """Every id of the configs merged as the runner merges them, with its value as written (nothing evaluated)."""
    from monai.bundle import ConfigParser  # imported here: --help and usage errors of the commands stay instant

    return _walk(ConfigParser.load_config_files(_as_files(config_files)))


def _walk(config: object, prefix: str = "", into: dict[str, object] | None = None) -> dict[str, object]:
    into = {} if into is None else into
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for key, item in items:
        name = f"{prefix}#{key}" if prefix else str(key)
        into[name] = item
        _walk(item, name, into)
    return into


def check_config_files(config_files: str | Sequence[str]) -> None:
    """Raise ValueError for an id that a later config file adds one typo away from an id of the files before it.

    A later file may add ids (``inference_openvino.json`` adds ``runtime_network``); what it cannot do is add
    ``max_epoch`` next to ``max_epochs``, which would leave the setting at its default without a word.
    """
    from monai.bundle import ConfigParser

    files = _as_files(config_files)
    for i in range(1, len(files)):
        ids = config_ids(files[:i])
        for key, value in ConfigParser.load_config_file(files[i]).items():
            merged = key.startswith("+") and isinstance(value, dict)  # "+id" merges into the existing dict
            base = key.lstrip("+").replace("::", "#")
            for new_id in [f"{base}#{k}" for k in value] if merged and base in ids else [base]:
                near = _near_miss(new_id, ids)
                if near:
                    raise ValueError(
                        f"{files[i]}: {key} adds the id {near[0]!r}, a near-miss of {near[1]!r} in the configs"
                        " before it; use that id, or a name further from it"
                    )


def _near_miss(new_id: str, ids: set[str]) -> tuple[str, str] | None:
    """(the first new part of ``new_id``, the existing sibling id it is one typo from), or None."""
    parts = new_id.split("#")
    for depth in range(1, len(parts) + 1):
        head = "#".join(parts[:depth])
        if head in ids:
            continue
        parent, _, name = head.rpartition("#")
        for other in sorted(ids):
            o_parent, _, o_name = other.rpartition("#")
            if o_parent == parent and _typos(name, o_name) <= (2 if len(o_name) >= 8 else 1):
                return head, other
        return None
    return None


def _typos(a: str, b: str) -> int:
    """Optimal-string-alignment distance: letters inserted, dropped, changed or swapped to turn ``a`` into ``b``.

    A closeness ratio (difflib) rates legitimate pairs such as ``pretraining``/``training`` as close as real typos
    such as ``trian``/``train``; counting typos separates them.
    """
    if abs(len(a) - len(b)) > 2:
        return 3
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def _as_files(config_files: str | Sequence[str]) -> list[str]:
    if isinstance(config_files, str):
        text = config_files.strip()
        if text.startswith("["):
            return [str(f) for f in ast.literal_eval(text)]
        if "," in text and not Path(text).is_file():  # MONAI reads "a.json,b.json" as two files
            return [f.strip() for f in text.split(",")]
        return [text]
    return [str(f) for f in config_files]


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """Check the overrides of a ``python -m monai.bundle run`` command line (nothing to do otherwise).

    Raises:
        ValueError: an override names no config id (the message lists the nearest ones), gives None/null, or gives
            a value of the wrong type; or a later config file adds a near-miss of an existing id.
    """
    argv = list(sys.argv if argv is None else argv)
    if not _under_runner(argv):
        return
    sys.excepthook = report_error
    pairs = runner_overrides(argv)
    files = dict(pairs).get("config_file")
    if not isinstance(files, str):
        return
    check_overrides(files, {key: _as_runner_reads(text) for key, text in pairs})


def _as_runner_reads(text: str | bool):
    """A command-line value as the runner passes it on: fire's reading (``two`` -> "two", ``3`` -> 3)."""
    from fire.parser import DefaultParseValue  # the parser of python -m monai.bundle itself

    return text if text is True else DefaultParseValue(text)


def check_overrides(config_files: str | Sequence[str], overrides: dict) -> None:
    """Raise ValueError for an override that names no id of the merged configs, gives None/null or a value of the
    wrong type, or for a near-miss id added by a later config file. Values are as the runner receives them."""
    check_config_files(config_files)
    values = config_values(config_files)
    for key, value in overrides.items():
        _check_override(key.replace("::", "#"), value, values)


def _check_override(key: str, value, values: dict[str, object]) -> None:
    if key in RUNNER_ARGS or key.startswith("_meta_"):
        return
    if key not in values:
        near = difflib.get_close_matches(key, sorted(values), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join('--' + n for n in near)}?" if near else "; see the config files for ids"
        raise ValueError(f"--{key} names no id of the configs{hint}")
    if value is None or (isinstance(value, str) and value in NONE_WORDS):
        raise ValueError(f"--{key} {value}: the MONAI runner drops None values; to set None write --{key} '$None'")
    _check_type(key, value, values[key])


def _check_type(key: str, value, default) -> None:
    """Refuse ``value`` unless it suits the type of a plain literal ``default`` (or is an expression)."""
    kind = type(default)
    if kind not in ACCEPTED or (isinstance(default, str) and default.startswith(EXPRESSION_PREFIXES)):
        return  # None or an expression: the default does not tell the type
    if isinstance(value, str) and value.startswith(EXPRESSION_PREFIXES):
        return
    accepted = ACCEPTED[kind] + ALSO_ACCEPTED.get(key, ())
    if isinstance(value, accepted) and not (isinstance(value, bool) and bool not in accepted):
        return
    shown = value if isinstance(value, str) else repr(value)
    # a number or word meant as text: the shell's quotes are gone, Python quotes inside them keep it a string
    as_text = f"; for the text {value} write --{key} \"'{value}'\"" if kind is str else ""
    raise ValueError(f"--{key} {shown}: expected {EXPECTED_WORDS[kind]}, like the default {default!r}{as_text}")


def report_error(exc_type, exc, tb) -> None:
    """``sys.excepthook``: expected errors as one line (their innermost cause, class and message), else as usual."""
    root = root_cause(exc)
    if os.environ.get(DEBUG_ENV) or not isinstance(root, EXPECTED_ERRORS):
        sys.__excepthook__(exc_type, exc, tb)
        return
    print(f"error: {type(root).__name__}: {one_line(root)}", file=sys.stderr)
    print(f"(full traceback: {DEBUG_ENV}=1)", file=sys.stderr)


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (MLflow and SQLAlchemy add the SQL and links below it).

    An error raised in a DataLoader worker comes back to the main process as the same class with the worker's
    traceback for message ("Caught X in DataLoader worker process N. Original Traceback ..."): its own message is
    the traceback's last ``X: ...`` line.
    """
    lines = str(exc).strip().splitlines()
    if not lines:
        return repr(exc)
    prefix = f"{type(exc).__name__}: "
    if lines[0].startswith(f"Caught {type(exc).__name__} in DataLoader worker process"):
        return next((line[len(prefix) :] for line in reversed(lines) if line.startswith(prefix)), lines[-1])
    return lines[0]


def root_cause(exc: BaseException) -> BaseException:
    """The innermost ``__cause__``: MONAI wraps every failure in "Failed to evaluate/instantiate ..."."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc
