"""The admin commands: `nextbest loops`, `policy`, `stats`, `model` and `contact-policy` manage a running server
over gRPC.

Each prints a human-readable answer, or JSON with `--json` (protobuf's JSON mapping with the proto field names),
and exits 0; a refused call prints one line `nextbest COMMAND: STATUS: message` on stderr and exits 1 (usage
errors exit 2, as argparse does). They import the client only, not the server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from nextbest.server.loopfile import enum_label, enum_number

DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV = "NEXTBEST_TARGET"
KEY_ENV = "NEXTBEST_API_KEY"

# LoopConfig fields that the server sets or that have a flag of their own.
_NOT_FLAGS = ("name", "version", "shadow_policies")


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """How to reach the server: target, API key and TLS; and the output format."""
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--target",
        default=os.environ.get(TARGET_ENV, DEFAULT_TARGET),
        help=f"the server's gRPC address (default: ${TARGET_ENV} or {DEFAULT_TARGET})",
    )
    group.add_argument("--api-key", default=os.environ.get(KEY_ENV), help=f"API key (default: ${KEY_ENV})")
    group.add_argument("--tls", action="store_true", help="use TLS with the system's CA certificates")
    group.add_argument("--ca-cert", metavar="FILE", help="use TLS, trusting this CA certificate (PEM)")
    group.add_argument("--client-cert", metavar="FILE", help="client certificate for mutual TLS (PEM)")
    group.add_argument("--client-key", metavar="FILE", help="private key of --client-cert (PEM)")
    group.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each call (default: 30)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def connect(args: argparse.Namespace) -> Any:
    """A Client for the connection arguments."""
    from nextbest.client import Client

    access = {
        "api_key": args.api_key or None,
        "tls": args.tls,
        "ca_cert": args.ca_cert,
        "client_cert": args.client_cert,
        "client_key": args.client_key,
    }
    return Client(args.target, timeout=args.timeout, **access)


def calling(command: str, call: Callable[[Any, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A `run` for argparse: opens the client, runs `call`, turns a refused call into one line and exit 1."""

    def run(args: argparse.Namespace) -> int:
        import grpc

        try:
            with connect(args) as client:
                return call(client, args)
        except grpc.RpcError as e:
            code = e.code().name if e.code() else "UNKNOWN"
            print(f"nextbest {command}: {code}: {e.details()}", file=sys.stderr)
            return 1
        except OSError as e:  # a certificate file that cannot be read
            print(f"nextbest {command}: {e}", file=sys.stderr)
            return 1

    return run


def as_dict(message: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def show(args: argparse.Namespace, message: Any, text: Callable[[Any], Iterable[str]]) -> int:
    """Print a message as JSON (`--json`) or as the lines `text` gives."""
    if args.json:
        print(json.dumps(as_dict(message), indent=2))
    else:
        for line in text(message):
            print(line)
    return 0


def show_all(args: argparse.Namespace, messages: list[Any], text: Callable[[list[Any]], Iterable[str]]) -> int:
    if args.json:
        print(json.dumps([as_dict(m) for m in messages], indent=2))
    else:
        for line in text(messages):
            print(line)
    return 0


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Columns aligned on the widest cell; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    return [
        "  ".join([*(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)), str(row[-1])]).rstrip()
        for row in [header, *rows]
    ]


def config_lines(config: Any) -> list[str]:
    """A LoopConfig as `field  value` lines."""
    rows = []
    for field in config.DESCRIPTOR.fields:
        value = getattr(config, field.name)
        if field.name == "shadow_policies":
            value = ", ".join(value) or "-"
        elif field.enum_type is not None:
            value = enum_label(field, value)
        rows.append([field.name, str(value)])
    return table(["field", "value"], rows)[1:]


def _loop_rows(loops: list[Any]) -> list[str]:
    rows = []
    for c in loops:
        mode = enum_label(c.DESCRIPTOR.fields_by_name["learning_mode"], c.learning_mode)
        rows.append([c.name, str(c.version), mode, str(len(c.shadow_policies)), c.policy])
    return table(["LOOP", "VERSION", "MODE", "SHADOWS", "POLICY"], rows) if rows else ["no loops"]


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each settable LoopConfig field (--reward-wait-seconds …), from the proto itself."""
    from nextbest.v1 import types_pb2

    for field in types_pb2.LoopConfig.DESCRIPTOR.fields:
        if field.name in _NOT_FLAGS:
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.enum_type is not None:
            choices = [enum_label(field, v.number) for v in field.enum_type.values[1:]]
            parser.add_argument(flag, metavar="|".join(choices), help=_field_help(field))
        elif field.type in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
            parser.add_argument(flag, type=float, help=_field_help(field))
        elif field.type in (field.TYPE_INT64, field.TYPE_INT32, field.TYPE_UINT32, field.TYPE_UINT64):
            parser.add_argument(flag, type=int, help=_field_help(field))
        elif field.type == field.TYPE_BOOL:
            parser.add_argument(flag, type=_boolean, metavar="true|false", help=_field_help(field))
        else:
            parser.add_argument(flag, help=_field_help(field))
    parser.add_argument(
        "--shadow", action="append", metavar="SPEC", help="a shadow policy (repeat for several; replaces the list)"
    )


def _field_help(field: Any) -> str:
    return f"LoopConfig.{field.name} (see the README's configuration reference)"


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "1", "yes", "on"):
        return True
    if text.lower() in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def config_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The LoopConfig fields given as flags, as proto values."""
    from nextbest.v1 import types_pb2

    changes: dict[str, Any] = {}
    for field in types_pb2.LoopConfig.DESCRIPTOR.fields:
        value = getattr(args, field.name, None)
        if field.name == "shadow_policies":
            value = args.shadow
        if value is None or field.name in ("name", "version"):
            continue
        changes[field.name] = enum_number(field, value) if field.enum_type is not None else value
    return changes


# loops


def add(commands: argparse._SubParsersAction) -> None:
    _add_loops(commands)
    _add_policy(commands)
    _add_stats(commands)
    _add_model(commands)
    _add_contact_policy(commands)


def _sub(group: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
    add_connection_arguments(parser)
    return parser


def _add_loops(commands: argparse._SubParsersAction) -> None:
    loops = commands.add_parser(
        "loops",
        help="list, show, create, update or delete the loops of a running server",
        description="Manage the loops of a running server over gRPC.",
    )
    sub = loops.add_subparsers(dest="action", required=True, metavar="ACTION")
    _sub(sub, "list", "list the loops").set_defaults(run=calling("loops list", _loops_list))
    show_ = _sub(sub, "show", "show a loop's configuration")
    show_.add_argument("loop")
    show_.set_defaults(run=calling("loops show", _loops_show))
    create = _sub(sub, "create", "create a loop (unset fields take the server's defaults)")
    create.add_argument("loop")
    add_config_flags(create)
    create.set_defaults(run=calling("loops create", _loops_create))
    update = _sub(sub, "update", "change the given fields of a loop's configuration, keeping the others")
    update.add_argument("loop")
    add_config_flags(update)
    update.set_defaults(run=calling("loops update", _loops_update))
    delete = _sub(sub, "delete", "delete a loop with its decisions, rewards and models")
    delete.add_argument("loop")
    delete.add_argument("--yes", action="store_true", help="confirm: the loop's data is deleted for good")
    delete.set_defaults(run=calling("loops delete", _loops_delete))


def _loops_list(client: Any, args: argparse.Namespace) -> int:
    return show_all(args, client.list_loops(), _loop_rows)


def _loops_show(client: Any, args: argparse.Namespace) -> int:
    return show(args, client.get_loop(args.loop), config_lines)


def _checked_changes(args: argparse.Namespace) -> dict[str, Any] | None:
    try:
        return config_changes(args)
    except ValueError as e:
        print(f"nextbest loops {args.action}: {e}", file=sys.stderr)
        return None


def _loops_create(client: Any, args: argparse.Namespace) -> int:
    changes = _checked_changes(args)
    if changes is None:
        return 2
    return show(args, client.create_loop(args.loop, **changes), config_lines)


def _loops_update(client: Any, args: argparse.Namespace) -> int:
    changes = _checked_changes(args)
    if changes is None:
        return 2
    if not changes:
        print("nextbest loops update: nothing to change (give at least one field flag)", file=sys.stderr)
        return 2
    return show(args, client.update_loop(args.loop, **changes), config_lines)


def _loops_delete(client: Any, args: argparse.Namespace) -> int:
    if not args.yes:
        print(
            f"nextbest loops delete: deleting {args.loop!r} deletes its decisions, rewards and models; "
            "give --yes to confirm",
            file=sys.stderr,
        )
        return 2
    client.delete_loop(args.loop)
    if args.json:
        print(json.dumps({"deleted": args.loop}))
    else:
        print(f"deleted loop {args.loop!r}")
    return 0


# policy


def _add_policy(commands: argparse._SubParsersAction) -> None:
    policy = commands.add_parser(
        "policy",
        help="set, shadow or promote a loop's policy; list its models or roll back",
        description="Change a running loop's policy and models over gRPC.",
    )
    sub = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    set_ = _sub(sub, "set", "make a spec the loop's live policy (a shadowed spec is promoted warm)")
    set_.add_argument("loop")
    set_.add_argument("spec")
    set_.set_defaults(run=calling("policy set", _policy_set))
    shadow = _sub(sub, "shadow", "let a spec learn in the live policy's shadow, with a running estimate")
    shadow.add_argument("loop")
    shadow.add_argument("spec")
    shadow.set_defaults(run=calling("policy shadow", _policy_shadow))
    promote = _sub(sub, "promote", "make a shadow policy live with what it has learned")
    promote.add_argument("loop")
    promote.add_argument("spec", help="the shadow's spec")
    promote.set_defaults(run=calling("policy promote", _policy_promote))
    rollback = _sub(sub, "rollback", "publish a kept model version again as the newest")
    rollback.add_argument("loop")
    rollback.add_argument("version", type=int)
    rollback.set_defaults(run=calling("policy rollback", _policy_rollback))
    models = _sub(sub, "models", "list the loop's kept model versions")
    models.add_argument("loop")
    models.set_defaults(run=calling("policy models", _policy_models))


def _policy_set(client: Any, args: argparse.Namespace) -> int:
    return show(args, client.set_policy(args.loop, args.spec), config_lines)


def _policy_shadow(client: Any, args: argparse.Namespace) -> int:
    return show(args, client.set_policy(args.loop, args.spec, shadow=True), config_lines)


def _policy_promote(client: Any, args: argparse.Namespace) -> int:
    return show(args, client.promote(args.loop, args.spec), config_lines)


def model_lines(models: list[Any]) -> list[str]:
    import datetime

    rows = [
        [
            str(m.version) + (" *" if m.live else ""),
            datetime.datetime.fromtimestamp(m.created_at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            str(m.learned_seq),
            str(m.size_bytes),
            m.spec,
        ]
        for m in models
    ]
    return table(["VERSION", "CREATED (UTC)", "LEARNED", "BYTES", "SPEC"], rows) if rows else ["no models"]


def _policy_rollback(client: Any, args: argparse.Namespace) -> int:
    return show(args, client.rollback(args.loop, args.version), lambda m: model_lines([m]))


def _policy_models(client: Any, args: argparse.Namespace) -> int:
    return show_all(args, client.list_models(args.loop), model_lines)


# stats


def _add_stats(commands: argparse._SubParsersAction) -> None:
    stats = commands.add_parser(
        "stats",
        help="a loop's statistics: decisions, rewards, joins, learner lag, policy estimates, holdout lift",
        description="Print a running loop's statistics (GetStats).",
    )
    stats.add_argument("loop")
    add_connection_arguments(stats)
    stats.set_defaults(run=calling("stats", _stats))


def _number(value: float | int) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def stats_lines(stats: Any) -> list[str]:
    rows = [
        [field.name, _number(getattr(stats, field.name))]
        for field in stats.DESCRIPTOR.fields
        if field.message_type is None
    ]
    lines = table(["field", "value"], rows)[1:]
    if stats.policies:
        estimates = [
            [
                "live" if p.live else "shadow",
                f"{p.value:.4f}",
                f"[{p.ci_low:.4f}, {p.ci_high:.4f}]",
                str(p.events),
                f"{p.effective_sample_size:.0f}",
                p.spec,
            ]
            for p in stats.policies
        ]
        lines += ["", *table(["ROLE", "VALUE", "95% CI", "EVENTS", "ESS", "SPEC"], estimates)]
    if stats.HasField("lift"):
        lines += ["", *lift_lines(stats.lift)]
    if stats.suppressed:
        rules = [[r.rule, str(r.suppressed), str(r.skipped)] for r in stats.suppressed]
        lines += ["", *table(["CONTACT RULE", "SUPPRESSED", "SKIPPED"], rules)]
    return lines


def lift_lines(lift: Any) -> list[str]:
    """Treatment against holdout: average reward per decision of each, and the lift with its interval."""
    rows = [
        ["treatment", f"{lift.treatment:.4f}", "", str(lift.treatment_subjects)],
        ["holdout", f"{lift.holdout:.4f}", "", str(lift.holdout_subjects)],
        ["lift", f"{lift.difference:+.4f}", f"[{lift.ci_low:+.4f}, {lift.ci_high:+.4f}]", ""],
    ]
    return table(["GROUP", "REWARD/DECISION", "95% CI (BY SUBJECT)", "SUBJECTS"], rows)


def _stats(client: Any, args: argparse.Namespace) -> int:
    return show(args, client.stats(args.loop), stats_lines)


# model


def _add_model(commands: argparse._SubParsersAction) -> None:
    model = commands.add_parser(
        "model",
        help="export a loop's model to a file or import one trained elsewhere",
        description="Move model bytes in and out of a running server over gRPC.",
    )
    sub = model.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = _sub(sub, "export", "write the live model (or a kept version) to a file")
    export.add_argument("loop")
    export.add_argument("--output", "-o", required=True, metavar="FILE", help="where to write the model's bytes")
    export.add_argument("--version", type=int, default=0, help="a kept version (default: the live model)")
    export.set_defaults(run=calling("model export", _model_export))
    imp = _sub(sub, "import", "warm-start a loop from a model file trained with the given spec")
    imp.add_argument("loop")
    imp.add_argument("spec", help="the policy spec the model was trained with")
    imp.add_argument("file", help="the model's bytes (as `model export` writes them)")
    imp.set_defaults(run=calling("model import", _model_import))


def _model_export(client: Any, args: argparse.Namespace) -> int:
    model = client.export_model(args.loop, version=args.version)
    with open(args.output, "wb") as f:
        f.write(model.data)
    summary = {"loop": args.loop, "version": model.version, "spec": model.spec, "bytes": len(model.data)}
    if args.json:
        print(json.dumps({**summary, "output": args.output}))
    else:
        size = len(model.data)
        print(f"wrote version {model.version} of {args.loop!r} ({size} bytes, {model.spec}) to {args.output}")
    return 0


def _model_import(client: Any, args: argparse.Namespace) -> int:
    with open(args.file, "rb") as f:
        data = f.read()
    return show(args, client.import_model(args.loop, args.spec, data), lambda m: model_lines([m]))


# contact policy


def _add_contact_policy(commands: argparse._SubParsersAction) -> None:
    contact = commands.add_parser(
        "contact-policy",
        help="show or replace the store's contact policy (the rules that limit contacting each subject)",
        description="Show or replace the contact policy of a running server's store over gRPC.",
    )
    sub = contact.add_subparsers(dest="action", required=True, metavar="ACTION")
    _sub(sub, "get", "show the contact policy and its version").set_defaults(
        run=calling("contact-policy get", _contact_get)
    )
    set_ = _sub(sub, "set", "replace the contact policy by the rules of a JSON or TOML file (empty: no rules)")
    set_.add_argument("file", help="the policy file ('-': standard input)")
    set_.set_defaults(run=calling("contact-policy set", _contact_set))


def _contact_lines(policy: Any) -> list[str]:
    rules = json.loads(policy.spec)["rules"] if policy.spec else []
    return [f"version {policy.version}, {len(rules)} rules", *(json.dumps(rule) for rule in rules)]


def _contact_get(client: Any, args: argparse.Namespace) -> int:
    return show(args, client.get_contact_policy(), _contact_lines)


def _contact_set(client: Any, args: argparse.Namespace) -> int:
    if args.file == "-":
        spec = sys.stdin.read()
    else:
        with open(args.file, encoding="utf-8") as f:
            spec = f.read()
    return show(args, client.set_contact_policy(spec), _contact_lines)
