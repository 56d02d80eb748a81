"""The dashboard: its read endpoints over a real server and store, and its pages in Debian's headless chromium."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path

import pytest

from nextbest.server.auth import ApiKeys
from nextbest.server.http import dashboard
from nextbest.server.store import Stream, open_store
from nextbest.server.store.base import Entry
from nextbest.testing import CHROMIUM, chromium_page, http_call, running_server, send_traffic, wait_for
from nextbest.v1 import records_pb2

DECIDE_KEY = "decide-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
KEYS = {DECIDE_KEY: ["decide"], ADMIN_KEY: ["admin", "decide"]}
DECIDE = {"Authorization": f"Bearer {DECIDE_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
STATIC = Path(dashboard.__file__).parent / "static"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server with API keys, two loops with joined traffic and a few model versions of `onboarding`."""
    keys = ApiKeys.parse(json.dumps(KEYS), "test keys")
    store = tmp_path_factory.mktemp("store")
    with running_server(store, api_keys=keys, http_port=0, client_options={"api_key": ADMIN_KEY}) as (server, client):
        client.create_loop("onboarding", reward_wait_seconds=0.5, publish_interval_seconds=0.2, holdout_fraction=0.2)
        client.create_loop("winback", reward_wait_seconds=0.5)
        for seed in range(3):
            send_traffic(client, "onboarding", 40, seed=seed)
            wait_for(lambda n=40 * (seed + 1): client.stats("onboarding").joined == n)
        send_traffic(client, "winback", 25, seed=9)
        wait_for(lambda: client.stats("winback").joined == 25)
        wait_for(lambda: len(client.list_models("onboarding")) >= 2)
        yield server, client


def get(server, path: str, headers=DECIDE):
    return http_call(server.http_port, "GET", path, headers=headers)


def test_every_page_path_serves_the_page_and_its_assets_without_a_key(keyed):
    server, _ = keyed
    page = get(keyed[0], "/", headers={})
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    for path in ("/loops/onboarding", "/loops/onboarding/decisions", "/loops/x/decisions/e-1", "/loops/x/evaluate"):
        assert get(server, path, headers={}).body == page.body
    script = get(server, "/dashboard/assets/dashboard.js", headers={})
    assert script.status == 200 and "javascript" in script.headers["content-type"]
    missing = get(server, "/dashboard/assets/nope.js", headers={})
    assert missing.status == 404 and missing.json()["code"] == "NOT_FOUND"


def test_the_page_assets_are_under_one_megabyte():
    assert sum(f.stat().st_size for f in STATIC.iterdir()) < 1_000_000


def test_reads_need_a_decide_key_and_tell_the_page_whether_it_may_act(keyed):
    server, _ = keyed
    assert get(server, "/dashboard/api/loops", headers={}).status == 401
    assert get(server, "/dashboard/api/session").json() == {"admin": False}
    assert get(server, "/dashboard/api/session", headers=ADMIN).json() == {"admin": True}
    forged = http_call(server.http_port, "POST", "/v1/loops/onboarding/models/1:rollback", headers=DECIDE)
    assert forged.status == 403 and "admin" in forged.json()["message"]


def test_the_overview_has_each_loop_with_its_stats(keyed):
    server, client = keyed
    loops = {item["config"]["name"]: item for item in get(server, "/dashboard/api/loops").json()["loops"]}
    assert set(loops) == {"default", "onboarding", "winback"}
    winback = loops["winback"]
    assert int(winback["stats"]["decisions"]) == client.stats("winback").decisions == 25
    assert winback["recent"]["decisions_last_minute"] == 25
    joined = server.store.log.read(Stream.JOINED, "winback", 0, 99)
    rewards = [records_pb2.JoinedEvent.FromString(raw).reward for _, raw in joined]
    assert winback["recent"]["reward_last_hour"]["mean"] == pytest.approx(sum(rewards) / 25)
    assert winback["recent"]["reward_last_hour"]["events"] == winback["recent"]["reward_last_hour"]["n"] == 25


def test_a_decision_shows_its_logged_probability_join_and_rewards(keyed):
    server, _ = keyed
    store = server.store
    raw = store.log.get(Stream.DECISIONS, "winback", "winback-9-3")
    answer = get(server, "/dashboard/api/loops/winback/decisions/winback-9-3").json()
    logged = records_pb2.DecisionRecord.FromString(raw)
    assert answer["decision"]["pmf"] == list(logged.pmf)
    assert answer["decision"]["chosenIndex"] == logged.chosen_index
    assert answer["state"] in ("rewarded", "defaulted") and answer["joined"]["rewardCount"] == len(answer["rewards"])
    missing = get(server, "/dashboard/api/loops/winback/decisions/nope")
    assert missing.status == 404 and "event_id" in missing.json()["message"]
    assert get(server, "/dashboard/api/loops/nope/decisions/x").status == 404


def test_browsing_filters_newest_first_and_pages(keyed):
    server, _ = keyed
    page = get(server, "/dashboard/api/loops/winback/decisions?limit=10").json()
    seqs = [d["seq"] for d in page["decisions"]]
    assert seqs == list(range(25, 15, -1)) and page["next_before"] == 16
    rest = get(server, "/dashboard/api/loops/winback/decisions?limit=50&before=16").json()
    assert [d["seq"] for d in rest["decisions"]] == list(range(15, 0, -1))
    every = page["decisions"] + rest["decisions"]
    subject = every[0]["subject_id"]
    by_subject = get(server, f"/dashboard/api/loops/winback/decisions?subject={subject}&limit=50").json()
    assert {d["event_id"] for d in by_subject["decisions"]} == {
        d["event_id"] for d in every if d["subject_id"] == subject
    }
    action = every[0]["action"]
    by_action = get(server, f"/dashboard/api/loops/winback/decisions?action={action}&limit=50").json()["decisions"]
    assert by_action and all(d["action"] == action for d in by_action)
    pending = get(server, "/dashboard/api/loops/winback/decisions?reward=pending").json()["decisions"]
    assert pending == []  # every decision has joined
    bad = get(server, "/dashboard/api/loops/winback/decisions?reward=maybe")
    assert bad.status == 400 and "'reward'" in bad.json()["message"]
    assert get(server, "/dashboard/api/loops/winback/decisions?limit=100000").status == 400


def test_the_series_counts_decisions_by_minute_channel_and_action(keyed):
    server, _ = keyed
    series = get(server, "/dashboard/api/loops/winback/series?minutes=5").json()
    assert len(series["minutes"]) == 5 and series["truncated"] is False
    assert sum(sum(c.values()) for c in series["channels"].values()) == 25
    assert sum(sum(c.values()) for c in series["actions"].values()) == 25
    assert (
        sum(v["n"] for v in series["reward"]["treatment"].values() if v)
        + sum(v["n"] for v in series["reward"]["holdout"].values() if v)
        == 25
    )


def test_first_since_finds_the_first_entry_of_a_time_window_by_binary_search(tmp_path):
    with open_store(str(tmp_path / "s")) as store:
        records = [records_pb2.RewardRecord(event_id=f"e{i}", timestamp=100.0 + i // 3) for i in range(30)]
        store.log.append(Stream.REWARDS, "l", [Entry(None, r.SerializeToString()) for r in records])
        assert dashboard.first_since(store, Stream.REWARDS, "l", 0) == 1
        assert dashboard.first_since(store, Stream.REWARDS, "l", 105) == 16  # seqs 16, 17, 18 are stamped 105
        assert dashboard.first_since(store, Stream.REWARDS, "l", 104.5) == 16
        assert dashboard.first_since(store, Stream.REWARDS, "l", 200) == 31
        store.log.trim(Stream.REWARDS, "l", 20)
        assert dashboard.first_since(store, Stream.REWARDS, "l", 0) == 20
        assert dashboard.first_since(store, Stream.REWARDS, "l", 105) == 20
        assert dashboard.first_since(store, Stream.REWARDS, "empty", 0) == 1


def test_a_time_window_says_when_the_scan_limit_cut_it(tmp_path):
    with open_store(str(tmp_path / "s")) as store:
        older = [records_pb2.DecisionRecord(event_id=f"o{i}", timestamp=50.0) for i in range(3)]
        newer = [records_pb2.DecisionRecord(event_id=f"n{i}", timestamp=100.0) for i in range(5001)]
        store.log.append(Stream.DECISIONS, "l", [Entry(None, r.SerializeToString()) for r in older + newer])
        found, cut = dashboard._window(store, Stream.DECISIONS, "l", 0.0, records_pb2.DecisionRecord)
        assert len(found) == 5000 and cut is True and found[0].event_id == "n5000"
        store.log.append(Stream.DECISIONS, "m", [Entry(None, r.SerializeToString()) for r in older + newer[:10]])
        found, cut = dashboard._window(store, Stream.DECISIONS, "m", 60.0, records_pb2.DecisionRecord)
        assert len(found) == 10 and cut is False
        found, cut = dashboard._window(store, Stream.DECISIONS, "m", 0.0, records_pb2.DecisionRecord)
        assert len(found) == 13 and cut is False


def test_newest_reads_at_most_its_limit_from_the_end(tmp_path):
    with open_store(str(tmp_path / "s")) as store:
        store.log.append(Stream.DECISIONS, "l", [Entry(None, b"%d" % i) for i in range(1, 1201)])
        read = list(dashboard.newest(store, Stream.DECISIONS, "l", limit=700))
        assert [seq for seq, _ in read] == list(range(1200, 500, -1))
        assert [raw for _, raw in read][:2] == [b"1200", b"1199"]
        assert [seq for seq, _ in dashboard.newest(store, Stream.DECISIONS, "l", before=3)] == [2, 1]


# ---------- in the browser ----------

browser = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"no {CHROMIUM}: apt-get install chromium to run the dashboard's browser tests"
)


@pytest.fixture
def page_with(keyed):
    """Open the dashboard in chromium with an API key in the tab's sessionStorage (as the key form keeps it)."""
    pytest.importorskip("playwright", reason="the Python package playwright drives chromium: pip install playwright")
    server, _ = keyed
    with ExitStack() as stack:

        def open_with(key: str | None):
            page = stack.enter_context(chromium_page(f"http://127.0.0.1:{server.http_port}"))
            if key:
                page.add_init_script(f"sessionStorage.setItem('nextbest.apiKey', {json.dumps(key)})")
            return page

        yield open_with


@pytest.mark.slow
@pytest.mark.e2e
@browser
def test_the_overview_shows_each_loop_with_the_counts_of_getstats(keyed, page_with):
    _, client = keyed
    page = page_with(DECIDE_KEY)
    page.goto("/")
    page.wait_for_selector("#loops tbody tr")
    for config in client.list_loops():
        stats = client.stats(config.name)
        row = page.locator(f'#loops tr[data-loop="{config.name}"]')
        assert row.locator('[data-field="decisions"]').inner_text() == f"{stats.decisions:,}"
        assert row.locator('[data-field="rewards"]').inner_text() == f"{stats.rewards:,}"
        assert row.locator('[data-field="joined"]').inner_text() == f"{stats.joined:,}"


@pytest.mark.slow
@pytest.mark.e2e
@browser
def test_the_loop_page_charts_have_data_points(keyed, page_with):
    page = page_with(DECIDE_KEY)
    page.goto("/loops/onboarding")
    page.wait_for_selector("#reward-chart circle.point")
    assert page.locator("#reward-chart circle.point").count() >= 1
    assert page.locator("#channel-chart rect.bar").count() >= 1
    assert page.locator('[data-field="decisions"]').inner_text() == "120"


@pytest.mark.slow
@pytest.mark.e2e
@browser
def test_the_explorer_finds_a_decision_by_event_id_with_its_action_and_probability(keyed, page_with):
    server, _ = keyed
    logged = records_pb2.DecisionRecord.FromString(
        server.store.log.get(Stream.DECISIONS, "onboarding", "onboarding-1-7")
    )
    page = page_with(DECIDE_KEY)
    page.goto("/loops/onboarding/decisions")
    page.get_by_label("Event id").fill("onboarding-1-7")
    page.keyboard.press("Enter")
    page.wait_for_url("**/loops/onboarding/decisions/onboarding-1-7")
    facts = page.locator("#decision-facts")
    facts.wait_for()
    assert facts.locator('[data-field="chosen"]').inner_text() == logged.actions[logged.chosen_index].id
    assert float(facts.locator('[data-field="probability"]').inner_text()) == logged.pmf[logged.chosen_index]
    page.goto("/loops/onboarding/decisions?subject=subject-1")  # browsing by subject, from a pasted link
    page.wait_for_selector("#decisions tbody tr")
    subjects = page.locator("#decisions tbody tr td:nth-child(3)").all_inner_texts()
    assert subjects and set(subjects) == {"subject-1"}


@pytest.mark.slow
@pytest.mark.e2e
@browser
def test_an_admin_rolls_back_a_model_from_the_page(keyed, page_with):
    """A rollback publishes the old version's model as the new live version (AdminService.Rollback)."""
    _, client = keyed
    before = client.list_models("onboarding")
    old = min(m.version for m in before if not m.live)
    page = page_with(ADMIN_KEY)
    page.on("dialog", lambda dialog: dialog.accept())  # the page asks to confirm
    page.goto("/loops/onboarding")
    page.locator(f'button[data-rollback="{old}"]').click()
    newest = max(m.version for m in before)
    live = wait_for(lambda: next((m for m in client.list_models("onboarding") if m.live and m.version > newest), None))
    assert client.export_model("onboarding", version=live.version).data == (
        client.export_model("onboarding", version=old).data
    )
    page.wait_for_selector(f'#models tr[data-version="{live.version}"].chosen')


@pytest.mark.slow
@pytest.mark.e2e
@browser
def test_a_decide_key_sees_no_admin_buttons_and_a_forged_admin_request_gets_403(keyed, page_with):
    page = page_with(None)
    page.goto("/loops/onboarding")
    page.get_by_label("Key", exact=True).fill(DECIDE_KEY)  # the key form opens on the first 401
    page.get_by_role("button", name="Use key").click()
    page.wait_for_selector("#models tbody tr")
    assert page.locator("#role").inner_text() == "read-only"
    assert page.locator("button.admin").count() == 0 and page.locator("#config-text").count() == 0
    status = page.evaluate(
        """async () => (await fetch('/v1/loops/onboarding/models/1:rollback', {method: 'POST',
             headers: {Authorization: 'Bearer ' + sessionStorage.getItem('nextbest.apiKey')}})).status"""
    )
    assert status == 403


@pytest.mark.slow
@pytest.mark.e2e
@browser
def test_an_admin_evaluates_a_candidate_and_shadows_it_from_the_page(keyed, page_with):
    _, client = keyed
    candidate = "vw:--cb_explore_adf --epsilon 0.3"
    page = page_with(ADMIN_KEY)
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto("/loops/winback/evaluate")
    page.get_by_label("Candidate policy specs, one a line").fill(candidate)
    page.get_by_role("button", name="Evaluate", exact=True).click()
    page.wait_for_selector("#estimates tbody tr")
    page.wait_for_selector("#ev-chart circle.point")
    specs = page.locator("#estimates tbody tr td:first-child code").all_inner_texts()
    assert specs[0] == "logged" and candidate in specs
    page.get_by_role("row", name=candidate).get_by_role("button", name="Shadow this").click()
    wait_for(lambda: candidate in client.get_loop("winback").shadow_policies)


@pytest.mark.slow
@pytest.mark.e2e
@browser
def test_the_overview_refreshes_by_itself(keyed, page_with):
    _, client = keyed
    client.create_loop("fresh")
    try:
        page = page_with(DECIDE_KEY)
        page.goto("/")
        cell = page.locator('#loops tr[data-loop="fresh"] [data-field="decisions"]')
        assert cell.inner_text() == "0"
        send_traffic(client, "fresh", 3)
        wait_for(lambda: cell.inner_text() == "3", timeout=30)  # the next refresh, without reloading the page
    finally:
        client.delete_loop("fresh")


@pytest.mark.slow
@pytest.mark.e2e
@browser
def test_an_admin_edits_the_config_and_the_server_validates_it(keyed, page_with):
    _, client = keyed
    page = page_with(ADMIN_KEY)
    page.goto("/loops/winback")
    editor = page.get_by_label("Loop config (JSON; the server validates it)")
    config = json.loads(editor.input_value())
    editor.fill(json.dumps(config | {"holdoutFraction": 2}))
    page.get_by_role("button", name="Save config").click()
    page.get_by_text("holdout_fraction").wait_for()  # the server's message names the field
    assert client.get_loop("winback").holdout_fraction == 0
    editor.fill(json.dumps(config | {"defaultReward": 0.25}))
    page.get_by_role("button", name="Save config").click()
    page.get_by_text("Saved: version").wait_for()
    assert client.get_loop("winback").default_reward == 0.25
