"""benchmarks.subject_rank: a short run measures both sides in turn and reports them."""

import json

from benchmarks import subject_rank
from nextbest.server.store import open_store
from nextbest.server.subjects.history import contacts


def test_a_short_run_measures_each_side_in_every_block(tmp_path):
    out = tmp_path / "subject_rank.json"
    argv = ["--subjects", "20", "--contacts", "3", "--blocks", "2", "--block", "30", "--json", str(out)]
    assert subject_rank.main(argv) == 0
    report = json.loads(out.read_text())
    assert (report["subjects"], report["contacts"], report["instructions"]) == (20, 3, None)
    cpu = report["cpu"]
    assert [len(cpu["us_per_rank"][side]) for side in ("without", "with")] == [2, 2]
    assert all(us > 0 for side in cpu["us_per_rank"].values() for us in side)
    assert cpu["ratio"] == cpu["median_us"]["with"] / cpu["median_us"]["without"]


def test_a_callgrind_side_ranks_on_the_store_it_is_given(tmp_path):
    """What `--instructions` runs under callgrind, once per side: Ranks on a copy of the filled store, whose
    subjects' histories they extend."""
    store = tmp_path / "store"
    subject_rank._fill(store, 5, 2)
    argv = ["--run", str(store), "--subjects", "5", "--ranks", "10", "--with-subjects"]
    assert subject_rank.main(argv) == 0
    opened = open_store(str(store))
    try:
        kept = contacts(opened.subjects.get("subject-0"), 0.0)
        tags = {c.event_id.rsplit("-", 1)[0] for c in kept}  # a workload's event ids are `<its tag>-<i>`
        assert len(kept) == 4 and len(tags) == 2  # two Ranks of the subject filling it, two of the run
    finally:
        opened.close()
