"""The Personalizer-compatible API, mounted under /personalizer (loop `default`) and /loops/{loop}/personalizer.

Azure Personalizer's paths (`/personalizer/v1.0/...`, and `/personalizer/...?api-version=2022-09-01-preview` as
`azure-ai-personalizer` calls them), JSON fields, statuses and error body (`{"error": {"code", "message"}}`). Each
route is an adapter over the gRPC servicers (`personalizer_mapping` translates):

- rank, reward, activate: DecisionService; multi-slot: RankMultiSlot, a reward of each slot (RewardStream), an
  activation of the whole event, on a loop whose policy is multi-slot (`vw:--ccb_explore_adf ...`; another loop
  answers 400 InvalidMultiSlotApiAccess, as Personalizer did with multi-slot off);
- configurations/service: GetLoop then UpdateLoop; configurations/policy: SetPolicy (DELETE: the default policy);
  configurations/applyFromEvaluation: SetPolicy of an evaluation's learning settings (a new model, not the
  evaluation's: nextbest's evaluations keep no models);
- model: ExportModel / ImportModel (with the loop's spec); DELETE (reset): ImportModel of a fresh, untrained
  model of the loop's spec, which keeps the log and the learner's position; model/properties: ListModels;
- logs: DELETE asks the loop's trainer to delete what the loop is done with (AdminService.delete_logs);
- evaluations, featureImportances: AdminService.evaluate in the background (a feature importance: the namespace
  importance of the loop's policy), one at a time per serving process (at most MAX_WAITING waiting), polled as
  Personalizer's are; this process keeps the newest MAX_EVALUATIONS of them in memory.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from nextbest import policies
from nextbest.policies.ope.report import EvaluationReport
from nextbest.server.admin_service import AdminService
from nextbest.server.auth import ADMIN, DECIDE
from nextbest.server.config import DEFAULT_LOOP, DEFAULT_POLICY
from nextbest.server.errors import status_of
from nextbest.server.http import personalizer_mapping as pm
from nextbest.server.http.api import Api, HttpCall, Services
from nextbest.server.http.calls import HttpError, invoke
from nextbest.v1 import admin_pb2, decision_pb2, types_pb2

PREVIEW_API_VERSION = "2022-09-01-preview"
V1 = "/v1.0"
MAX_EVALUATIONS = 100
MAX_WAITING = 8  # evaluations queued or running in a process: each may take minutes of a core
_OCTET_STREAM = "application/octet-stream"

Handler = Callable[[HttpCall], Awaitable[Response]]


def error_response(error: HttpError) -> Response:
    """Personalizer's error body: the operation's code when the route gave one, else the HTTP status's."""
    personalizer = isinstance(error, pm.PersonalizerError)
    code = error.personalizer_code if personalizer else pm.personalizer_code(error.status)
    return JSONResponse({"error": {"code": code, "message": error.message}}, status_code=error.status)


def _loop(call: HttpCall) -> str:
    return call.path_params.get("loop", DEFAULT_LOOP)


async def _invoke(method: Callable[[Any, grpc.ServicerContext], Any], request: Any, **errors: Any) -> Any:
    """`invoke`, a failure answered as a Personalizer error (`errors`: see personalizer_mapping.error_of)."""
    try:
        return await invoke(method, request)
    except HttpError as e:
        raise pm.error_of(e.code, e.message, **errors) from None


EVALUATION, FEATURE_IMPORTANCE = "evaluation", "featureImportance"
_NOT_FOUND = {EVALUATION: "EvaluationNotFound", FEATURE_IMPORTANCE: "FeatureImportanceNotFound"}
_EXISTS = {EVALUATION: "EvaluationAlreadyExists", FEATURE_IMPORTANCE: "FeatureImportanceAlreadyExists"}


@dataclass
class _Job:
    """An evaluation or a feature importance of a loop: its contract, the loop's policy when submitted and, once
    run, the report (or why it failed)."""

    kind: str
    id: str
    contract: pm.EvaluationContract
    online: str
    created: float = field(default_factory=time.time)
    status: str = "Running"
    report: EvaluationReport | None = None
    error: str = ""

    def preview(self) -> dict[str, Any]:
        if self.kind == FEATURE_IMPORTANCE:
            return pm.feature_importance(self.id, self.contract, self.created, self.status, self.report, self.error)
        return pm.evaluation(self.id, self.contract, self.created, self.status, self.online, self.report, self.error)

    def v1(self) -> dict[str, Any]:
        return pm.evaluation_v1(self.id, self.contract, self.status, self.online, self.report)


class _Jobs:
    """This process's evaluations and feature importances, run one after the other on a thread of their own
    (AdminService evaluates one at a time per process)."""

    def __init__(self, admin: AdminService) -> None:
        self._admin = admin
        self._jobs: collections.OrderedDict[tuple[str, str, str], _Job] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[str, _Job]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, loop: str, job: _Job) -> None:
        with self._lock:
            if (loop, job.kind, job.id) in self._jobs:
                raise pm.PersonalizerError(
                    grpc.StatusCode.ALREADY_EXISTS, f"{job.kind}Id: {job.id!r} exists", _EXISTS[job.kind]
                )
            waiting = sum(1 for j in self._jobs.values() if j.status == "Running")
            if waiting >= MAX_WAITING:
                raise pm.PersonalizerError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"{job.kind}: {waiting} evaluations wait or run in this server process (at most {MAX_WAITING}); "
                    "retry once one has finished",
                    "OperationNotAllowed",
                )
            self._jobs[(loop, job.kind, job.id)] = job
            while len(self._jobs) > MAX_EVALUATIONS:
                self._jobs.popitem(last=False)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="nextbest-evaluations", daemon=True)
                self._thread.start()
        self._queue.put((loop, job))

    def get(self, loop: str, kind: str, job_id: str) -> _Job:
        with self._lock:
            job = self._jobs.get((loop, kind, job_id))
        if job is None:
            raise pm.PersonalizerError(grpc.StatusCode.NOT_FOUND, f"{kind}Id: no {kind} {job_id!r}", _NOT_FOUND[kind])
        return job

    def list(self, loop: str, kind: str) -> list[_Job]:
        with self._lock:
            return [job for (owner, of, _), job in self._jobs.items() if (owner, of) == (loop, kind)]

    def delete(self, loop: str, kind: str, job_id: str) -> None:
        with self._lock:
            if self._jobs.pop((loop, kind, job_id), None) is None:
                raise pm.PersonalizerError(
                    grpc.StatusCode.NOT_FOUND, f"{kind}Id: no {kind} {job_id!r}", _NOT_FOUND[kind]
                )

    def _run(self) -> None:
        while True:
            loop, job = self._queue.get()
            contract = job.contract
            # a feature importance replays the loop's policy with each namespace left out
            specs = [job.online] if job.kind == FEATURE_IMPORTANCE else list(contract.specs)
            try:
                job.report = self._admin.evaluate(
                    loop, specs, contract.start, contract.end, importance=job.kind == FEATURE_IMPORTANCE
                )
                job.status = "Succeeded"
            except Exception as e:  # a ServiceError names its limit or field; anything else is logged
                code, message = status_of(e)
                job.error, job.status = f"{code.name}: {message}", "Failed"


_JOBS: weakref.WeakKeyDictionary[AdminService, _Jobs] = weakref.WeakKeyDictionary()
_JOBS_LOCK = threading.Lock()


def _jobs_of(admin: AdminService) -> _Jobs:
    """The jobs of a server, one registry whichever mount (`/personalizer`, `/loops/default/personalizer`) is used."""
    with _JOBS_LOCK:
        jobs = _JOBS.get(admin)
        if jobs is None:
            jobs = _JOBS[admin] = _Jobs(admin)
        return jobs


class _Handlers:
    """The route handlers, over the server's servicers."""

    def __init__(self, services: Services) -> None:
        self._decisions = services.decisions
        self._admin = services.admin
        self._jobs = _jobs_of(services.admin)

    async def rank(self, call: HttpCall) -> Response:
        request = pm.rank_request(await call.json(), _loop(call))
        response = await _invoke(self._decisions.Rank, request, invalid="InvalidRankRequest", fields=pm.RANK_FIELDS)
        return JSONResponse(pm.rank_response(response, request), status_code=201)

    async def reward(self, call: HttpCall) -> Response:
        request = pm.reward_request(call.path_params["eventId"], await call.json(), _loop(call))
        await _invoke(self._decisions.Reward, request, invalid="InvalidRewardRequest", fields=pm.EVENT_FIELDS)
        return Response(status_code=204)

    async def activate(self, call: HttpCall) -> Response:
        request = decision_pb2.ActivateRequest(loop=_loop(call), event_id=call.path_params["eventId"])
        await _invoke(self._decisions.Activate, request, invalid="InvalidEventIdToActivate", fields=pm.EVENT_FIELDS)
        return Response(status_code=204)

    async def _multi_slot_loop(self, loop: str) -> None:
        """Personalizer refused multi-slot calls when its multi-slot setting was off; nextbest, on a loop whose
        policy decides a single slot."""
        spec = (await self._config(loop)).policy
        if not pm.multi_slot(spec):
            raise pm.PersonalizerError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"loop {loop!r} decides a single slot (policy {spec!r}): use rank, or set a multi-slot policy "
                "(configurations/policy arguments such as --ccb_explore_adf --epsilon 0.05)",
                "InvalidMultiSlotApiAccess",
                status=400,
            )

    async def multi_slot_rank(self, call: HttpCall) -> Response:
        await self._multi_slot_loop(_loop(call))
        request = pm.multi_slot_rank_request(await call.json(), _loop(call))
        response = await _invoke(
            self._decisions.RankMultiSlot, request, invalid="InvalidRankRequest", fields=pm.MULTI_SLOT_FIELDS
        )
        return JSONResponse(pm.multi_slot_rank_response(response), status_code=201)

    async def multi_slot_reward(self, call: HttpCall) -> Response:
        """The slots' rewards in one stream: on a bad one (a slot the decision does not have), those before it
        stay accepted, as RewardStream's."""
        await self._multi_slot_loop(_loop(call))
        requests = pm.multi_slot_reward_requests(call.path_params["eventId"], await call.json(), _loop(call))
        await _invoke(
            self._decisions.RewardStream,
            iter(requests),
            invalid="InvalidRewardRequest",
            fields=pm.MULTI_SLOT_REWARD_FIELDS,
        )
        return Response(status_code=204)

    async def multi_slot_activate(self, call: HttpCall) -> Response:
        await self._multi_slot_loop(_loop(call))
        return await self.activate(call)

    async def _config(self, loop: str) -> types_pb2.LoopConfig:
        return await _invoke(self._admin.GetLoop, admin_pb2.GetLoopRequest(loop=loop))

    async def get_service(self, call: HttpCall) -> Response:
        return JSONResponse(pm.service_configuration(await self._config(_loop(call))))

    async def put_service(self, call: HttpCall) -> Response:
        body = await call.json()
        config = pm.configured(await self._config(_loop(call)), body)  # its version: a concurrent change is refused
        request = admin_pb2.UpdateLoopRequest(config=config)
        updated = await _invoke(
            self._admin.UpdateLoop, request, invalid="InvalidServiceConfiguration", fields=pm.CONFIG_FIELDS
        )
        return JSONResponse(pm.service_configuration(updated))

    async def get_policy(self, call: HttpCall) -> Response:
        return JSONResponse(pm.policy_contract(await self._config(_loop(call))))

    async def _set_policy(self, loop: str, spec: str) -> Response:
        request = admin_pb2.SetPolicyRequest(loop=loop, spec=spec, mode=admin_pb2.POLICY_MODE_REPLACE)
        config = await _invoke(
            self._admin.SetPolicy, request, invalid="InvalidPolicyConfiguration", fields=pm.POLICY_FIELDS
        )
        return JSONResponse(pm.policy_contract(config))

    async def put_policy(self, call: HttpCall) -> Response:
        return await self._set_policy(_loop(call), pm.policy_spec(await call.json()))

    async def reset_policy(self, call: HttpCall) -> Response:
        return await self._set_policy(_loop(call), DEFAULT_POLICY)

    async def apply_from_evaluation(self, call: HttpCall) -> Response:
        loop = _loop(call)
        evaluation_id, name = pm.policy_reference(await call.json())
        job = self._jobs.get(loop, EVALUATION, evaluation_id)
        spec = next((spec for spec, given in job.contract.specs.items() if given == name), None)
        if spec is None:
            raise pm.PersonalizerError(
                grpc.StatusCode.NOT_FOUND,
                f"policyName: evaluation {evaluation_id!r} has no learning settings named {name!r}",
                "LearningSettingsNotFound",
            )
        await self._set_policy(loop, spec)
        return Response(status_code=204)

    async def get_model(self, call: HttpCall) -> Response:
        chunks = await _invoke(self._admin.ExportModel, admin_pb2.ExportModelRequest(loop=_loop(call)))
        return Response(b"".join(c.data for c in chunks), media_type=_OCTET_STREAM)

    async def _import(self, loop: str, spec: str, data: bytes) -> Response:
        request = admin_pb2.ImportModelRequest(loop=loop, spec=spec, data=data)
        await _invoke(self._admin.ImportModel, iter([request]), invalid="InvalidModelImportFormat")
        return Response(status_code=204)

    async def put_model(self, call: HttpCall) -> Response:
        data = await call.body()
        return await self._import(_loop(call), (await self._config(_loop(call))).policy, data)

    async def reset_model(self, call: HttpCall) -> Response:
        spec = (await self._config(_loop(call))).policy
        fresh = await run_in_threadpool(lambda: policies.create(spec).save())
        return await self._import(_loop(call), spec, fresh)

    async def model_properties(self, call: HttpCall) -> Response:
        request = admin_pb2.ListModelsRequest(loop=_loop(call))
        return JSONResponse(pm.model_properties((await _invoke(self._admin.ListModels, request)).models))

    async def log_properties(self, call: HttpCall) -> Response:
        await self._config(_loop(call))  # an unknown loop: 404
        times = await run_in_threadpool(self._admin.decision_times, _loop(call))
        return JSONResponse(pm.log_properties(times))

    async def delete_logs(self, call: HttpCall) -> Response:
        await run_in_threadpool(self._admin.delete_logs, _loop(call))
        return Response(status_code=204)

    async def _submit(self, call: HttpCall, kind: str, job_id: str) -> _Job:
        loop = _loop(call)
        code = "InvalidEvaluationContract" if kind == EVALUATION else "InvalidContract"
        contract = pm.evaluation_contract(await call.json(), code)
        job = _Job(kind, job_id, contract, (await self._config(loop)).policy)
        self._jobs.submit(loop, job)
        return job

    async def create_evaluation(self, call: HttpCall) -> Response:
        await self._submit(call, EVALUATION, call.path_params["evaluationId"])
        return Response(status_code=200)

    async def create_evaluation_v1(self, call: HttpCall) -> Response:
        job = await self._submit(call, EVALUATION, uuid.uuid4().hex)
        location = f"{call.request.url.path.rstrip('/')}/{job.id}"
        return JSONResponse(job.v1(), status_code=201, headers={"Location": location})

    async def get_evaluation(self, call: HttpCall) -> Response:
        return JSONResponse(self._jobs.get(_loop(call), EVALUATION, call.path_params["evaluationId"]).preview())

    async def get_evaluation_v1(self, call: HttpCall) -> Response:
        return JSONResponse(self._jobs.get(_loop(call), EVALUATION, call.path_params["evaluationId"]).v1())

    def _listed(self, call: HttpCall, kind: str, detail: str) -> Response:
        """Personalizer's list: each job without its result (`detail`), in one page."""
        jobs = [job.preview() for job in self._jobs.list(_loop(call), kind)]
        return JSONResponse({"value": [{k: v for k, v in j.items() if k != detail} for j in jobs], "nextLink": None})

    async def list_evaluations(self, call: HttpCall) -> Response:
        return self._listed(call, EVALUATION, "content")

    async def list_evaluations_v1(self, call: HttpCall) -> Response:
        return JSONResponse([job.v1() for job in self._jobs.list(_loop(call), EVALUATION)])

    async def delete_evaluation(self, call: HttpCall) -> Response:
        self._jobs.delete(_loop(call), EVALUATION, call.path_params["evaluationId"])
        return Response(status_code=204)

    async def create_feature_importance(self, call: HttpCall) -> Response:
        await self._submit(call, FEATURE_IMPORTANCE, call.path_params["featureImportanceId"])
        return Response(status_code=200)

    async def get_feature_importance(self, call: HttpCall) -> Response:
        job_id = call.path_params["featureImportanceId"]
        return JSONResponse(self._jobs.get(_loop(call), FEATURE_IMPORTANCE, job_id).preview())

    async def list_feature_importances(self, call: HttpCall) -> Response:
        return self._listed(call, FEATURE_IMPORTANCE, "featureScores")

    async def delete_feature_importance(self, call: HttpCall) -> Response:
        self._jobs.delete(_loop(call), FEATURE_IMPORTANCE, call.path_params["featureImportanceId"])
        return Response(status_code=204)


def _preview(handler: Handler) -> Handler:
    """`handler` behind Personalizer's check of the api-version query parameter its preview paths require."""

    async def checked(call: HttpCall) -> Response:
        version = call.request.query_params.get("api-version")
        if version != PREVIEW_API_VERSION:
            given = "is required" if version is None else f"{version!r} is not supported"
            raise pm.PersonalizerError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"api-version: {given}; use api-version={PREVIEW_API_VERSION} (or the paths under /personalizer{V1})",
                "InvalidRequest",
            )
        return await handler(call)

    return checked


def routes(services: Services) -> list[BaseRoute]:
    """The routes of the Personalizer API, relative to its mount point: under /v1.0 and (with api-version) not."""
    api: Api = services.api(error_response)
    h = _Handlers(services)
    common: list[tuple[str, str, Handler, str, str]] = [  # path, method, handler, operation, scope
        ("/rank", "POST", h.rank, "Rank", DECIDE),
        ("/events/{eventId}/reward", "POST", h.reward, "Events_Reward", DECIDE),
        ("/events/{eventId}/activate", "POST", h.activate, "Events_Activate", DECIDE),
        ("/multislot/rank", "POST", h.multi_slot_rank, "MultiSlot_Rank", DECIDE),
        ("/multislot/events/{eventId}/reward", "POST", h.multi_slot_reward, "MultiSlotEvents_Reward", DECIDE),
        ("/multislot/events/{eventId}/activate", "POST", h.multi_slot_activate, "MultiSlotEvents_Activate", DECIDE),
        ("/configurations/service", "GET", h.get_service, "ServiceConfiguration_Get", ADMIN),
        ("/configurations/service", "PUT", h.put_service, "ServiceConfiguration_Update", ADMIN),
        ("/configurations/policy", "GET", h.get_policy, "Policy_Get", ADMIN),
        ("/configurations/policy", "PUT", h.put_policy, "Policy_Update", ADMIN),
        ("/configurations/policy", "DELETE", h.reset_policy, "Policy_Reset", ADMIN),
        ("/model", "GET", h.get_model, "Model_Get", ADMIN),
        ("/model", "PUT", h.put_model, "Model_Import", ADMIN),
        ("/model", "DELETE", h.reset_model, "Model_Reset", ADMIN),
        ("/model/properties", "GET", h.model_properties, "Model_GetProperties", ADMIN),
        ("/logs", "DELETE", h.delete_logs, "Log_Delete", ADMIN),
        ("/logs/properties", "GET", h.log_properties, "Log_GetProperties", ADMIN),
    ]
    v1 = [
        ("/evaluations", "POST", h.create_evaluation_v1, "Evaluations_Create", ADMIN),
        ("/evaluations", "GET", h.list_evaluations_v1, "Evaluations_List", ADMIN),
        ("/evaluations/{evaluationId}", "GET", h.get_evaluation_v1, "Evaluations_Get", ADMIN),
        ("/evaluations/{evaluationId}", "DELETE", h.delete_evaluation, "Evaluations_Delete", ADMIN),
    ]
    preview = [
        ("/evaluations/{evaluationId}", "PUT", h.create_evaluation, "Evaluations_Create", ADMIN),
        ("/configurations/applyFromEvaluation", "POST", h.apply_from_evaluation, "ApplyFromEvaluation", ADMIN),
        ("/evaluations", "GET", h.list_evaluations, "Evaluations_List", ADMIN),
        ("/evaluations/{evaluationId}", "GET", h.get_evaluation, "Evaluations_Get", ADMIN),
        ("/evaluations/{evaluationId}", "DELETE", h.delete_evaluation, "Evaluations_Delete", ADMIN),
        (
            "/featureImportances/{featureImportanceId}",
            "PUT",
            h.create_feature_importance,
            "FeatureImportances_Create",
            ADMIN,
        ),
        ("/featureImportances", "GET", h.list_feature_importances, "FeatureImportances_List", ADMIN),
        ("/featureImportances/{featureImportanceId}", "GET", h.get_feature_importance, "FeatureImportances_Get", ADMIN),
        (
            "/featureImportances/{featureImportanceId}",
            "DELETE",
            h.delete_feature_importance,
            "FeatureImportances_Delete",
            ADMIN,
        ),
    ]
    routes: list[BaseRoute] = []
    for prefix, table in ((V1, common + v1), ("", common + preview)):
        for path, method, handler, operation, scope in table:
            routes.append(
                api.route(
                    prefix + path,
                    handler if prefix else _preview(handler),
                    methods=[method],
                    name=f"Personalizer/{operation}",
                    scope=scope,
                    max_body=services.limits.max_model_bytes if operation == "Model_Import" else None,
                )
            )
    return routes
