"""VW options never reach files, ports or hosts: from a spec, or from the header of a model VW loads."""

from __future__ import annotations

import os
import shlex
import socket
import struct
from pathlib import Path

import grpc
import pytest
import vowpalwabbit
from hypothesis import given, settings
from hypothesis import strategies as st

from nextbest import policies
from nextbest.policies.envelope import seal, unseal
from nextbest.policies.vw_options import ALLOWED, model_options, parse_args
from nextbest.v1 import admin_pb2

SPEC = "vw:--cb_explore_adf --epsilon 0.1 -q ::"


def murmur3_32(data: bytes, seed: int) -> int:
    """MurmurHash3 x86_32, VW's `uniform_hash`: a model header's checksum chains it over the header's fields."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF

    def scramble(k: int) -> int:
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        return (k * c2) & mask

    h = seed & mask
    body = len(data) // 4 * 4
    for (k,) in struct.iter_unpack("<I", data[:body]):
        h ^= scramble(k)
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    if len(data) > body:
        h ^= scramble(int.from_bytes(data[body:], "little"))
    h ^= len(data)
    for shift, multiplier in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h = ((h ^ (h >> shift)) * multiplier) & mask
    return h ^ (h >> 16)


def _string(value: bytes) -> list[bytes]:
    return [struct.pack("<I", len(value)), value]


def craft(model: bytes, options: str, *, model_id: bytes = b"\x00", ngrams: tuple[bytes, ...] = ()) -> bytes:
    """`model` (a VW 9 model) with its header's id, `--ngram`s and option string replaced and its checksum
    recomputed as VW computes it (murmur3 chained over each field it reads after the version), so VW loads it."""
    at = 0

    def take(n: int) -> bytes:
        nonlocal at
        at += n
        return model[at - n : at]

    def uint32() -> int:
        return int(struct.unpack("<I", take(4))[0])

    version = take(4)
    version += take(struct.unpack("<I", version)[0])
    take(uint32())  # id
    fixed = take(1 + 4 + 4 + 4 + 4)  # 'm', min and max label, bits, lda
    for _ in range(uint32()):  # ngrams
        take(3)
    for _ in range(uint32()):  # skips
        take(3)
    take(uint32())  # options
    take(8)  # checksum
    fields = [*_string(model_id), fixed[:1], fixed[1:5], fixed[5:9], fixed[9:13], fixed[13:]]
    fields += [struct.pack("<I", len(ngrams)), *ngrams, struct.pack("<I", 0)]
    fields += _string(options.encode() + b"\x00")
    checksum = 0
    for field in fields:
        checksum = murmur3_32(field, checksum)
    return version + b"".join(fields) + struct.pack("<II", 4, checksum) + model[at:]


def vw_model(spec: str = SPEC) -> bytes:
    return unseal("vw", policies.create(spec).save())


def stored_options(model: bytes) -> str:
    start = model.index(b" --")
    return model[start : model.index(b"\x00", start)].decode()


def attacks(directory: Path) -> dict[str, str]:
    """Options that, stored in a model, made VW write files (where named), listen or send on load."""
    return {
        "--final_regressor": f"--final_regressor {directory}/final.vw",
        "--invert_hash": f"--invert_hash {directory}/inverted.txt",
        "--readable_model": f"--readable_model {directory}/readable.txt",
        "--dump_json_weights_experimental": f"--dump_json_weights_experimental {directory}/weights.json",
        "--sendto": "--sendto 127.0.0.1:1",
        "--daemon": "--daemon --port 1",
        "--data": f"--data {directory}/data.txt",
    }


def test_the_crafted_model_is_what_vw_loads(tmp_path):
    """The test's crafting is real: VW itself loads a recrafted model and obeys the options put in it."""
    model = vw_model()
    assert craft(model, stored_options(model)) == model
    target = tmp_path / "written.vw"
    crafted = craft(model, f"{stored_options(model)} --final_regressor {target}")
    path = tmp_path / "crafted.vw"
    path.write_bytes(crafted)
    vowpalwabbit.Workspace(arg_list=["-i", str(path), "--quiet"]).finish()
    assert target.exists()


@pytest.mark.parametrize("option", list(attacks(Path("/x"))))
def test_import_of_a_model_with_a_forbidden_option_is_refused_and_never_executed(served, tmp_path, option):
    _, client = served
    client.create_loop("victim", policy=SPEC)
    model = vw_model()
    crafted = craft(model, f"{stored_options(model)} {attacks(tmp_path)[option]}")
    with pytest.raises(grpc.RpcError) as e:
        client.admin.ImportModel(iter([admin_pb2.ImportModelRequest(loop="victim", spec=SPEC, data=crafted)]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"VW option {option} is not allowed" in e.value.details()
    assert os.listdir(tmp_path) == ["store"]  # nothing written
    assert client.admin.ListModels(admin_pb2.ListModelsRequest(loop="victim")).models == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_id": b"x --final_regressor /tmp/x\x00"}, "--id"),
        ({"model_id": b""}, "--id"),  # VW would read the version left in its buffer as the id
        ({"ngrams": (b"2a\x00",)}, "--ngram"),
    ],
)
def test_options_vw_derives_from_other_header_fields_are_refused(change, message):
    model = vw_model()
    with pytest.raises(policies.PolicySpecError, match=message):
        policies.load(SPEC, seal("vw", craft(model, stored_options(model), **change)))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--cb_explore_adf --epsilon=0.1", "where an option was expected"),  # VW reads '--epsilon=0.1' as a name
        ("--cb_explore_adf -q ::", "where an option was expected"),  # and '-q' as a value of the option before
        ("--cb_explore_adf --epsilon", "missing its value"),
        ("--cb_explore_adf --epsilon --final_regressor", "missing its value"),
        ("--cb_explore_adf --bit_precision 18", "given twice"),
        ("--cb_explore_adf --epsilon 0.1\t--sendto x", "only printable ASCII"),
        ("--epsilon 0.1", "not a --cb_explore_adf model"),
    ],
)
def test_header_options_are_read_as_vw_reads_them(options, message):
    with pytest.raises(ValueError, match=message):
        model_options(craft(vw_model(), options))


def test_every_load_path_checks_the_header(tmp_path):
    """Catalog, learner and import all load through policies.load: the check is in the VW family's _load."""
    target = tmp_path / "final.vw"
    model = vw_model()
    crafted = seal("vw", craft(model, f"{stored_options(model)} --final_regressor {target}"))
    with pytest.raises(policies.PolicySpecError, match="--final_regressor"):
        policies.load(SPEC, crafted)
    assert not target.exists()
    assert policies.load(SPEC, seal("vw", model)).pmf is not None  # a model as VW saved it still loads


def test_a_port_named_in_a_model_never_listens(served):
    _, client = served
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client.create_loop("victim", policy=SPEC)
    model = vw_model()
    crafted = craft(model, f"{stored_options(model)} --daemon --port {port}")
    with pytest.raises(grpc.RpcError) as e:
        client.admin.ImportModel(iter([admin_pb2.ImportModelRequest(loop="victim", spec=SPEC, data=crafted)]))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def _attack_specs(directory: Path, port: int) -> list[tuple[str, str]]:
    """(VW arguments, the option the refusal names): each got through the denylist."""
    return [
        (f"-f{directory}/final.vw", "VW option -f is not allowed"),
        ("-d/dev/zero", "VW option -d is not allowed"),
        (f"-p{directory}/predictions", "VW option -p is not allowed"),
        (f"-r{directory}/raw", "VW option -r is not allowed"),
        ("-i/etc/passwd", "VW option -i is not allowed"),
        (f"--dump_json_weights_experimental {directory}/w.json", "--dump_json_weights_experimental"),
        (f"--epsilon_decay --epsilon_decay_audit {directory}/audit", "--epsilon_decay"),
        (f"--sendto 127.0.0.1:{port}", "--sendto"),
        (f"--dictionary_path {directory}", "--dictionary_path"),
        (f"--dictionary u:{directory}/d.txt", "--dictionary"),
        (f"--span_server 127.0.0.1 --span_server_port {port}", "--span_server"),
        ("-qu:", "VW option -q: write its value apart"),  # a glued short option: write '-q u:'
        ("--interactions ::::::", "--interactions"),
        ("--experimental_full_name_interactions a|b|c|d", "--experimental_full_name_interactions"),
        ("-b 30", "--bit_precision"),
        ("--epsilon 0.1 --epsilon 0.2", "--epsilon is given twice"),
    ]


@pytest.fixture
def listener():
    """A loopback port that is listening: what a refused `--sendto`/`--span_server` would have connected to."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        s.settimeout(0.2)
        yield s


def _rejects(option: str, call, *args, **kwargs) -> None:
    with pytest.raises(grpc.RpcError) as e:
        call(*args, **kwargs)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert option in e.value.details()


@pytest.mark.slow
def test_specs_that_reach_files_or_sockets_are_refused_by_every_admin_call(served, tmp_path, monkeypatch, listener):
    from nextbest.testing import wait_for

    _, client = served
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    client.create_loop("loop", policy=SPEC, reward_wait_seconds=0.05)
    for _ in range(2):  # Evaluate checks specs once it has events
        client.reward(client.rank([client_action("a"), client_action("b")], loop="loop").event_id, 1.0, loop="loop")
    wait_for(lambda: client.stats("loop").joined == 2)
    for args, option in _attack_specs(work, listener.getsockname()[1]):
        spec = f"vw:--cb_explore_adf {args}"
        _rejects(option, client.create_loop, "other", policy=spec)
        _rejects(option, client.update_loop, "loop", policy=spec)
        shadowed = client.get_loop("loop")
        shadowed.shadow_policies.append(spec)
        _rejects(option, client.admin.UpdateLoop, admin_pb2.UpdateLoopRequest(config=shadowed))
        for mode in (admin_pb2.POLICY_MODE_REPLACE, admin_pb2.POLICY_MODE_SHADOW):
            _rejects(option, client.admin.SetPolicy, admin_pb2.SetPolicyRequest(loop="loop", spec=spec, mode=mode))
        _rejects(option, client.admin.Evaluate, admin_pb2.EvaluateRequest(loop="loop", specs=[spec]))
    assert os.listdir(work) == []
    with pytest.raises(TimeoutError):
        listener.accept()
    assert client.get_loop("loop").policy == SPEC


def test_refusals_never_tell_whether_a_server_file_exists(tmp_path):
    def message(path: str) -> str:
        with pytest.raises(policies.PolicySpecError) as e:
            policies.create(f"vw:--cb_explore_adf --initial_regressor {path}")
        return str(e.value)

    assert message("/etc/passwd") == message(str(tmp_path / "missing"))


def client_action(action_id: str):
    from nextbest.client import action

    return action(action_id)


def _vw_option_names() -> tuple[list[str], list[str]]:
    """Every long and short option VW 9 lists in its help."""
    config = vowpalwabbit.Workspace("--quiet").get_config(filtered_enabled_reductions_only=False)
    options = [o for groups in config.values() for _, group in groups for o in group]
    return sorted({o.name for o in options}), sorted({o.short_name for o in options if o.short_name})


LONG_NAMES, SHORT_NAMES = _vw_option_names()
_VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "0.5", "1e300", "nan", "inf", "1_0", "٣", "::", "ua", "::::", "-a", "--x"]),
    st.sampled_from(["/tmp/x", "model.vw", "127.0.0.1:1", "u:d.txt", "'q'", '"', "a b", "é", "\\x20"]),
    st.text(max_size=6),
)


def _valid(name: str) -> st.SearchStrategy[str]:
    """`--name` with a value within its range (VW may still refuse the combination)."""
    option = ALLOWED[name]
    if option.kind == "flag":
        return st.just(f"--{name}")
    if option.kind == "choice":
        values = st.sampled_from(sorted(option.choices))
    elif option.kind == "namespaces":
        values = st.sampled_from(["::", "ua", ":::", "u:", "a", "uaa"]).filter(
            lambda v: option.low <= len(v) <= option.high
        )
    elif option.kind == "names":
        values = st.sampled_from(["action|:", "user|action", ":|:", "a|b|c"]).filter(
            lambda v: option.low <= v.count("|") + 1 <= option.high
        )
    elif option.kind == "int":
        values = st.integers(int(option.low), int(min(option.high, option.low + 20))).map(str)
    else:
        values = st.floats(option.low, min(option.high, 100.0)).map(repr)
    return values.map(lambda v: f"--{name} {v}")


_ALLOWED_TOKENS = st.sampled_from(sorted(ALLOWED)).flatmap(_valid)
_TOKENS = st.one_of(
    _ALLOWED_TOKENS,
    st.sampled_from(LONG_NAMES).map(lambda name: f"--{name}"),
    st.tuples(st.sampled_from(LONG_NAMES), _VALUES).map(lambda nv: f"--{nv[0]}={nv[1]}"),
    st.sampled_from(SHORT_NAMES).map(lambda name: f"-{name}"),
    st.tuples(st.sampled_from(SHORT_NAMES), _VALUES).map(lambda nv: f"-{nv[0]}{nv[1]}"),
    _VALUES,
)
_ARGUMENTS = st.one_of(st.lists(_TOKENS, max_size=6), st.lists(_ALLOWED_TOKENS, max_size=4)).flatmap(
    lambda tokens: st.sampled_from([" ".join(tokens), " ".join(map(shlex.quote, tokens))])
)


def _listening_sockets() -> set[str]:
    """Inodes of this process's sockets that listen (TCP over IPv4 or IPv6)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            listening |= {line.split()[9] for line in f.readlines()[1:] if line.split()[3] == "0A"}
    return mine & listening


@pytest.mark.slow
def test_no_generated_vw_arguments_reach_beyond_the_allowlist(tmp_path):
    """Arguments made of every option VW lists (glued, `=`, quoted, unicode values) are either all on the
    allowlist, with checked values, or refused with PolicySpecError; nothing is written and nothing listens."""
    listening = _listening_sockets()
    work = tmp_path / "cwd"
    work.mkdir()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        _fuzz_specs()
    finally:
        os.chdir(cwd)
    assert os.listdir(work) == []
    assert _listening_sockets() <= listening


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(_ARGUMENTS)
def _fuzz_specs(arguments: str) -> None:
    try:
        args = parse_args(f"--cb_explore_adf {arguments}")
    except policies.PolicySpecError:
        return
    names = [a[2:] for a in args if a.startswith("--") and a[2:] in ALLOWED]
    assert len(names) + sum(ALLOWED[n].kind != "flag" for n in names) == len(args)
    assert parse_args(" ".join(args)) == args  # canonical: what VW is given reads back the same
    spec = f"vw:--cb_explore_adf {arguments}"
    try:
        policy = policies.create(spec)
    except policies.PolicySpecError as e:
        assert "VW rejected the arguments" in str(e)
        return
    policies.load(spec, policy.save())  # whatever VW stores in the model for allowed options is allowed on load


def test_a_crafted_model_in_the_store_is_never_loaded_by_a_worker_or_the_learner(tmp_path):
    """A model that reached the store (written there by anyone with access to it) is checked the same way by the
    serving catalog, which keeps serving the previous model, and by a learner adopting it."""
    from nextbest.server.learner import Learner
    from nextbest.testing import running_server

    target = tmp_path / "final.vw"
    model = vw_model(SPEC)
    crafted = seal("vw", craft(model, f"{stored_options(model)} --final_regressor {target}"))
    with running_server(tmp_path / "store", train=False) as (server, client):
        client.create_loop("victim", policy=SPEC)
        server.store.models.publish("victim", SPEC, crafted, 0)
        server.catalog.refresh()
        assert client.rank([client_action("a"), client_action("b")], loop="victim").model_version == "0"
        with pytest.raises(policies.PolicySpecError, match="--final_regressor"):
            Learner(server.store, "victim", client.get_loop("victim"))
    assert not target.exists()


def test_vw_messages_are_passed_on_without_paths():
    from nextbest.policies.vw import _vw_error

    message = _vw_error(RuntimeError("can't open: /srv/secret/model.vw, errno = 2\nat C:\\vw\\parse_args.cc:12"))
    assert message == "can't open: <path>, errno = 2"
