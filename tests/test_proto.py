"""The generated code in nextbest/v1 is what tools/gen_proto.py writes from proto/ today."""

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import gen_proto  # noqa: E402


def test_generated_code_is_fresh(tmp_path):
    fresh = {p.name for p in gen_proto.generate(tmp_path)}
    committed = {p.name for p in (ROOT / "nextbest" / "v1").iterdir() if p.suffix in (".py", ".pyi")}
    assert fresh == committed, "run: python tools/gen_proto.py"
    stale = [name for name in sorted(fresh) if not filecmp.cmp(tmp_path / name, ROOT / "nextbest" / "v1" / name, False)]
    assert not stale, f"stale generated files {stale}; run: python tools/gen_proto.py"


def test_contract_names():
    from nextbest.v1 import admin_pb2, decision_pb2

    decision = decision_pb2.DESCRIPTOR.services_by_name["DecisionService"]
    assert {m.name for m in decision.methods} == {
        "Rank",
        "RankBatch",
        "Reward",
        "Activate",
        "RewardStream",
        "RankMultiSlot",
    }
    admin = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
    assert {"CreateLoop", "GetLoop", "ListLoops", "UpdateLoop", "DeleteLoop", "GetStats"} <= {
        m.name for m in admin.methods
    }
    assert decision_pb2.DESCRIPTOR.package == "nextbest.v1"


def _buf() -> str | None:
    import shutil

    return shutil.which("buf", path=str(Path(sys.executable).parent)) or shutil.which("buf")


@pytest.mark.skipif(_buf() is None, reason="the buf binary is not installed (pip install buf-bin)")
def test_buf_lint_passes():
    out = subprocess.run([_buf(), "lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_file_names_its_package_for_other_languages():
    from nextbest.v1 import admin_pb2, decision_pb2, records_pb2, types_pb2

    for module in (admin_pb2, decision_pb2, records_pb2, types_pb2):
        options = module.DESCRIPTOR.GetOptions()
        assert options.go_package.endswith(";nextbestv1"), module.__name__
        assert (options.java_package, options.java_multiple_files) == ("io.nextbest.v1", True)
        assert options.csharp_namespace == "Nextbest.V1"
