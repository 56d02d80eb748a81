"""The VW options a policy may use, and the options stored in a VW model's header.

Only options that change learning or exploration are allowed, each with a
checked value; everything else (files, ports, hosts, dictionaries, output,
feature generators such as `--ngram`) is refused with PolicySpecError naming
the option. `ALLOWED` is the whole list. The same check applies to the option
string a VW model stores in its header, which VW applies when it loads the
model: `model_options` reads the header without VW and checks it before VW
sees the bytes.
"""

from __future__ import annotations

import math
import shlex
import struct
from dataclasses import dataclass
from typing import Literal

from nextbest.policies.base import PolicySpecError

_PRINTABLE = frozenset(chr(c) for c in range(0x21, 0x7F)) - {"\\"}  # characters VW reads as themselves


@dataclass(frozen=True)
class _Option:
    """One allowed option: a flag (`kind` "flag"), a number in [low, high] ("int", "float"), one of
    `choices` ("choice"), namespace characters, `low`..`high` of them ("namespaces", may repeat), or
    `low`..`high` full namespace names or `:` joined by `|` ("names", may repeat)."""

    kind: Literal["flag", "int", "float", "choice", "namespaces", "names"]
    low: float = -math.inf
    high: float = math.inf
    choices: frozenset[str] = frozenset()

    def describe(self) -> str:
        if self.kind == "choice":
            return f"one of {', '.join(sorted(self.choices))}"
        if self.kind == "namespaces":
            return f"{self.low:g} to {self.high:g} namespace characters (printable ASCII, no '\\', not first '-')"
        if self.kind == "names":
            return (
                f"{self.low:g} to {self.high:g} namespace names or ':' joined by '|' "
                "(printable ASCII, no '\\', a name without ':', not first '-')"
            )
        return f"{'an integer' if self.kind == 'int' else 'a number'} in [{self.low:g}, {self.high:g}]"

    def parse(self, name: str, raw: str) -> str:
        """`raw` in the canonical form VW is given; PolicySpecError naming the option when it is not valid."""
        if self.kind == "choice":
            if raw in self.choices:
                return raw
        elif self.kind == "namespaces":
            if self.low <= len(raw) <= self.high and set(raw) <= _PRINTABLE and not raw.startswith("-"):
                return raw
        elif self.kind == "names":
            if _full_names(raw, int(self.low), int(self.high)):
                return raw
        else:
            value = _number(raw, self.kind)
            if value is not None and self.low <= value <= self.high:
                return repr(value)
        raise PolicySpecError(f"VW option --{name}: must be {self.describe()}, got {raw[:40]!r}")


def _full_names(raw: str, low: int, high: int) -> bool:
    """Whether `raw` is `low`..`high` namespace names or `:` (any namespace) joined by `|`."""
    names = raw.split("|")
    return (
        low <= len(names) <= high
        and set(raw) <= _PRINTABLE
        and not raw.startswith("-")
        and all(name == ":" or (name and ":" not in name) for name in names)
    )


def _number(raw: str, kind: str) -> int | float | None:
    if not raw.isascii() or "_" in raw:  # Python reads "1_0" as 10 and non-ASCII digits; VW does not
        return None
    try:
        value = int(raw) if kind == "int" else float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


_FLAG = _Option("flag")
_UNIT = _Option("float", 0.0, 1.0)
_COST = _Option("float", -1e6, 1e6)
_POSITIVE = _Option("float", 0.0, 1e6)
_STRICTLY_POSITIVE = _Option("float", 2.0**-30, 1e6)  # bounds a float32 holds exactly: VW stores float32s
MAX_BIT_PRECISION = 22  # 2^22 weights: ~75 MB per VW instance; -b 24 took 300 MB, -b 30 seconds per save

# Every option a policy spec (or a model header) may carry, by long name.
ALLOWED: dict[str, _Option] = {
    # the contextual bandit reductions (VW stores the implied ones in its models)
    "cb_explore_adf": _FLAG,
    "ccb_explore_adf": _FLAG,  # conditional contextual bandits: multi-slot decisions
    "all_slots_loss": _FLAG,
    "ccb_no_slot_index": _FLAG,
    "cb_sample": _FLAG,  # implied by --ccb_explore_adf (stored in its models)
    "cb_adf": _FLAG,
    "csoaa_ldf": _Option("choice", choices=frozenset({"m", "multiline"})),
    "csoaa_rank": _FLAG,
    "cb_type": _Option("choice", choices=frozenset({"ips", "dr", "dm", "mtr", "sm"})),
    "clip_p": _UNIT,
    # exploration
    "epsilon": _UNIT,
    "first": _Option("int", 1, 1e9),
    "softmax": _FLAG,
    "lambda": _Option("float", 0.0, 1e6),
    "squarecb": _FLAG,
    "gamma_scale": _POSITIVE,
    "gamma_exponent": _Option("float", 0.0, 10.0),
    "regcb": _FLAG,
    "regcbopt": _FLAG,
    "cb_min_cost": _COST,
    "cb_max_cost": _COST,
    "synthcover": _FLAG,
    "synthcoverpsi": _POSITIVE,
    "synthcoversize": _Option("int", 1, 1000),
    "large_action_space": _FLAG,
    "max_actions": _Option("int", 1, 256),
    "spanner_c": _STRICTLY_POSITIVE,
    # features
    "quadratic": _Option("namespaces", 2, 2),
    "cubic": _Option("namespaces", 3, 3),
    "interactions": _Option("namespaces", 2, 3),
    # by the namespaces' full names (`action|:`), where `-q` goes by their first characters: see `policies.vw`
    "experimental_full_name_interactions": _Option("names", 2, 3),
    "ignore": _Option("namespaces", 1, 94),
    "ignore_linear": _Option("namespaces", 1, 94),
    "keep": _Option("namespaces", 1, 94),
    "noconstant": _FLAG,
    "bit_precision": _Option("int", 1, MAX_BIT_PRECISION),
    # learning
    "learning_rate": _Option("float", 0.0, 1e4),
    "power_t": _UNIT,
    "initial_t": _Option("float", 0.0, 1e12),
    "decay_learning_rate": _UNIT,
    "l1": _POSITIVE,
    "l2": _POSITIVE,
    "loss_function": _Option("choice", choices=frozenset({"squared", "classic", "quantile", "logistic", "hinge"})),
    "quantile_tau": _UNIT,
    "adaptive": _FLAG,
    "normalized": _FLAG,
    "invariant": _FLAG,
    "sgd": _FLAG,
    "random_seed": _Option("int", 0, 2**64 - 1),
}

# Short forms, each only with its value as the next argument (`-q ua`, never `-qua`).
SHORT = {"-q": "quadratic", "-l": "learning_rate", "-b": "bit_precision"}

# VW 9.11 keeps part of these learners' state outside the model: a model saved and loaded, as every restart and
# published model is, learns on differently from the workspace that saved it (tests/test_vw_resume.py).
_NOT_RESUMABLE = (
    "VW's model file does not hold all of its learning state: "
    "a restart would learn differently from VW replaying the log"
)

# Options VW accepts that do not work as a nextbest policy, and why.
REFUSED = {
    "elim": "VW 9.11 returns negative probabilities with --squarecb --elim until it has learned enough",
    "graph_feedback": "it needs a feedback graph in every example, which nextbest does not send",
    "bag": _NOT_RESUMABLE,
    "cover": _NOT_RESUMABLE,
    "rnd": _NOT_RESUMABLE,
}
# Values of allowed options refused the same way.
REFUSED_VALUES = {("cb_type", "dr"): _NOT_RESUMABLE}

REPEATABLE = {
    "quadratic",
    "cubic",
    "interactions",
    "experimental_full_name_interactions",
    "ignore",
    "ignore_linear",
    "keep",
}


def _name(token: str, header: bool) -> tuple[str, str | None]:
    """The long option name a token stands for and the value glued to it with `=`, if any.

    In a model header VW reads only `--name` (a value follows apart), so nothing else is taken there.
    """
    if header:
        if token.startswith("--") and len(token) > 2 and "=" not in token:
            return token[2:], None
        raise PolicySpecError(f"VW model options: {token[:40]!r} where an option was expected")
    if token in SHORT:
        return SHORT[token], None
    if token.startswith("--") and len(token) > 2:
        name, eq, value = token[2:].partition("=")
        return name, value if eq else None
    short = token[:2]  # a value glued to a short option is never echoed: it may be a path
    if short in SHORT:
        raise PolicySpecError(f"VW option {short}: write its value apart ('{short} VALUE'), not glued to it")
    if token.startswith("-"):
        shown = token[:40] if token.startswith("--") else short
        raise PolicySpecError(f"VW option {shown} is not allowed in a policy (see the allowlist)")
    raise PolicySpecError(f"VW argument {token[:40]!r} is not allowed: an option was expected")


def check_options(tokens: list[str], *, header: bool = False) -> list[str]:
    """The canonical VW arguments (`--name value`, values normalized) for `tokens`; PolicySpecError naming the
    first option that is not on the allowlist, lacks its value, repeats or has a value out of range.

    `header`: the tokens are a model header's options, which VW reads more simply (see `_name`).
    """
    out: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(tokens):
        name, value = _name(tokens[i], header)
        i += 1
        if name in REFUSED:
            raise PolicySpecError(f"VW option --{name} is refused: {REFUSED[name]}")
        option = ALLOWED.get(name)
        if option is None:
            raise PolicySpecError(f"VW option --{name[:40]} is not allowed in a policy (see the allowlist)")
        if name in seen and name not in REPEATABLE:
            raise PolicySpecError(f"VW option --{name} is given twice")
        seen.add(name)
        if option.kind == "flag":
            if value is not None:
                raise PolicySpecError(f"VW option --{name} takes no value")
            out.append(f"--{name}")
            continue
        if value is None:
            if i == len(tokens) or (header and tokens[i].startswith("--")):
                raise PolicySpecError(f"VW option --{name}: missing its value")
            value, i = tokens[i], i + 1
        value = option.parse(name, value)
        if (name, value) in REFUSED_VALUES:
            raise PolicySpecError(f"VW option --{name} {value} is refused: {REFUSED_VALUES[name, value]}")
        out += [f"--{name}", value]
    return out


def parse_args(params: str) -> list[str]:
    """The canonical VW arguments of a `vw:` spec's parameters (shell-like quoting); see `check_options`."""
    try:
        tokens = shlex.split(params)
    except ValueError as e:
        raise PolicySpecError(f"cannot parse VW arguments: {e}") from e
    if "--cb_explore_adf" not in tokens and "--ccb_explore_adf" not in tokens:
        raise PolicySpecError("VW arguments must include --cb_explore_adf (or --ccb_explore_adf for multi-slot)")
    return check_options(tokens)


class _Reader:
    """Reads a VW model header's fields in VW's binary layout (little-endian, length-prefixed strings)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def fixed(self, n: int) -> bytes:
        if self._at + n > len(self._data):
            raise ValueError("not a VW model: the header is cut short")
        chunk = self._data[self._at : self._at + n]
        self._at += n
        return chunk

    def uint32(self) -> int:
        return int(struct.unpack("<I", self.fixed(4))[0])

    def string(self, limit: int) -> bytes:
        n = self.uint32()
        if n > limit:
            raise ValueError("not a VW model: a header string is too long")
        return self.fixed(n)


_MAX_OPTIONS_BYTES = 4096


def model_options(data: bytes) -> list[str]:
    """The options a VW 9 model's header makes VW apply on load, canonical and checked against the allowlist.

    VW joins the model id (as `--id`), the bit precision (`--bit_precision`), any `--ngram`/`--skips` and
    the stored option string, splits them at white space and applies them. Anything VW would apply that is
    not allowed raises PolicySpecError naming it; a header that does not parse raises ValueError.
    """
    r = _Reader(data)
    version = r.string(512).rstrip(b"\x00").decode("ascii", "replace")
    if not version.startswith("9."):
        raise ValueError(f"not a VW 9 model (version {version[:20]!r})")
    if not r.string(512).startswith(b"\x00"):  # VW reads the id as a C string from a reused buffer
        raise PolicySpecError("VW option --id: a model must not carry an id")
    if r.fixed(1) != b"m":
        raise ValueError("not a VW model file")
    if not all(map(math.isfinite, struct.unpack("<2f", r.fixed(8)))):
        raise ValueError("not a usable VW model: its label range is not finite")
    bits = r.uint32()
    r.fixed(4)  # lda
    for field in ("ngram", "skips"):
        if r.uint32():
            raise PolicySpecError(f"VW option --{field} is not allowed in a policy (see the allowlist)")
    stored, terminated, _ = r.string(_MAX_OPTIONS_BYTES).partition(b"\x00")
    if not terminated:  # VW would read on past the string
        raise ValueError("not a VW model: its options are not terminated")
    if not set(stored.decode("latin-1")) <= _PRINTABLE | {" "}:
        raise PolicySpecError("VW model options: only printable ASCII and spaces are allowed")
    options = check_options(["--bit_precision", str(bits), *stored.decode("ascii").split()], header=True)
    if "--cb_explore_adf" not in options and "--ccb_explore_adf" not in options:
        raise ValueError("the VW model is not a --cb_explore_adf model (nor a --ccb_explore_adf one)")
    return options
