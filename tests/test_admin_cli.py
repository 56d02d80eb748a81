"""The admin CLI (`nextbest loops|policy|stats|model`) and `nextbest apply` against a real server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nextbest.cli import main
from nextbest.client import Client, action
from nextbest.server.auth import ApiKeys
from nextbest.testing import running_server, wait_for

ADMIN_KEY = "admin-key-0123456789abcdef"
DECIDE_KEY = "decide-key-0123456789abcdef"
SPEC = "vw:--cb_explore_adf --epsilon 0.1 -q ::"
SHADOW = "vw:--cb_explore_adf --squarecb -q ::"


@pytest.fixture
def server(tmp_path):
    with running_server(tmp_path / "store") as (srv, client):
        yield srv, client


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `nextbest ARGV` in-process; (exit code, stdout, stderr). The log level keeps the in-process server's
    own INFO lines (it shares the process and its stderr) out of what the command printed."""
    try:
        code = main(["--log-level", "WARNING", *argv])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_loops_create_show_list_update_delete(server, capsys):
    srv, client = server
    t = ("--target", srv.address)
    code, out, err = run(capsys, "loops", "create", "home", *t, "--policy", SPEC, "--reward-wait-seconds", "30",
                         "--reward-aggregation", "sum", "--shadow", SHADOW)  # fmt: skip
    assert code == 0, err
    assert "reward_aggregation" in out and "SUM" in out
    config = client.get_loop("home")
    assert (config.policy, config.reward_wait_seconds, list(config.shadow_policies)) == (SPEC, 30.0, [SHADOW])

    code, out, _ = run(capsys, "loops", "list", *t)
    assert code == 0
    assert out.splitlines()[0].split() == ["LOOP", "VERSION", "MODE", "SHADOWS", "POLICY"]
    assert {line.split()[0] for line in out.splitlines()[1:]} == {"default", "home"}

    code, out, _ = run(capsys, "loops", "show", "home", *t, "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["name"] == "home" and shown["reward_aggregation"] == "REWARD_AGGREGATION_SUM"

    code, out, err = run(capsys, "loops", "update", "home", *t, "--retention-days", "7")
    assert code == 0, err
    after = client.get_loop("home")
    assert after.retention_days == 7 and after.reward_wait_seconds == 30 and after.version == config.version + 1

    code, _, err = run(capsys, "loops", "delete", "home", *t)
    assert code == 2 and "--yes" in err
    assert "home" in {c.name for c in client.list_loops()}
    code, out, _ = run(capsys, "loops", "delete", "home", *t, "--yes")
    assert code == 0 and "deleted" in out
    assert "home" not in {c.name for c in client.list_loops()}


def test_bad_input_is_one_line_and_changes_nothing(server, capsys):
    srv, client = server
    t = ("--target", srv.address)
    before = client.get_loop("default")

    code, out, err = run(capsys, "loops", "show", "nope", *t)
    assert (code, out) == (1, "")
    assert err.startswith("nextbest loops show: NOT_FOUND: ") and err.count("\n") == 1

    code, _, err = run(capsys, "loops", "update", "default", *t, "--policy", "vw:--no-such-option")
    assert code == 1 and "INVALID_ARGUMENT" in err and err.count("\n") == 1
    code, _, err = run(capsys, "policy", "set", "default", "nonsense:x", *t)
    assert code == 1 and "INVALID_ARGUMENT" in err
    code, _, err = run(capsys, "loops", "update", "default", *t, "--learning-mode", "sometimes")
    assert code == 2 and "unknown value 'sometimes'" in err
    code, _, err = run(capsys, "loops", "update", "default", *t)
    assert code == 2 and "nothing to change" in err
    code, _, err = run(capsys, "stats", "nope", *t)
    assert code == 1 and "NOT_FOUND" in err
    code, _, _ = run(capsys, "policy", "rollback", "default", "not-a-number", *t)
    assert code == 2
    assert client.get_loop("default") == before

    code, _, err = run(capsys, "loops", "list", "--target", "127.0.0.1:1", "--timeout", "2")
    assert code == 1 and "UNAVAILABLE" in err and err.count("\n") == 1


@pytest.mark.slow
def test_policy_commands_and_stats(server, capsys):
    srv, client = server
    t = ("--target", srv.address)
    client.update_loop("default", reward_wait_seconds=0.2, publish_interval_seconds=0.2)
    assert run(capsys, "policy", "set", "default", SPEC, *t)[0] == 0
    assert client.get_loop("default").policy == SPEC
    assert run(capsys, "policy", "shadow", "default", SHADOW, *t)[0] == 0
    assert list(client.get_loop("default").shadow_policies) == [SHADOW]
    code, _, err = run(capsys, "policy", "promote", "default", "vw:--cb_explore_adf --first 3", *t)
    assert code == 1 and "NOT_FOUND" in err

    for i in range(30):
        r = client.rank([action("a", "email"), action("b", "push")], {"u": {"x": i % 3}}, event_id=f"e{i}")
        client.reward(r.event_id, 1.0 if r.chosen_action_id == "a" else 0.0)
    wait_for(lambda: len(client.list_models("default")) >= 2, timeout=60)

    code, out, _ = run(capsys, "policy", "models", "default", *t)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["VERSION", "CREATED"] and any("*" in line for line in lines[1:])
    code, out, _ = run(capsys, "policy", "models", "default", *t, "--json")
    models = json.loads(out)
    first = int(models[0]["version"])
    code, out, err = run(capsys, "policy", "rollback", "default", str(first), *t, "--json")
    assert code == 0, err
    assert json.loads(out)["live"] is True

    code, out, _ = run(capsys, "stats", "default", *t)
    assert code == 0 and "decisions" in out and "30" in out
    code, out, _ = run(capsys, "stats", "default", *t, "--json")
    assert int(json.loads(out)["decisions"]) == 30

    assert run(capsys, "policy", "promote", "default", SHADOW, *t)[0] == 0
    config = client.get_loop("default")
    assert config.policy == SHADOW and not config.shadow_policies


def test_model_export_and_import(server, capsys, tmp_path):
    srv, client = server
    t = ("--target", srv.address)
    client.create_loop("source", policy=SPEC, reward_wait_seconds=0.2, publish_interval_seconds=0.2)
    client.create_loop("target", policy=SPEC)
    for i in range(20):
        r = client.rank([action("a", "email"), action("b", "push")], loop="source", event_id=f"s{i}")
        client.reward(r.event_id, 1.0, loop="source")
    wait_for(lambda: any(m.learned_seq >= 1 for m in client.list_models("source")), timeout=30)

    path = tmp_path / "model.bin"
    code, out, err = run(capsys, "model", "export", "source", "-o", str(path), *t)
    assert code == 0, err
    assert path.stat().st_size > 0 and "wrote version" in out
    code, out, err = run(capsys, "model", "import", "target", SPEC, str(path), *t, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["live"] is True and info["spec"] == SPEC
    assert client.export_model("target").data == path.read_bytes()

    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    versions = len(client.list_models("target"))
    code, _, err = run(capsys, "model", "import", "target", SPEC, str(junk), *t)
    assert code == 1 and "INVALID_ARGUMENT" in err
    assert len(client.list_models("target")) == versions
    code, _, err = run(capsys, "model", "import", "target", SPEC, str(tmp_path / "missing.bin"), *t)
    assert code == 1 and "missing.bin" in err


def test_api_key_from_flag_or_environment(tmp_path, capsys, monkeypatch):
    keys = ApiKeys.parse(json.dumps({ADMIN_KEY: ["decide", "admin"], DECIDE_KEY: ["decide"]}), "test")
    with running_server(tmp_path / "store", api_keys=keys, train=False, client_options={"api_key": ADMIN_KEY}) as (
        srv,
        client,
    ):
        t = ("--target", srv.address)
        monkeypatch.delenv("NEXTBEST_API_KEY", raising=False)
        code, _, err = run(capsys, "loops", "create", "x", *t)
        assert code == 1 and "UNAUTHENTICATED" in err
        code, _, err = run(capsys, "loops", "create", "x", *t, "--api-key", DECIDE_KEY)
        assert code == 1 and "PERMISSION_DENIED" in err
        assert "x" not in {c.name for c in client.list_loops()}
        assert run(capsys, "loops", "create", "x", *t, "--api-key", ADMIN_KEY)[0] == 0
        monkeypatch.setenv("NEXTBEST_API_KEY", ADMIN_KEY)
        code, out, _ = run(capsys, "loops", "list", *t)
        assert code == 0 and "x" in out


LOOPS_TOML = f"""
[loops.checkout]
policy = "{SPEC}"
reward_wait_seconds = 120
reward_aggregation = "SUM"
shadow_policies = ["{SHADOW}"]

[loops.default]
retention_days = 3
"""


def test_apply_plans_creates_updates_and_prunes_only_when_asked(server, capsys, tmp_path):
    srv, client = server
    t = ("--target", srv.address)
    client.create_loop("old")
    path = tmp_path / "loops.toml"
    path.write_text(LOOPS_TOML)

    code, out, err = run(capsys, "apply", str(path), *t, "--dry-run")
    assert code == 0, err
    assert out.splitlines() == [
        f"+ create checkout: policy '{SPEC}'; reward_aggregation SUM; reward_wait_seconds 120.0; "
        f"shadow_policies ['{SHADOW}']",
        "~ update default: retention_days 0.0 -> 3.0",
        "  keep old (not in the file; --prune deletes it)",
        "dry run: nothing changed",
    ]
    assert {c.name for c in client.list_loops()} == {"default", "old"}

    code, out, err = run(capsys, "apply", str(path), *t)
    assert code == 0, err
    assert out.splitlines()[-1] == "applied 2 changes"
    checkout = client.get_loop("checkout")
    assert (checkout.policy, checkout.reward_wait_seconds, list(checkout.shadow_policies)) == (SPEC, 120, [SHADOW])
    assert client.get_loop("default").retention_days == 3
    assert "old" in {c.name for c in client.list_loops()}

    code, out, _ = run(capsys, "apply", str(path), *t)
    assert code == 0 and out.splitlines()[-1] == "nothing to change"

    # promoting the shadow by declaring it as the policy removes it from the shadows, as SetPolicy does
    path.write_text(f'[loops.checkout]\npolicy = "{SHADOW}"\n')
    code, out, err = run(capsys, "apply", str(path), *t, "--prune", "--json")
    assert code == 0, err
    plan = {step["loop"]: step["action"] for step in json.loads(out)["plan"]}
    assert plan == {"checkout": "update", "default": "delete", "old": "delete"}
    assert [c.name for c in client.list_loops()] == ["checkout"]
    checkout = client.get_loop("checkout")
    assert checkout.policy == SHADOW and not checkout.shadow_policies


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[loops.a]\nfrobnicate = 1\n", "loops.a.frobnicate: unknown field"),
        ("[loops.a]\nversion = 3\n", "loops.a.version: unknown field"),
        ('[loops.a]\nreward_wait_seconds = "soon"\n', "loops.a.reward_wait_seconds: must be a number"),
        ('[loops.a]\nlearning_mode = "SOMETIMES"\n', "loops.a.learning_mode: unknown value 'SOMETIMES'"),
        ('[loops.a]\nshadow_policies = "x"\n', "loops.a.shadow_policies: must be a list of strings"),
        ("[other]\n", "other: unknown key"),
        ("loops = 3\n", "loops: must be a table"),
        ("[loops\n", "not valid TOML"),
    ],
)
def test_apply_refuses_a_bad_file_before_calling(server, capsys, tmp_path, text, message):
    srv, client = server
    path = tmp_path / "loops.toml"
    path.write_text(text)
    code, out, err = run(capsys, "apply", str(path), "--target", srv.address)
    assert (code, out) == (2, "")
    assert message in err
    assert [c.name for c in client.list_loops()] == ["default"]


def test_apply_refused_by_the_server_says_why(server, capsys, tmp_path):
    srv, client = server
    path = tmp_path / "loops.json"
    path.write_text(json.dumps({"loops": {"a": {"policy": SPEC}, "b": {"policy": "vw:--cb_explore_adf -d /x"}}}))
    code, out, err = run(capsys, "apply", str(path), "--target", srv.address)
    assert code == 1
    assert "done: create a" in out
    assert err.startswith("nextbest apply: INVALID_ARGUMENT: ") and "config.policy" in err
    assert sorted(c.name for c in client.list_loops()) == ["a", "default"]


@pytest.mark.slow
def test_serve_applies_a_loops_file_at_start(tmp_path):
    path = tmp_path / "loops.toml"
    path.write_text(LOOPS_TOML)
    argv = [sys.executable, "-m", "nextbest", "--log-level", "WARNING", "serve", "--store", str(tmp_path / "data")]
    proc = subprocess.Popen([*argv, "--port", "0", "--loops", str(path)], stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        while not (lines and "serving on" in lines[-1]):
            lines.append(proc.stdout.readline())
            assert lines[-1], "serve exited early"
        assert lines[:-1] == ["nextbest: --loops: create checkout\n", "nextbest: --loops: create default\n"]
        address = lines[-1].split("serving on ")[1].split()[0]
        with Client(address) as client:
            client.wait_ready()
            assert [c.name for c in client.list_loops()] == ["checkout", "default"]
            assert client.get_loop("checkout").reward_wait_seconds == 120
            assert client.get_loop("default").retention_days == 3
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    bad = tmp_path / "bad.toml"
    bad.write_text('[loops.a]\npolicy = "vw:--cb_explore_adf -d /x"\n')
    out = subprocess.run([*argv, "--port", "0", "--loops", str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "nextbest serve: --loops: config.policy" in out.stderr


def test_contact_policy_set_and_get(server, capsys, tmp_path):
    srv, client = server
    target = ["--target", srv.address]
    (tmp_path / "rules.toml").write_text('[[rules]]\nname = "gap"\nmin_gap_seconds = 3600\n')
    code, out, _ = run(capsys, "contact-policy", "set", str(tmp_path / "rules.toml"), *target)
    assert code == 0 and out.splitlines() == ["version 1, 1 rules", '{"min_gap_seconds": 3600, "name": "gap"}']
    code, out, _ = run(capsys, "contact-policy", "get", "--json", *target)
    assert code == 0 and json.loads(out)["version"] == "1"
    (tmp_path / "bad.json").write_text('{"rules": [{"name": "gap", "min_gap_seconds": -1}]}')
    code, _, err = run(capsys, "contact-policy", "set", str(tmp_path / "bad.json"), *target)
    assert code == 1 and "INVALID_ARGUMENT: rules[0] ('gap').min_gap_seconds" in err
    assert client.get_contact_policy().version == 1
