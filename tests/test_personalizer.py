"""The Personalizer-compatible API (server/http/personalizer.py): both official Azure Personalizer Python SDKs,
unchanged, against a real server (`azure-cognitiveservices-personalizer`: /personalizer/v1.0/...;
`azure-ai-personalizer`: /personalizer/...?api-version=2022-09-01-preview), and hostile input over HTTP."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.cognitiveservices.personalizer import PersonalizerClient as PersonalizerClientV1
from azure.cognitiveservices.personalizer.models import ErrorResponseException, RankableAction, RankRequest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msrest.authentication import CognitiveServicesCredentials

from nextbest import policies
from nextbest.server.auth import ApiKeys
from nextbest.server.config import DEFAULT_POLICY
from nextbest.server.store import Stream, cursor_name
from nextbest.testing import http_call, running_server, wait_for
from nextbest.v1 import records_pb2

KEY = AzureKeyCredential("unused-without-api-keys")
SEGMENTS = ["student", "parent", "retiree"]
ACTIONS = [
    {"id": "email-offer", "features": [{"channel": "email"}, {"offer": {"kind": "discount", "value": 10}}]},
    {"id": "push-tip", "features": [{"channel": "push"}]},
    {"id": "sms-coupon", "features": [{"channel": "sms"}]},
    {"id": "call-back", "features": [{"channel": "call"}]},
]
BEST = {"student": "push-tip", "parent": "email-offer", "retiree": "call-back"}
PREVIEW = "?api-version=2022-09-01-preview"
ROUNDS = 1200


@pytest.fixture
def served(tmp_path):
    """A real server with HTTP, the endpoint the SDKs are given, and a gRPC client."""
    with running_server(tmp_path / "store", http_port=0) as (server, client):
        yield server, client, f"http://127.0.0.1:{server.http_port}"


def _finished(fetch, pending="Running"):
    """A job's answer once its status is no longer `pending` (evaluations run in a process of their own)."""
    return wait_for(lambda: (answer := fetch())["status"] != pending and answer, timeout=180)


def _record(server, event_id, loop="default"):
    return records_pb2.DecisionRecord.FromString(server.store.log.get(Stream.DECISIONS, loop, event_id))


def test_v1_sdk_ranks_rewards_and_activates(served):
    server, client, endpoint = served
    sdk = PersonalizerClientV1(endpoint, CognitiveServicesCredentials("unused"))
    request = RankRequest(
        context_features=[{"user": {"segment": "student", "visits": 3}}, {"device": {"mobile": True}}],
        actions=[RankableAction(id=a["id"], features=a["features"]) for a in ACTIONS],
        excluded_actions=["email-offer"],
        event_id="v1-event",
    )
    response = sdk.rank(request)
    assert response.event_id == "v1-event"
    assert response.reward_action_id in {"push-tip", "sms-coupon", "call-back"}
    ranked = {a.id: a.probability for a in response.ranking}
    assert ranked["email-offer"] == 0.0 and sum(ranked.values()) == pytest.approx(1.0)
    assert len(ranked) == 4 and response.ranking[-1].id == "email-offer"  # excluded: listed last, probability 0

    record = _record(server, "v1-event")
    assert [a.id for a in record.actions] == ["push-tip", "sms-coupon", "call-back"]  # the first candidate: baseline
    assert list(record.excluded_action_ids) == ["email-offer"] and not record.deferred
    assert record.actions[record.chosen_index].id == response.reward_action_id
    assert record.pmf[record.chosen_index] == ranked[response.reward_action_id]  # the logged probability, exactly
    assert list(record.context["user"].tokens) == ["segmentstudent"]  # VW's JSON: a string is key + value
    assert dict(record.context["user"].numeric) == {"visits": 3.0}
    assert list(record.context["device"].tokens) == ["mobile"]
    assert list(record.actions[0].features["default"].tokens) == ["channelpush"]  # top-level keys: `default`

    with pytest.raises(ErrorResponseException) as e:
        sdk.rank(RankRequest(actions=[RankableAction(id="a", features=[])], excluded_actions=["a"]))
    assert e.value.response.status_code == 400 and e.value.error.error.code == "InvalidRankRequest"
    assert e.value.error.error.message == "excludedActions: every action is excluded"

    sdk.events.reward("v1-event", 0.5)
    sdk.events.reward("v1-event", 0.25)  # Personalizer aggregates several rewards of an event
    wait_for(lambda: client.stats("default").rewards == 2)
    deferred = sdk.rank(RankRequest(actions=[RankableAction(id="a", features=[])], defer_activation=True))
    assert deferred.event_id and _record(server, deferred.event_id).deferred  # an event id was generated
    sdk.events.activate(deferred.event_id)
    wait_for(lambda: client.stats("default").activations == 1)


def test_preview_sdk_ranks_rewards_and_activates_on_any_loop(served):
    server, client, endpoint = served
    client.create_loop("banner")
    sdk = PersonalizerClient(f"{endpoint}/loops/banner", KEY)  # the endpoint names the loop
    response = sdk.rank(
        {"contextFeatures": [{"user": {"segment": "parent"}}], "actions": ACTIONS, "deferActivation": True}
    )
    event_id = response["eventId"]
    assert response["rewardActionId"] in BEST.values() or response["rewardActionId"] == "sms-coupon"
    record = _record(server, event_id, loop="banner")
    assert record.deferred and record.loop == "banner"
    sdk.activate(event_id)
    sdk.reward(event_id, {"value": 1.0})
    stats = wait_for(lambda: (s := client.stats("banner")).rewards == 1 and s.activations == 1 and s)
    assert stats.decisions == 1 and client.stats("default").decisions == 0
    with pytest.raises(HttpResponseError) as e:
        PersonalizerClient(f"{endpoint}/loops/nope", KEY).rank({"actions": ACTIONS})
    assert e.value.status_code == 404 and e.value.error.code == "ResourceNotFound"
    assert e.value.error.message == "loop: no loop named 'nope'"


def test_the_sdks_key_is_a_nextbest_api_key_with_its_scopes(tmp_path):
    keys = ApiKeys.parse(json.dumps({"decide-key-0123456789": ["decide"], "admin-key-0123456789": ["admin"]}), "k")
    with running_server(tmp_path / "store", api_keys=keys, http_port=0, train=False) as (server, _):
        endpoint = f"http://127.0.0.1:{server.http_port}"
        decide, admin = AzureKeyCredential("decide-key-0123456789"), AzureKeyCredential("admin-key-0123456789")
        event_id = PersonalizerClient(endpoint, decide).rank({"actions": ACTIONS})[
            "eventId"
        ]  # Ocp-Apim-Subscription-Key
        PersonalizerClientV1(endpoint, CognitiveServicesCredentials("decide-key-0123456789")).events.activate(event_id)
        assert PersonalizerAdministrationClient(endpoint, admin).get_policy()["name"] == "default"
        for client, call in (
            (
                PersonalizerClient(endpoint, AzureKeyCredential("wrong-key-0123456789")),
                lambda c: c.rank({"actions": []}),
            ),
            (PersonalizerAdministrationClient(endpoint, decide), lambda c: c.get_policy()),
        ):
            with pytest.raises(HttpResponseError) as e:
                call(client)
            assert e.value.status_code in (401, 403) and e.value.error.code == str(e.value.status_code)


def test_an_evaluation_is_one_whichever_path_names_the_loop_and_reports_its_failure(served):
    server, client, endpoint = served
    contract = {"name": "e", "startTime": "2020-01-01T00:00:00Z", "endTime": "2030-01-01T00:00:00Z"}
    assert PersonalizerAdministrationClient(endpoint, KEY).create_evaluation("e1", contract) is None
    same = PersonalizerAdministrationClient(f"{endpoint}/loops/default", KEY)
    now = datetime.now(UTC)
    failed = _finished(lambda: same.get_evaluation("e1", start_time=now, end_time=now))
    assert failed["status"] == "Failed" and "content" not in failed
    assert failed["description"] == "FAILED_PRECONDITION: loop 'default': evaluation needs at least 2 events, got 0"
    with pytest.raises(HttpResponseError) as e:
        same.create_evaluation("e1", contract)
    assert e.value.status_code == 409 and e.value.error.code == "EvaluationAlreadyExists"


def test_service_configuration_and_policy_map_onto_the_loop(served):
    server, client, endpoint = served
    admin = PersonalizerAdministrationClient(endpoint, KEY)
    # the default policy explores with SquareCB: no percentage to report; setting one makes it epsilon-greedy
    assert admin.get_service_configuration()["explorationPercentage"] == 0.0
    assert admin.update_service_configuration({"explorationPercentage": 0.2})["explorationPercentage"] == 0.2
    epsilon = client.get_loop("default").policy
    assert epsilon == DEFAULT_POLICY.replace(" --squarecb", "") + " --epsilon 0.2"
    admin.update_policy({"name": "squarecb", "arguments": "--cb_explore_adf --squarecb -q ::"})
    with pytest.raises(HttpResponseError) as e:  # a SquareCB someone chose is theirs: no percentage
        admin.update_service_configuration({"explorationPercentage": 0.2})
    assert e.value.status_code == 400 and e.value.error.code == "InvalidServiceConfiguration"
    assert e.value.error.message.startswith("explorationPercentage: the loop's policy ")
    # an epsilon-greedy policy, as Personalizer's: its epsilon is the percentage
    admin.update_policy({"name": "epsilon-greedy", "arguments": "--cb_explore_adf --epsilon 0.05 -q ::"})
    shown = admin.get_service_configuration()
    assert shown["rewardWaitTime"] == "PT1M" and shown["explorationPercentage"] == 0.05
    assert shown["learningMode"] == "Online" and shown["logRetentionDays"] == -1
    shown.update(
        rewardWaitTime="PT10M",
        defaultReward=-0.5,
        rewardAggregation="average",
        explorationPercentage=0.2,
        modelExportFrequency="PT5M",
        logRetentionDays=7,
        learningMode="Apprentice",
    )
    assert admin.update_service_configuration(shown) == shown
    loop = client.get_loop("default")
    assert (loop.reward_wait_seconds, loop.default_reward, loop.publish_interval_seconds) == (600, -0.5, 300)
    assert loop.policy == "vw:--cb_explore_adf --epsilon 0.2 -q ::" and loop.retention_days == 7
    assert loop.learning_mode == 2 and loop.reward_aggregation == 3  # APPRENTICE, AVERAGE
    with pytest.raises(HttpResponseError) as e:
        admin.update_service_configuration({"rewardWaitTime": "P60D"})
    assert e.value.status_code == 400 and e.value.error.code == "InvalidServiceConfiguration"
    assert e.value.error.message.startswith("rewardWaitTime: must be in [0.05, ")  # the loop's own range
    assert client.get_loop("default").reward_wait_seconds == 600  # refused: nothing changed

    assert admin.get_policy() == {"name": "default", "arguments": "--cb_explore_adf --epsilon 0.2 -q ::"}
    microsofts = "--cb_explore_adf --epsilon 0.2 --dsjson --cb_type ips -l 0.5 --l1 1E-07 --power_t 0.5"
    updated = admin.update_policy({"name": "Custom Learning settings 1", "arguments": microsofts})
    assert updated["arguments"] == "--cb_explore_adf --epsilon 0.2 --cb_type ips -l 0.5 --l1 1E-07 --power_t 0.5"
    assert client.get_loop("default").policy == "vw:" + updated["arguments"]
    with pytest.raises(HttpResponseError) as e:
        admin.update_policy({"name": "n", "arguments": "--cb_explore_adf --sendto example.org"})
    assert e.value.status_code == 400 and e.value.error.code == "InvalidPolicyConfiguration"
    assert e.value.error.message.startswith("arguments: VW option --sendto is not allowed")
    assert "vw:" + admin.reset_policy()["arguments"] == DEFAULT_POLICY
    assert client.get_loop("default").policy == DEFAULT_POLICY


def test_model_export_import_and_reset(served):
    server, client, endpoint = served
    admin = PersonalizerAdministrationClient(endpoint, KEY)
    assert admin.get_model_properties() == {}  # nothing published yet
    admin.reset_model()  # a fresh, untrained model of the loop's spec, published as the newest version
    spec = client.get_loop("default").policy
    fresh = b"".join(admin.export_model())
    assert fresh == policies.export_state(spec, policies.create(spec).save())  # VW's own model file
    first = max(m.version for m in client.list_models("default"))
    properties = admin.get_model_properties()
    assert properties["creationTime"] <= properties["lastModifiedTime"]

    admin.import_model(io.BytesIO(fresh))
    assert max(m.version for m in client.list_models("default")) == first + 1
    assert b"".join(admin.export_model()) == fresh
    with pytest.raises(HttpResponseError) as e:
        admin.import_model(io.BytesIO(b"not a model"))
    assert e.value.status_code == 400 and e.value.error.code == "InvalidModelImportFormat"
    assert e.value.error.message.startswith("data: cannot load the model as 'vw:")


def test_log_properties_span_the_logged_decisions(served):
    server, client, endpoint = served
    admin = PersonalizerAdministrationClient(endpoint, KEY)
    assert admin.get_log_properties() == {}
    sdk = PersonalizerClient(endpoint, KEY)
    first, last = (sdk.rank({"actions": ACTIONS})["eventId"] for _ in range(2))
    times = [datetime.fromtimestamp(_record(server, e).timestamp, UTC) for e in (first, last)]
    span = admin.get_log_properties()["dateRange"]
    assert [datetime.fromisoformat(span["from"]), datetime.fromisoformat(span["to"])] == times
    admin.delete_logs()  # the trainer deletes what is joined and learned: neither is yet (the default window)
    wait_for(lambda: server.store.log.get_cursor(cursor_name("default", "delete-logs")) is None)  # done
    assert admin.get_log_properties()["dateRange"] == span


def test_deleting_the_logs_deletes_what_was_joined_and_learned_and_keeps_the_model(served):
    server, client, endpoint = served
    client.create_loop("quick", reward_wait_seconds=0.05, publish_interval_seconds=0.05)
    sdk, admin = (
        PersonalizerClient(endpoint + "/loops/quick", KEY),
        PersonalizerAdministrationClient(endpoint + "/loops/quick", KEY),
    )
    for _ in range(3):
        sdk.reward(sdk.rank({"actions": ACTIONS})["eventId"], {"value": 1.0})
    wait_for(lambda: client.stats("quick").learned == 3)
    model = b"".join(admin.export_model())
    admin.delete_logs()  # done by the trainer within about a second
    wait_for(lambda: admin.get_log_properties() == {})
    wait_for(lambda: [server.store.log.read(stream, "quick", 0, 10) for stream in Stream] == [[], [], []])
    assert b"".join(admin.export_model()) == model  # the model stays, and so does learning on
    sdk.rank({"actions": ACTIONS})
    wait_for(lambda: client.stats("quick").learned == 4)


def _bad(answer, status, code, message):
    assert answer.status == status, answer.body
    error = answer.json()["error"]
    assert error["code"] == code, error
    assert error["message"].startswith(message), error


RANKABLE = [{"id": "a", "features": [{"x": 1}]}, {"id": "b", "features": []}]


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "message"),
    [
        ("/rank", b"{not json", 400, "BadRequest", "request body: not valid JSON"),
        ("/rank", [1], 400, "InvalidRankRequest", "request body: must be a JSON object"),
        ("/rank", b"[" * 200_000, 400, "BadRequest", "request body: JSON nested too deeply"),
        ("/rank", {"contextFeatures": []}, 400, "InvalidRankRequest", "actions: at least one action is required"),
        ("/rank", {"actions": []}, 400, "InvalidRankRequest", "actions: at least one action is required"),
        ("/rank", {"actions": [{"id": 1, "features": []}]}, 400, "InvalidRankRequest", "actions[0].id: must be a"),
        ("/rank", {"actions": RANKABLE * 2}, 400, "InvalidRankRequest", "actions[2].id: duplicate action id 'a'"),
        ("/rank", {"actions": RANKABLE, "excludedActions": ["z"]}, 400, "InvalidRankRequest", "excludedActions[0]"),
        ("/rank", {"actions": RANKABLE, "eventId": "e" * 300}, 400, "InvalidRankRequest", "eventId: longer than 256"),
        (
            "/rank",
            {"actions": RANKABLE, "contextFeatures": [{"é": {"x": 1}}]},
            400,
            "InvalidRankRequest",
            "contextFeatures['é'] (namespace name): starts with a non-ASCII character",
        ),
        (
            "/rank",
            b'{"actions": [{"id": "a", "features": [{"x": NaN}]}]}',
            400,
            "InvalidRankRequest",
            "actions[0].features['default'].numeric['x']: must be a finite 32-bit float",
        ),
        ("/events/e/reward", {"value": "1"}, 400, "InvalidRewardRequest", "value: must be a number, got a string"),
        ("/events/e/reward", {}, 400, "InvalidRewardRequest", "value: is required"),
        ("/events/e/reward", {"value": 1e7}, 400, "InvalidRewardRequest", "value: 10000000 is outside the loop's"),
        ("/multislot/rank", {"actions": RANKABLE}, 400, "InvalidMultiSlotApiAccess", "loop 'default' decides a single"),
        (
            "/multislot/events/e/reward",
            {"reward": [{"slotId": "s", "value": 1}]},
            400,
            "InvalidMultiSlotApiAccess",
            "loop 'default'",
        ),
        ("/multislot/events/e/activate", None, 400, "InvalidMultiSlotApiAccess", "loop 'default' decides a single"),
        ("/configurations/service", {"learningMode": 1}, 400, "InvalidServiceConfiguration", "learningMode: must be"),
        ("/configurations/policy", {"name": "n"}, 400, "InvalidPolicyContract", "arguments: must be a string"),
        ("/nothing", {}, 404, "ResourceNotFound", "no such path: POST /personalizer/v1.0/nothing"),
        ("/configurations/service", None, 405, "BadRequest", "POST /personalizer/v1.0/configurations/service"),
    ],
)
def test_bad_input_answers_personalizers_error_naming_the_field(served, path, body, status, code, message):
    server, client, endpoint = served
    method = "PUT" if path.startswith("/configurations/") and body is not None else "POST"
    _bad(http_call(server.http_port, method, f"/personalizer/v1.0{path}", body), status, code, message)


CCB = "vw:--ccb_explore_adf --epsilon 0.05 -q ::"
ARTICLES = [
    {"id": "news", "features": [{"type": "News"}]},
    {"id": "sports", "features": [{"type": "Sports"}]},
    {"id": "entertainment", "features": [{"type": "Entertainment"}]},
]
PAGE_SLOTS = [
    {
        "id": "Main Article",
        "features": [{"size": "Large", "position": "Top Middle"}],
        "excludedActions": ["sports"],
        "baselineAction": "entertainment",
    },
    {"id": "Side Bar", "features": [{"size": "Small"}], "baselineAction": "news"},
]


def test_preview_sdk_ranks_rewards_and_activates_multi_slot(tmp_path, clock):
    with running_server(tmp_path / "store", clock=clock, http_port=0) as (server, client):
        _multi_slot_round_trip(server, client, clock)


def _multi_slot_round_trip(server, client, clock):
    client.create_loop("page", policy=CCB, reward_wait_seconds=10, default_reward=0.0)
    sdk = PersonalizerClient(f"{_endpoint(server)}/loops/page", KEY)
    context = [{"user": {"profileType": "AnonymousUser"}}, {"device": {"mobile": True}}]
    body = {"contextFeatures": context, "actions": ARTICLES, "slots": PAGE_SLOTS, "eventId": "page-1"}
    response = sdk.rank_multi_slot(body)
    assert response["eventId"] == "page-1" and [s["id"] for s in response["slots"]] == ["Main Article", "Side Bar"]
    chosen = [s["rewardActionId"] for s in response["slots"]]
    assert len(set(chosen)) == 2 and chosen[0] != "sports"  # distinct actions; the main slot excludes sports

    record = _record(server, "page-1", loop="page")
    assert [s.id for s in record.slots] == ["Main Article", "Side Bar"] and not record.deferred
    ids = [a.id for a in record.actions]
    assert [ids[s.candidates[s.chosen_index]] for s in record.slots] == chosen
    assert "sports" not in [ids[i] for i in record.slots[0].candidates]  # excludedActions
    assert sorted(record.slots[1].features["slot"].tokens) == ["sizeSmall"]  # a slot's top-level keys: `slot`
    assert list(record.context["user"].tokens) == ["profileTypeAnonymousUser"]

    sdk.reward_multi_slot("page-1", {"reward": [{"slotId": "Side Bar", "value": 1.0}]})
    sdk.reward_multi_slot("page-1", {"reward": [{"slotId": "Main Article", "value": 0.5}]})
    clock.advance(11)
    wait_for(lambda: client.stats("page").joined == 1)
    joined = records_pb2.JoinedEvent.FromString(server.store.log.get(Stream.JOINED, "page", "page-1"))
    assert [(s.slot_id, s.reward, s.defaulted) for s in joined.slots] == [
        ("Main Article", 0.5, False),
        ("Side Bar", 1.0, False),
    ]

    deferred = sdk.rank_multi_slot({"actions": ARTICLES, "slots": PAGE_SLOTS, "deferActivation": True})
    assert deferred["eventId"] and _record(server, deferred["eventId"], loop="page").deferred  # a generated id
    sdk.activate_multi_slot(deferred["eventId"])
    wait_for(lambda: client.stats("page").activations == 1)


def test_a_loop_becomes_multi_slot_with_a_multi_slot_policy(served):
    server, client, endpoint = served
    sdk = PersonalizerClient(endpoint, KEY)
    with pytest.raises(HttpResponseError) as e:
        sdk.rank_multi_slot({"actions": ARTICLES, "slots": PAGE_SLOTS})
    assert e.value.status_code == 400 and e.value.error.code == "InvalidMultiSlotApiAccess"
    assert e.value.error.message.startswith("loop 'default' decides a single slot")
    assert server.store.log.last_seq(Stream.DECISIONS, "default") == 0  # nothing decided or logged
    PersonalizerAdministrationClient(endpoint, KEY).update_policy(
        {"name": "multi-slot", "arguments": "--dsjson --ccb_explore_adf --epsilon 0.05"}
    )
    answer = sdk.rank_multi_slot({"actions": ARTICLES, "slots": PAGE_SLOTS})
    assert [s["id"] for s in answer["slots"]] == ["Main Article", "Side Bar"]
    assert sdk.rank({"actions": ARTICLES})["rewardActionId"]  # single-slot rank: a one-slot decision


def _endpoint(server):
    return f"http://127.0.0.1:{server.http_port}"


@pytest.mark.parametrize(
    ("path", "body", "code", "message"),
    [
        (
            "/multislot/rank",
            {"actions": ARTICLES, "slots": [PAGE_SLOTS[1], PAGE_SLOTS[1]]},
            "InvalidRankRequest",
            "slots[1].id: duplicate slot id 'Side Bar'",
        ),
        (
            "/multislot/rank",
            {"actions": ARTICLES, "slots": [{**PAGE_SLOTS[0], "baselineAction": "weather"}]},
            "InvalidRankRequest",
            "slots[0].baselineAction:",
        ),
        (
            "/multislot/rank",
            {"actions": ARTICLES, "slots": [{**PAGE_SLOTS[0], "excludedActions": ["weather"]}]},
            "InvalidRankRequest",
            "slots[0].excludedActions",
        ),
        ("/multislot/rank", {"actions": ARTICLES, "slots": [{"id": 1}]}, "InvalidRankRequest", "slots[0].id: must be"),
        ("/multislot/rank", {"actions": ARTICLES}, "InvalidRankRequest", "slots: must be an array of slots, got null"),
        (
            "/multislot/events/logged/reward",
            {"reward": [{"slotId": "Side Bar", "value": 1}, {"slotId": "Footer", "value": 1}]},
            "InvalidRewardRequest",
            "reward[1].slotId: 'Footer' is not a slot of the decision",
        ),
        ("/multislot/events/logged/reward", {"reward": []}, "InvalidRewardRequest", "reward: at least one slot's"),
        (
            "/multislot/events/logged/reward",
            {"reward": [{"slotId": "Side Bar"}]},
            "InvalidRewardRequest",
            "reward[0].value: is required",
        ),
    ],
)
def test_bad_multi_slot_input_answers_personalizers_error_naming_the_field(served, path, body, code, message):
    server, client = served[:2]
    client.create_loop("page", policy=CCB)
    port = server.http_port
    answer = http_call(
        port,
        "POST",
        f"/loops/page/personalizer/multislot/rank{PREVIEW}",
        {"actions": ARTICLES, "slots": PAGE_SLOTS, "eventId": "logged"},
    )
    assert answer.status == 201, answer.body
    _bad(http_call(port, "POST", f"/loops/page/personalizer/v1.0{path}", body), 400, code, message)
    _bad(http_call(port, "POST", f"/loops/page/personalizer{path}{PREVIEW}", body), 400, code, message)


def test_bad_requests_beyond_the_body(served):
    server, client, endpoint = served
    port = server.http_port
    _bad(http_call(port, "POST", "/personalizer/rank", {"actions": RANKABLE}), 400, "InvalidRequest", "api-version")
    _bad(
        http_call(port, "POST", "/loops/nope/personalizer/v1.0/events/e/activate"),
        404,
        "ResourceNotFound",
        "loop: no loop named 'nope'",
    )
    _bad(
        http_call(port, "GET", f"/personalizer/evaluations/nope{PREVIEW}"),
        404,
        "EvaluationNotFound",
        "evaluationId: no evaluation 'nope'",
    )
    huge = b'{"actions": [], "x": "' + b"y" * (4 << 20) + b'"}'
    _bad(http_call(port, "POST", "/personalizer/v1.0/rank", huge), 413, "PayloadSizeExceeded", "request body: larger")
    late = {"name": "e", "startTime": "2026-01-02T00:00:00Z", "endTime": "2026-01-01T00:00:00Z"}
    _bad(
        http_call(port, "PUT", f"/personalizer/evaluations/e1{PREVIEW}", late),
        400,
        "InvalidEvaluationContract",
        "endTime: must be after startTime",
    )
    assert client.stats("default").decisions == 0  # nothing bad was logged


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
FEATURE_LISTS = st.lists(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4), max_size=3) | JSON_VALUES
RANK_BODIES = st.fixed_dictionaries(
    {
        "actions": st.lists(
            st.fixed_dictionaries({"id": st.text(max_size=6) | JSON_VALUES, "features": FEATURE_LISTS}), max_size=4
        )
        | JSON_VALUES
    },
    optional={"contextFeatures": FEATURE_LISTS, "excludedActions": JSON_VALUES, "deferActivation": JSON_VALUES},
)


def test_generated_rank_requests_never_fail_the_server(tmp_path):
    with running_server(tmp_path / "store", http_port=0, train=False) as (server, client):

        @settings(
            derandomize=True, database=None, deadline=None, max_examples=150, suppress_health_check=list(HealthCheck)
        )
        @given(RANK_BODIES)
        def rank(body):
            answer = http_call(server.http_port, "POST", "/personalizer/v1.0/rank", body)
            assert answer.status in (201, 400), (answer.status, answer.body)
            if answer.status == 400:
                assert set(answer.json()["error"]) == {"code", "message"}

        rank()


def _mostly(valid: list, field: str) -> st.SearchStrategy:
    return st.fixed_dictionaries({}, optional={field: st.sampled_from(valid) | JSON_VALUES})


CONFIG_VALUES = {
    "rewardWaitTime": ["PT5M", "00:10:00", "P1M", "PT0S", "P99999D"],
    "defaultReward": [0, -0.5, 1e300],
    "rewardAggregation": ["earliest", "Average", "median"],
    "explorationPercentage": [0.2, 1.5, -1],
    "modelExportFrequency": ["PT1M", "P2D"],
    "logRetentionDays": [-1, 0, 7, 2.5, 10**12],
    "learningMode": ["Online", "LoggingOnly", "offline"],
    "modelRetrainDays": [0, 3],
}
OTHER_CALLS = st.one_of(
    st.tuples(
        st.just("PUT /configurations/service"),
        st.fixed_dictionaries({}, optional={k: st.sampled_from(v) | JSON_VALUES for k, v in CONFIG_VALUES.items()}),
    ),
    st.tuples(
        st.just("PUT /configurations/policy"),
        _mostly(["--cb_explore_adf --dsjson", "--cb_explore_adf --epsilon 2", "random", "", "--sendto x"], "arguments"),
    ),
    st.tuples(st.just("POST /events/e/reward"), _mostly([0.5, 1e300, 10**400], "value")),
    st.tuples(st.just("POST /configurations/applyFromEvaluation"), _mostly(["e"], "evaluationId")),
    st.tuples(st.sampled_from(["POST /rank", "POST /events/e/reward", "PUT /configurations/service"]), st.binary()),
)


def test_generated_configuration_reward_and_policy_bodies_never_fail_the_server(tmp_path):
    with running_server(tmp_path / "store", http_port=0, train=False) as (server, client):

        @settings(
            derandomize=True, database=None, deadline=None, max_examples=200, suppress_health_check=list(HealthCheck)
        )
        @given(OTHER_CALLS)
        def send(request):
            route, body = request
            method, path = route.split()
            answer = http_call(server.http_port, method, f"/personalizer{path}{PREVIEW}", body)
            assert answer.status in (200, 204, 400, 404), (route, body, answer.status, answer.body)
            if answer.status >= 400:
                assert set(answer.json()["error"]) == {"code", "message"}

        send()
        client.get_loop("default")  # the loop is still there, in a valid state


@pytest.mark.slow
def test_a_planted_preference_is_learned_through_the_sdk_then_evaluated(served):
    server, client, endpoint = served
    admin = PersonalizerAdministrationClient(endpoint, KEY)
    # a window of seconds: HTTP calls through the SDK's pipeline on a loaded machine may take longer than 0.05 s, and a
    # reward stamped after its window would be late (the decision joined with the default reward)
    admin.update_service_configuration({"rewardWaitTime": "PT2S", "modelExportFrequency": "PT0.05S"})
    admin.update_policy({"name": "planted", "arguments": "--cb_explore_adf --epsilon 0.1 -q ::"})
    sdk = PersonalizerClient(endpoint, KEY)
    rng = np.random.default_rng(7)
    start = datetime.now(UTC) - timedelta(minutes=1)
    hits = []
    for i in range(ROUNDS):
        segment = SEGMENTS[rng.integers(len(SEGMENTS))]
        context = [{"user": {"segment": segment}}]  # the event id seeds the sampling: the same draws every run
        response = sdk.rank({"contextFeatures": context, "actions": ACTIONS, "eventId": f"planted-{i}"})
        best = response["rewardActionId"] == BEST[segment]
        hits.append(best)
        sdk.reward(response["eventId"], {"value": float(rng.random() < (0.8 if best else 0.1))})
    first, last = np.mean(hits[:300]), np.mean(hits[-300:])
    print(f"best-action rate through the SDK: first 300 {first:.3f}, last 300 {last:.3f} (chance 0.25)")
    assert last >= 0.75, (first, last)

    stats = wait_for(lambda: (s := client.stats("default")).joined == ROUNDS and s)
    assert stats.late_rewards == 0 and stats.rewards == ROUNDS
    end = datetime.now(UTC) + timedelta(minutes=1)
    contract = {
        "name": "greedier",
        "startTime": start.isoformat(),
        "endTime": end.isoformat(),
        "policies": [{"name": "greedier", "arguments": "--cb_explore_adf --epsilon 0.01 -q ::"}],
    }
    admin.create_evaluation("eval-1", contract)
    evaluation = _finished(lambda: admin.get_evaluation("eval-1", start_time=start, end_time=end))
    assert evaluation["status"] == "Succeeded", evaluation
    results = {r["policySource"]: r for r in evaluation["content"]["value"]}
    assert set(results) == {"Online", "Baseline", "Random", "Custom"} and results["Custom"]["name"] == "greedier"
    online, baseline = results["Online"]["summary"], results["Baseline"]["summary"]
    assert online["expectedReward"] > baseline["expectedReward"]  # it learned: better than always the first action
    low, high = results["Custom"]["summary"]["confidenceInterval"]
    assert low <= results["Custom"]["summary"]["expectedReward"] <= high
    assert [e["id"] for e in admin.list_evaluations()] == ["eval-1"]

    created = http_call(server.http_port, "POST", "/personalizer/v1.0/evaluations", contract)  # v1.0: POST, 201
    assert created.status == 201 and created.headers["location"].endswith(created.json()["id"])
    done = _finished(lambda: http_call(server.http_port, "GET", created.headers["location"]).json(), "pending")
    assert done["status"] == "completed" and {r["name"] for r in done["policyResults"]} >= {"greedier", "Online"}
    admin.apply_from_evaluation({"evaluationId": "eval-1", "policyName": "greedier"})  # its learning settings
    assert client.get_loop("default").policy == "vw:--cb_explore_adf --epsilon 0.01 -q ::"
    with pytest.raises(HttpResponseError) as e:
        admin.apply_from_evaluation({"evaluationId": "eval-1", "policyName": "nope"})
    assert e.value.status_code == 404 and e.value.error.code == "LearningSettingsNotFound"
    admin.delete_evaluation("eval-1")
    assert [e["id"] for e in admin.list_evaluations()] == [done["id"]]  # one loop's evaluations, whatever the path

    admin.create_feature_importance("fi-1", {"name": "fi", "startTime": start.isoformat(), "endTime": end.isoformat()})
    importance = _finished(lambda: admin.get_feature_importance("fi-1"))
    assert importance["status"] == "Succeeded", importance
    scores = importance["featureScores"]
    print("feature scores:", scores)
    assert (scores[0]["namespace"], scores[0]["side"], scores[0]["score"]) == ("user", "context", 1.0)  # personalizes
    assert [f["id"] for f in admin.list_feature_importances()] == ["fi-1"]
