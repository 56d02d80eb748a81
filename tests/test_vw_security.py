"""VW options never reach files, ports or hosts: from a spec, or from the header of a model VW loads."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import grpc
import pytest
import vowpalwabbit

import policies
from policies.envelope import seal, unseal
from policies.vw_options import model_options
from server.pb import admin_pb2

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
