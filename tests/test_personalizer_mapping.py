"""Azure Personalizer's JSON to and from nextbest's messages (server/http/personalizer_mapping.py), without HTTP."""

from __future__ import annotations

import grpc
import pytest

from nextbest import policies
from nextbest.policies.ope import report
from nextbest.server.config import DEFAULT_POLICY, default_loop_config, normalized
from nextbest.server.http import personalizer_mapping as pm
from nextbest.v1 import decision_pb2, types_pb2

# Microsoft's Rank example (azure-rest-api-specs, Personalizer 2022-09-01-preview, examples/Rank.json)
RANK_EXAMPLE = {
    "contextFeatures": [
        {"user": {"profileType": "AnonymousUser", "latLong": "47.6,-122.1"}},
        {"environment": {"dayOfMonth": "28", "monthOfYear": "8", "weather": "Sunny"}},
        {"device": {"mobile": True, "windows": True}},
        {"recentActivity": {"itemsInCart": 3}},
    ],
    "actions": [
        {"id": "NewsArticle", "features": [{"type": "News"}]},
        {"id": "SportsArticle", "features": [{"type": "Sports"}]},
        {"id": "EntertainmentArticle", "features": [{"type": "Entertainment"}]},
    ],
    "excludedActions": ["SportsArticle"],
    "eventId": "75269AD0-BFEE-4598-8196-C57383D38E10",
    "deferActivation": False,
}


def _features(ns: types_pb2.Features) -> tuple[dict, dict, list]:
    return dict(ns.numeric), dict(ns.categorical), list(ns.tokens)


def test_features_follow_vw_json_rules():
    read = pm.features(
        [
            {"type": "hot", "length": 35, "new": True, "old": False, "none": None, "_ignored": 1},
            {"user": {"segment": "student", "visits": 3, "inner": {"x": 1.5}}},
            {"embedding": [0.5, 2, None, 0]},
            {"length": 5, "text": {"_text": "a b"}},
        ],
        "contextFeatures",
    )
    # top-level keys: VW's default namespace, here `default`; numbers repeated in a namespace add up
    assert _features(read[pm.DEFAULT_NAMESPACE]) == ({"length": 40.0}, {}, ["typehot", "new"])
    assert _features(read["user"]) == ({"visits": 3.0}, {}, ["segmentstudent"])
    assert _features(read["inner"]) == ({"x": 1.5}, {}, [])  # a nested object is a namespace named by its key
    assert _features(read["embedding"]) == ({"0": 0.5, "1": 2.0, "2": 0.0}, {}, [])  # dense, nulls skipped
    assert _features(read["text"]) == ({}, {}, ["a", "b"])
    assert pm.features(None, "contextFeatures") == {} and pm.features([], "contextFeatures") == {}


def test_rank_request_of_microsofts_example():
    request = pm.rank_request(RANK_EXAMPLE, "default")
    assert request.loop == "default"
    assert request.event_id == "75269AD0-BFEE-4598-8196-C57383D38E10" and not request.deferred
    assert [a.id for a in request.actions] == ["NewsArticle", "SportsArticle", "EntertainmentArticle"]
    assert list(request.excluded_action_ids) == ["SportsArticle"]
    assert _features(request.context["device"]) == ({}, {}, ["mobile", "windows"])
    assert _features(request.context["recentActivity"]) == ({"itemsInCart": 3.0}, {}, [])
    assert sorted(request.context["environment"].tokens) == ["dayOfMonth28", "monthOfYear8", "weatherSunny"]
    assert _features(request.actions[2].features[pm.DEFAULT_NAMESPACE]) == ({}, {}, ["typeEntertainment"])
    minimal = pm.rank_request({"actions": [{"id": "a", "features": []}], "deferActivation": True}, "x")
    assert minimal.event_id == "" and minimal.deferred and not minimal.context  # the service generates the id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "request body: must be a JSON object"),
        ({}, "actions: at least one action is required"),
        ({"actions": {"id": "a"}}, "actions: must be an array"),
        ({"actions": ["a"]}, "actions[0]: must be a JSON object"),
        ({"actions": [{"features": []}]}, "actions[0].id: must be a string, got null"),
        ({"actions": [{"id": 7, "features": []}]}, "actions[0].id: must be a string, got a number"),
        ({"actions": [{"id": "a"}]}, "actions[0].features: is required"),
        ({"actions": [{"id": "a", "features": {"x": 1}}]}, "actions[0].features: must be an array"),
        ({"actions": [{"id": "a", "features": [1]}]}, "actions[0].features[0]: must be a JSON object"),
        ({"actions": [{"id": "a", "features": [{"tags": ["x"]}]}]}, "actions[0].features: array 'tags'"),
        ({"actions": [{"id": "a", "features": [{"v": 10**400}]}]}, "actions[0].features: int too large"),
        ({"actions": [{"id": "a", "features": []}], "contextFeatures": {"a": 1}}, "contextFeatures: must be an array"),
        ({"actions": [{"id": "a", "features": []}], "contextFeatures": ["x"]}, "contextFeatures[0]: must be a JSON"),
        ({"actions": [{"id": "a", "features": []}], "excludedActions": "a"}, "excludedActions: must be an array"),
        ({"actions": [{"id": "a", "features": []}], "excludedActions": [1]}, "excludedActions[0]: must be a string"),
        ({"actions": [{"id": "a", "features": []}], "eventId": 5}, "eventId: must be a string"),
        ({"actions": [{"id": "a", "features": []}], "deferActivation": "yes"}, "deferActivation: must be true or"),
    ],
)
def test_bad_rank_requests_name_the_field(body, field):
    with pytest.raises(pm.PersonalizerError) as e:
        pm.rank_request(body, "default")
    assert e.value.status == 400
    assert e.value.message.startswith(field), e.value.message
    assert e.value.personalizer_code == "InvalidRankRequest"


def test_deeply_nested_features_are_refused_not_crashed():
    deep: dict = {"x": 1}
    for _ in range(5000):
        deep = {"n": deep}
    with pytest.raises(pm.PersonalizerError, match="contextFeatures: nested too deeply"):
        pm.rank_request({"actions": [{"id": "a", "features": []}], "contextFeatures": [deep]}, "default")


def test_rank_response_lists_excluded_actions_with_probability_zero():
    request = pm.rank_request(RANK_EXAMPLE, "default")
    response = decision_pb2.RankResponse(event_id="e1", chosen_action_id="NewsArticle")
    response.ranking.add(action_id="NewsArticle", probability=0.975)
    response.ranking.add(action_id="EntertainmentArticle", probability=0.025)
    assert pm.rank_response(response, request) == {
        "ranking": [
            {"id": "NewsArticle", "probability": 0.975},
            {"id": "EntertainmentArticle", "probability": 0.025},
            {"id": "SportsArticle", "probability": 0.0},
        ],
        "eventId": "e1",
        "rewardActionId": "NewsArticle",
    }


def test_reward_request():
    assert pm.reward_request("e1", {"value": 1}, "l") == decision_pb2.RewardRequest(loop="l", event_id="e1", value=1.0)
    for body, message in (
        ({}, "value: is required"),
        ({"value": "1"}, "value: must be a number, got a string"),
        ({"value": True}, "value: must be a number, got a boolean"),
        (1.0, "request body: must be a JSON object"),
    ):
        with pytest.raises(pm.PersonalizerError) as e:
            pm.reward_request("e1", body, "l")
        assert e.value.message == message or e.value.message.startswith(message)


def test_durations():
    assert pm.parse_duration("PT5M", "f") == 300
    assert pm.parse_duration("P1DT2H", "f") == 93600
    assert pm.parse_duration("PT0.5S", "f") == 0.5
    assert pm.parse_duration("00:10:00", "f") == 600  # how v1.0 answered
    assert pm.parse_duration("1.00:00:30", "f") == 86430
    assert pm.format_duration(60) == "PT1M" and pm.format_duration(86400) == "P1D"
    for value, message in (
        ("P1M", "f: 'P1M': years and months have no fixed length"),
        ("5 minutes", "f: '5 minutes' is not an ISO 8601 duration"),
        (300, "f: must be an ISO 8601 duration such as PT5M, got a number"),
        ("-PT5M", "f: '-PT5M' is negative"),
    ):
        with pytest.raises(pm.PersonalizerError) as e:
            pm.parse_duration(value, "f")
        assert e.value.message.startswith(message), e.value.message


def test_multi_slot_rank_request_of_microsofts_example():
    # Microsoft's MultiSlot_Rank example (2022-09-01-preview, examples/MultiSlot_Rank.json)
    body = {k: v for k, v in RANK_EXAMPLE.items() if k != "excludedActions"}
    body["slots"] = [
        {
            "id": "Main Article",
            "features": [{"size": "Large", "position": "Top Middle"}],
            "excludedActions": ["SportsArticle"],
            "baselineAction": "EntertainmentArticle",
        },
        {"id": "Side Bar", "features": [{"size": "Small"}], "baselineAction": "NewsArticle"},
    ]
    request = pm.multi_slot_rank_request(body, "page")
    assert (request.loop, request.event_id, request.deferred) == ("page", body["eventId"], False)
    assert [a.id for a in request.actions] == ["NewsArticle", "SportsArticle", "EntertainmentArticle"]
    assert set(request.context) == {"user", "environment", "device", "recentActivity"}
    main, side = request.slots
    assert (main.id, list(main.excluded_action_ids), main.baseline_action_id) == (
        "Main Article",
        ["SportsArticle"],
        "EntertainmentArticle",
    )
    assert sorted(main.features[pm.SLOT_NAMESPACE].tokens) == ["positionTop_Middle", "sizeLarge"]
    assert (side.id, list(side.excluded_action_ids), side.baseline_action_id) == ("Side Bar", [], "NewsArticle")
    response = decision_pb2.RankMultiSlotResponse(
        event_id="e",
        slots=[
            decision_pb2.SlotDecision(slot_id="Main Article", chosen_action_id="EntertainmentArticle", probability=0.9),
            decision_pb2.SlotDecision(slot_id="Side Bar", chosen_action_id="SportsArticle", probability=0.5),
        ],
    )
    assert pm.multi_slot_rank_response(response) == {
        "slots": [
            {"id": "Main Article", "rewardActionId": "EntertainmentArticle"},
            {"id": "Side Bar", "rewardActionId": "SportsArticle"},
        ],
        "eventId": "e",
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"actions": []}, "slots: must be an array of slots, got null"),
        ({"actions": [], "slots": [{"id": "s", "baselineAction": 1}]}, "slots[0].baselineAction: must be a string"),
        ({"actions": [], "slots": [{"id": "s", "excludedActions": "a"}]}, "slots[0].excludedActions: must be an"),
        ({"actions": [], "slots": [{"id": "s", "features": {}}]}, "slots[0].features: must be an array"),
    ],
)
def test_bad_multi_slot_rank_requests_name_the_field(body, message):
    with pytest.raises(pm.PersonalizerError) as e:
        pm.multi_slot_rank_request(body, "l")
    assert e.value.personalizer_code == "InvalidRankRequest" and e.value.message.startswith(message)


def test_multi_slot_reward_requests():
    body = {"reward": [{"slotId": "Heroposition", "value": 0.5}, {"slotId": "SideBar", "value": 0.6}]}
    assert pm.multi_slot_reward_requests("id", body, "l") == [
        decision_pb2.RewardRequest(loop="l", event_id="id", value=0.5, slot_id="Heroposition"),
        decision_pb2.RewardRequest(loop="l", event_id="id", value=0.6, slot_id="SideBar"),
    ]
    for body, message in (
        ({}, "reward: must be an array"),
        ({"reward": []}, "reward: at least one slot's reward is required"),
        ({"reward": [{"value": 1}]}, "reward[0].slotId: must be a string, got null"),
        ({"reward": [{"slotId": "s", "value": "1"}]}, "reward[0].value: must be a number"),
    ):
        with pytest.raises(pm.PersonalizerError) as e:
            pm.multi_slot_reward_requests("id", body, "l")
        assert e.value.personalizer_code == "InvalidRewardRequest" and e.value.message.startswith(message)


def test_multi_slot_loops_are_those_of_vw_conditional_contextual_bandits():
    assert pm.multi_slot("vw:--ccb_explore_adf --epsilon 0.05 -q ::")
    assert not pm.multi_slot("vw:--cb_explore_adf --epsilon 0.05")
    assert not pm.multi_slot("random") and not pm.multi_slot(DEFAULT_POLICY)


def test_service_configuration_round_trips():
    config = default_loop_config()
    shown = pm.service_configuration(config)
    assert shown == {
        "rewardWaitTime": "PT1M",
        "defaultReward": 0.0,
        "rewardAggregation": "earliest",
        "explorationPercentage": 0.0,  # the default explores with SquareCB
        "modelExportFrequency": "PT10S",
        "logRetentionDays": -1,
        "learningMode": "Online",
        "modelRetrainDays": 0,
        "logMirrorEnabled": False,
        "isAutoOptimizationEnabled": False,
    }
    assert pm.configured(config, shown) == config  # what GET answers, PUT back, changes nothing


def test_service_configuration_changes_map_onto_the_loop():
    config = normalized(types_pb2.LoopConfig(name="default", policy="vw:--cb_explore_adf --epsilon 0.05 -q ::"))
    body = {
        "rewardWaitTime": "PT10M",
        "defaultReward": -0.5,
        "rewardAggregation": "Average",
        "explorationPercentage": 0.2,
        "modelExportFrequency": "00:05:00",
        "logRetentionDays": 7,
        "learningMode": "Apprentice",
    }
    changed = normalized(pm.configured(config, body))
    assert changed.reward_wait_seconds == 600 and changed.default_reward == -0.5
    assert changed.reward_aggregation == types_pb2.REWARD_AGGREGATION_AVERAGE
    assert changed.policy == "vw:--cb_explore_adf --epsilon 0.2 -q ::"
    assert changed.publish_interval_seconds == 300 and changed.retention_days == 7
    assert changed.learning_mode == types_pb2.LEARNING_MODE_APPRENTICE
    assert pm.service_configuration(changed)["explorationPercentage"] == 0.2
    # a vw spec that names no exploration explores with VW's default epsilon; setting it adds the option
    plain = types_pb2.LoopConfig(name="p", policy="vw:--cb_explore_adf -q ::")
    assert pm.service_configuration(plain)["explorationPercentage"] == pm.VW_DEFAULT_EPSILON
    assert pm.configured(plain, {"explorationPercentage": 0.3}).policy == "vw:--cb_explore_adf -q :: --epsilon 0.3"
    assert normalized(pm.configured(config, {"logRetentionDays": -1})).retention_days == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rewardWaitTime": 5}, "rewardWaitTime: must be an ISO 8601 duration"),
        ({"rewardAggregation": "median"}, "rewardAggregation: 'median' is not one of earliest, sum, average"),
        ({"learningMode": "Offline"}, "learningMode: 'Offline' is not one of Online, Apprentice, LoggingOnly"),
        ({"explorationPercentage": 1.5}, "explorationPercentage: must be in [0, 1]"),
        ({"logRetentionDays": 0}, "logRetentionDays: -1 keeps logs forever"),
        ({"logRetentionDays": 2.5}, "logRetentionDays: -1 keeps logs forever"),
        ({"modelRetrainDays": 3}, "modelRetrainDays: nextbest has no retraining"),
        ({"logMirrorEnabled": True}, "logMirrorEnabled: nextbest has no log mirroring"),
        ({"defaultReward": "0"}, "defaultReward: must be a number"),
        ("x", "request body: must be a JSON object"),
    ],
)
def test_bad_service_configurations_name_the_field(body, message):
    with pytest.raises(pm.PersonalizerError) as e:
        pm.configured(default_loop_config(), body)
    assert (e.value.status, e.value.personalizer_code) == (400, "InvalidServiceConfiguration")
    assert e.value.message.startswith(message), e.value.message


def test_exploration_of_other_explorations_is_kept_and_not_changed():
    squarecb = normalized(types_pb2.LoopConfig(name="s", policy="vw:--cb_explore_adf --squarecb -q ::"))
    assert pm.service_configuration(squarecb)["explorationPercentage"] == 0.0
    assert pm.configured(squarecb, pm.service_configuration(squarecb)) == squarecb
    with pytest.raises(pm.PersonalizerError, match="does not explore epsilon-greedily"):
        pm.configured(squarecb, {"explorationPercentage": 0.1})
    with pytest.raises(pm.PersonalizerError, match="does not explore epsilon-greedily"):
        pm.configured(types_pb2.LoopConfig(name="r", policy="random"), {"explorationPercentage": 0.1})
    default = normalized(types_pb2.LoopConfig(name="d"))
    assert pm.configured(default, {"explorationPercentage": 0.1}).policy == (
        "vw:--cb_explore_adf --experimental_full_name_interactions action|: "
        "--experimental_full_name_interactions channel|: --epsilon 0.1"
    )  # nobody chose the default's SquareCB: a percentage makes it epsilon-greedy, its interactions kept


def test_policy_contracts():
    assert pm.policy_contract(types_pb2.LoopConfig(name="default", policy=DEFAULT_POLICY)) == {
        "name": "default",
        "arguments": "--cb_explore_adf --squarecb --experimental_full_name_interactions action|: "
        "--experimental_full_name_interactions channel|:",
    }
    assert pm.policy_spec(pm.policy_contract(types_pb2.LoopConfig(name="default", policy=DEFAULT_POLICY))) == (
        DEFAULT_POLICY
    )
    assert pm.policy_contract(types_pb2.LoopConfig(name="x", policy="random"))["arguments"] == "random"
    # learning settings as Personalizer wrote them (examples/Evaluations_Create.json): --dsjson is its input format
    microsofts = "--cb_explore_adf --epsilon 0.2 --dsjson --cb_type ips -l 0.5 --l1 1E-07 --power_t 0.5"
    spec = pm.policy_spec({"name": "Custom Learning settings 1", "arguments": microsofts})
    assert spec == "vw:--cb_explore_adf --epsilon 0.2 --cb_type ips -l 0.5 --l1 1E-07 --power_t 0.5"
    policies.create(spec)  # a valid nextbest policy
    assert pm.policy_spec({"name": "n", "arguments": "linucb:alpha=1"}) == "linucb:alpha=1"
    for body in ({"name": "n"}, {"arguments": 3}, []):
        with pytest.raises(pm.PersonalizerError) as e:
            pm.policy_spec(body)
        assert e.value.status == 400 and e.value.message.startswith(("arguments:", "request body:"))


def test_service_errors_become_personalizer_errors():
    e = pm.error_of(
        grpc.StatusCode.INVALID_ARGUMENT,
        "excluded_action_ids[0]: 'x' is not among the actions",
        invalid="InvalidRankRequest",
        fields=pm.RANK_FIELDS,
    )
    assert (e.status, e.personalizer_code, e.message) == (
        400,
        "InvalidRankRequest",
        "excludedActions[0]: 'x' is not among the actions",
    )
    assert pm.renamed("context['u'].numeric['x']: bad", pm.RANK_FIELDS) == "contextFeatures['u'].numeric['x']: bad"
    assert pm.renamed("contextual: kept", pm.RANK_FIELDS) == "contextual: kept"
    slot = "slots[2].baseline_action_id: 'x' is not among the actions"
    assert pm.renamed(slot, pm.MULTI_SLOT_FIELDS) == "slots[2].baselineAction: 'x' is not among the actions"
    reward = "rewards[1].slot_id: 'f' is not a slot of the decision"
    assert pm.renamed(reward, pm.MULTI_SLOT_REWARD_FIELDS) == "reward[1].slotId: 'f' is not a slot of the decision"
    assert pm.renamed("config.reward_wait_seconds: must be in", pm.CONFIG_FIELDS) == "rewardWaitTime: must be in"
    not_found = pm.error_of(grpc.StatusCode.NOT_FOUND, "loop: no loop named 'x'")
    assert (not_found.status, not_found.personalizer_code) == (404, "ResourceNotFound")
    assert pm.error_of(grpc.StatusCode.RESOURCE_EXHAUSTED, "m").status == 429
    assert pm.error_of(grpc.StatusCode.INTERNAL, "m").personalizer_code == "InternalServerError"


def test_evaluation_contracts():
    contract = pm.evaluation_contract(
        {
            "name": "e",
            "startTime": "2018-12-19T00:00:00Z",
            "endTime": "2019-01-19T00:00:00+01:00",
            "enablePolicyOptimization": True,
            "policies": [
                {"name": "one", "arguments": "--cb_explore_adf --epsilon 0.2 --dsjson"},
                {"name": "again", "arguments": "--cb_explore_adf --epsilon 0.2"},
            ],
        }
    )
    assert contract == pm.EvaluationContract(
        "e", 1545177600.0, 1547852400.0, {"vw:--cb_explore_adf --epsilon 0.2": "one"}
    )
    for body, message in (
        ({"startTime": "2019-01-01T00:00:00Z", "endTime": "2019-01-02T00:00:00Z"}, "name: must be a string"),
        ({"name": "e", "startTime": "yesterday", "endTime": "2019-01-02T00:00:00Z"}, "startTime: 'yesterday' is not"),
        ({"name": "e", "startTime": "2019-01-02T00:00:00Z", "endTime": "2019-01-01"}, "endTime: must be after"),
        (
            {"name": "e", "startTime": "2019-01-01", "endTime": "2019-01-02", "policies": [{"name": "p"}]},
            "policies[0].arguments: must be a string",
        ),
    ):
        with pytest.raises(pm.PersonalizerError) as e:
            pm.evaluation_contract(body, "InvalidContract")
        assert e.value.personalizer_code == "InvalidContract" and e.value.message.startswith(message), e.value.message


def test_feature_scores_are_drops_relative_to_the_largest():
    estimate = report.EstimateReport(0.5, (0.4, 0.6))
    importance = report.ImportanceReport(
        "vw:x",
        "dr",
        0.7,
        (
            report.NamespaceImportance("context", "user", estimate, 0.4),
            report.NamespaceImportance("action", "default", estimate, 0.1),
            report.NamespaceImportance("action", "offer", estimate, -0.1),
            report.NamespaceImportance("context", "empty", estimate, None),
        ),
    )
    evaluated = report.EvaluationReport(10, "gaussian", 0.05, (), None, importance)
    contract = pm.EvaluationContract("fi", 0.0, 60.0, {})
    shown = pm.feature_importance("fi-1", contract, 30.0, "Succeeded", evaluated)
    assert shown["startTime"] == "1970-01-01T00:00:00Z" and shown["endTime"] == "1970-01-01T00:01:00Z"
    assert [(f["namespace"], f["side"], f["score"]) for f in shown["featureScores"]] == [
        ("user", "context", 1.0),
        ("default", "action", 0.25),
        ("offer", "action", -0.25),
        ("empty", "context", None),
    ]
    failed = pm.feature_importance("fi-2", contract, 30.0, "Failed", error="RESOURCE_EXHAUSTED: too many events")
    assert failed["description"] == "RESOURCE_EXHAUSTED: too many events" and "featureScores" not in failed
