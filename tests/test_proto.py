"""The generated code in server/pb is what tools/gen_proto.py writes from proto/ today."""

import filecmp
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import gen_proto  # noqa: E402


def test_generated_code_is_fresh(tmp_path):
    fresh = {p.name for p in gen_proto.generate(tmp_path)}
    committed = {p.name for p in (ROOT / "server" / "pb").iterdir() if p.suffix in (".py", ".pyi")}
    assert fresh == committed, "run: python tools/gen_proto.py"
    stale = [name for name in sorted(fresh) if not filecmp.cmp(tmp_path / name, ROOT / "server" / "pb" / name, False)]
    assert not stale, f"stale generated files {stale}; run: python tools/gen_proto.py"


def test_contract_names():
    from nextbest.v1 import admin_pb2, decision_pb2

    decision = decision_pb2.DESCRIPTOR.services_by_name["DecisionService"]
    assert {m.name for m in decision.methods} == {"Rank", "Reward", "Activate", "RewardStream"}
    admin = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
    assert {"CreateLoop", "GetLoop", "ListLoops", "UpdateLoop", "DeleteLoop", "GetStats"} <= {
        m.name for m in admin.methods
    }
    assert decision_pb2.DESCRIPTOR.package == "nextbest.v1"
