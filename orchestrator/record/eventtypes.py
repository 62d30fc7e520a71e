"""Pydantic models of the events in `events.jsonl`: the source of `schemas/event.schema.json`.

One model per event type describes its `data`; one envelope model per type ties that data to
the `type` literal, and `EventModel` is their union with `type` as the discriminator. `events.py`
keeps writing plain dicts (these models are not on the build's path); the schema generated from
them is what consumers and tests validate against. Data models forbid extra fields, so a payload
that drifts from its model is caught.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from orchestrator.store.filestore import WriteReason

Level = Literal["debug", "info", "warning", "error"]
StepStatus = Literal["pending", "ran", "restored", "up-to-date", "failed", "blocked", "cancelled"]
FailureKind = Literal[
    # the step itself
    "exit",
    "timeout",
    "template",
    "extract",
    "missing_output",
    "refused",
    "io",
    "unsupported",
    "cancelled",
    # its provider call (`providers.base.KINDS`)
    "rate_limit",
    "server",
    "client",
    "connection",
    "invalid_response",
    "circuit_breaker",
    "offline",
    "refusal",
    "truncated",
    "unexpected_reply",
    "budget",
]
"""Why a step failed; `timeout` is both a step's and a provider call's."""
RetryKind = Literal["timeout", "rate_limit", "server", "connection", "invalid_response"]
"""Failures another attempt may fix (`providers.base.RETRYABLE`)."""

Timestamp = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Seconds = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=0)]
Attempt = Annotated[int, Field(ge=1, description="1 for the first attempt of a call.")]


def _absent_when_unset(schema: dict[str, Any]) -> None:
    """A field emitted only sometimes: absent, never null, and with no default in the schema."""
    schema.pop("default", None)


def _sometimes(description: str) -> Any:
    """The `Field` of a key present in some events of a type only."""
    return Field(None, description=description, json_schema_extra=_absent_when_unset)


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --------------------------------------------------------------------------- job


class JobStartedData(_Data):
    """A build started."""

    pipeline: str = Field(description="The pipeline file.")
    name: str = Field(description="The pipeline's name.")
    steps: Count = Field(description="How many steps the build selected.")
    workdir: str = Field(description="The workdir the build runs in.")
    targets: list[str] = Field(description="The targets asked for; empty for all.")
    selected: list[str] = Field(description="The steps the build selected, in plan order.")
    max_cost: float | None = Field(
        None, ge=0, description="The build's spending limit (--max-cost), if any."
    )
    shard: str | SkipJsonSchema[None] = _sometimes(
        "The share of the steps this build takes (`--shard I/N`): `selected` holds its steps"
        " and what they need."
    )


class JobReplannedData(_Data):
    """Steps planned from other steps' outputs changed, or could be planned at last: the build
    planned again and goes on with more steps."""

    selected: list[str] = Field(description="The steps this round builds, in plan order.")
    after: list[str] = Field(description="The steps whose outputs the new steps expand from.")


class JobFinishedData(_Data):
    """A build ended: succeeded, failed or cancelled."""

    duration_s: Seconds
    counts: dict[StepStatus, Count] = Field(description="How many selected steps ended in each.")
    pending_steps: list[str] = Field(description="Selected steps not completed, in plan order.")


class PlanFailedData(_Data):
    """Planning again from what steps wrote (the rows of a `foreach`) found a problem; the
    build fails (the pipeline as written was valid)."""

    message: str = Field(description="The problem, at its file:line:col.")


class LockFailedData(_Data):
    """The lock file could not be written; the build fails."""

    message: str


# --------------------------------------------------------------------------- steps


class StepStartedData(_Data):
    """A step's command, template or model call started."""

    reasons: list[str] = Field(description="Why it runs (the planner's reasons).")


class Tokens(_Data):
    """Token counts; `input` includes the `cached` input tokens and those written to the
    prompt cache (`cache_write`, present when there were any)."""

    input: Count
    output: Count
    cached: Count
    cache_write: Count = 0


Outputs = Annotated[
    dict[str, Sha256],
    Field(description="Its output files (a folder's one by one) and their digests."),
]


class StepSucceededData(_Data):
    """A shell or template step ran."""

    duration_s: Seconds
    outputs: Outputs


class LlmStepSucceededData(StepSucceededData):
    """An llm step ran: its duration and what the call used."""

    provider: str
    model: str | None
    calls: Annotated[int, Field(ge=1, description="Attempts, retries included.")]
    finish_reason: str | None
    tokens: Tokens
    cost: float | SkipJsonSchema[None] = _sometimes("The call's price, when one is configured.")
    batch: str | SkipJsonSchema[None] = _sometimes("The provider batch that answered (--batch).")


class FailureMeta(_Data):
    """What an llm step used before failing: its provider and model, and the reply's usage
    when one came (its output could not be written)."""

    provider: str
    model: str | None
    calls: Count | SkipJsonSchema[None] = _sometimes("Attempts, retries included.")
    finish_reason: str | None = _sometimes("When a reply came.")
    tokens: Tokens | SkipJsonSchema[None] = _sometimes("When a reply came.")
    cost: float | SkipJsonSchema[None] = _sometimes("When a reply came and a price is known.")
    batch: str | SkipJsonSchema[None] = _sometimes("When a provider batch answered (--batch).")


class Excerpt(_Data):
    """The last lines a failed command wrote to its log (stdout and stderr as they came)."""

    lines: list[str] = Field(description="Up to 20 lines, the last one last, secrets masked.")
    earlier: Count = Field(description="How many lines of its output came before them.")
    log: str = Field(description="The step's log file.")


class StepFailedData(_Data):
    """A step failed (or was cancelled)."""

    kind: FailureKind
    message: str
    duration_s: Seconds | None = Field(description="Null when it failed before starting.")
    meta: FailureMeta | SkipJsonSchema[None] = _sometimes(
        "What an llm step used before it failed (the manifest's `meta` of the step)."
    )
    excerpt: Excerpt | SkipJsonSchema[None] = _sometimes(
        "When a shell step's command failed or timed out having written output."
    )


class SkippedUpToDateData(_Data):
    """Nothing changed since the step last ran."""

    reason: Literal["up-to-date"]
    outputs: Outputs


class SkippedBlockedData(_Data):
    """A step it needs failed."""

    reason: Literal["blocked"]
    upstream: str = Field(description="The failed step.")


StepSkippedData = Annotated[SkippedUpToDateData | SkippedBlockedData, Field(discriminator="reason")]


class StepRestoredData(_Data):
    """A step's outputs came back from the cache instead of running it."""

    key: Sha256
    reasons: list[str] = Field(description="Why it did not count as up to date.")
    outputs: Outputs
    remote: bool | SkipJsonSchema[None] = _sometimes(
        "True when the outputs came from the remote cache (`ORCH_REMOTE_CACHE`)."
    )


# --------------------------------------------------------------------------- cache


class CacheHitData(_Data):
    """The cache holds the step's outputs for its key."""

    key: Sha256


class CacheRemoteHitData(_Data):
    """The local cache lacked the key and the remote cache (`ORCH_REMOTE_CACHE`) had it: its
    objects were downloaded, each checked against its digest, and the step is restored."""

    key: Sha256


class CacheRemoteWaitData(_Data):
    """Under `--shard`, a step of another shard's share is missing from both caches: the build
    waits for that shard to upload it (then restores it), at most `timeout_s` (then runs it)."""

    key: Sha256
    shard: str = Field(description="The shard whose share holds the step, as I/N.")
    timeout_s: Seconds = Field(description="How long the build waits at most (--shard-wait).")


class CacheRemoteSkippedData(_Data):
    """The remote cache failed (unreachable, refused, throttled, a body cut short): the build
    went on with the local cache alone."""

    remote: str = Field(description="The remote's URL.")
    message: str


class CacheMissData(_Data):
    """The cache lacks the key (the step runs), or holds a record it cannot use (warning)."""

    key: Sha256
    reason: str | SkipJsonSchema[None] = _sometimes(
        "Why the cache's record for the key was refused: unreadable, for another key, naming a"
        " path the step does not declare or a malformed digest, or an object that is missing or"
        " does not match its digest. The step runs instead."
    )


# --------------------------------------------------------------------------- llm


class LlmRequestData(_Data):
    """One attempt of a provider call went out."""

    provider: str = Field(description="The provider's name in the pipeline.")
    model: str | None
    attempt: Attempt


class LlmResponseData(_Data):
    """An attempt got a reply."""

    provider: str
    model: str | None
    attempt: Attempt
    duration_s: Seconds
    finish_reason: str | None
    tokens: Tokens


class LlmRetryData(_Data):
    """An attempt failed; another follows after `wait_s`."""

    provider: str
    model: str | None
    attempt: Attempt = Field(description="The attempt that failed.")
    kind: RetryKind = Field(description="Why the attempt failed.")
    message: str
    wait_s: Seconds


class LlmFollowupData(_Data):
    """The reply could not be used as it was; another call asks the model to go on (a reply
    cut off, with `on_truncated: continue`) or to correct it (`repair`)."""

    provider: str
    model: str | None
    reason: Literal["truncated", "repair"]
    message: str = Field(description="What was wrong with the reply.")
    followup: Attempt = Field(description="1 for the first follow-up call of the step.")


class LlmFallbackData(_Data):
    """The step's provider is unavailable after its retries; the next of its providers is asked
    instead, for this call and the step's later ones."""

    provider: str = Field(description="The provider that is unavailable.")
    model: str | None
    to: str = Field(description="The provider asked next.")
    kind: FailureKind = Field(description="How the unavailable one failed.")
    message: str


class LlmBatchSubmittedData(_Data):
    """The step's request went to its provider's batch API, with others (`--batch`)."""

    provider: str
    batch_id: str
    requests: Annotated[int, Field(ge=1, description="Requests in the batch.")]


class LlmBatchResumedData(_Data):
    """A batch recorded in `.orch/batches/` carries the step's request: it is polled again
    instead of being submitted anew."""

    provider: str
    batch_id: str
    submitted: str = Field(description="When the batch was submitted (ISO 8601).")


class LlmBatchEndedData(_Data):
    """The batch carrying the step's request ended and its results were read."""

    provider: str
    batch_id: str
    status: str = Field(description="The batch's final status, as the API names it.")
    succeeded: Count
    failed: Count


class LlmBatchFallbackData(_Data):
    """The step's call goes out normally, not in a batch."""

    provider: str
    reason: Literal["unsupported", "refused"] = Field(
        description="The kind has no batch API, or the batch API refused the submission."
    )
    message: str


class LlmBatchIgnoredData(_Data):
    """A batch record could not be read or trusted: it is removed, and its requests are
    submitted anew."""

    provider: str
    record: str = Field(description="The record's file name under .orch/batches/.")
    reason: str


class CircuitClosedData(_Data):
    """A probe call succeeded; calls to this endpoint and model go out again."""

    provider: str
    model: str | None
    kind: str = Field(description="The provider kind (openai, azure, anthropic, ollama).")
    base_url: str = Field(description="The endpoint, without credentials.")


class CircuitOpenedData(CircuitClosedData):
    """Too many recent attempts failed (or the probe did); calls fail fast during the cooldown."""

    failures: Annotated[int, Field(ge=1, description="Failed attempts among `calls`.")]
    calls: Annotated[int, Field(ge=1, description="Recent attempts the rate was taken over.")]
    rate: Annotated[float, Field(ge=0, le=1, description="failures / calls.")]
    cooldown_s: Seconds


# --------------------------------------------------------------------------- files


class FileWrittenData(_Data):
    """orch wrote (or found unchanged) an output file."""

    path: str = Field(description="Relative to the workdir.")
    sha256: Sha256
    size_bytes: Count
    wrote: bool = Field(description="False when the content was already there.")
    reason: WriteReason


class FileRemovedData(_Data):
    """orch removed a file from an llm step's output folder (`extract: files`)."""

    path: str = Field(description="Relative to the workdir.")
    reason: str


class FileKeptData(_Data):
    """Bytes orch had not recorded at an output path were kept in the cache before a build
    overwrote or removed them (warning)."""

    path: str = Field(description="Relative to the workdir.")
    sha256: Sha256 = Field(description="The kept bytes' digest: `orch cache cat` takes it.")
    size_bytes: Count
    reason: Literal["edited", "unrecorded"] = Field(
        description="edited: the lock file records other bytes for the path; unrecorded: none."
    )
    command: str = Field(
        description="The shell command, run where orch was started, that writes the bytes back."
    )


class FileUndeclaredWriteData(_Data):
    """After a shell step, an output of another step that was done had changed (warning): the
    step, or a shell step running alongside it, wrote where it does not declare. The build goes
    on; the next build restores or reruns the owner."""

    path: str = Field(description="Relative to the workdir.")
    owner: str = Field(description="The step whose output it is.")
    change: Literal["modified", "removed", "added"] = Field(
        description="modified or removed: an output file; added: a file in an output folder."
    )
    alongside: list[str] = Field(
        description="Other shell steps running at the same time, which may have made the change."
    )


# --------------------------------------------------------------------------- envelopes


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    ts: Timestamp = Field(description="ISO-8601 UTC with milliseconds and a Z.")
    level: Level
    job_id: Annotated[str, Field(min_length=1, description="The run's id (its folder's name).")]


class _JobEnvelope(_Envelope):
    step: None = Field(description="Null: the event is about the whole job.")


class _StepEnvelope(_Envelope):
    step: str = Field(description="The step's id.")


class JobStartedEvent(_JobEnvelope):
    type: Literal["job.started"]
    data: JobStartedData


class JobReplannedEvent(_JobEnvelope):
    type: Literal["job.replanned"]
    data: JobReplannedData


class JobFinishedEvent(_JobEnvelope):
    type: Literal["job.succeeded", "job.failed", "job.cancelled"]
    data: JobFinishedData


class PlanFailedEvent(_JobEnvelope):
    type: Literal["plan.failed"]
    data: PlanFailedData


class CacheRemoteSkippedEvent(_JobEnvelope):
    type: Literal["cache.remote_skipped"]
    data: CacheRemoteSkippedData


class LockFailedEvent(_JobEnvelope):
    type: Literal["lock.failed"]
    data: LockFailedData


class StepStartedEvent(_StepEnvelope):
    type: Literal["step.started"]
    data: StepStartedData


class StepSucceededEvent(_StepEnvelope):
    type: Literal["step.succeeded"]
    data: StepSucceededData | LlmStepSucceededData


class StepFailedEvent(_StepEnvelope):
    type: Literal["step.failed"]
    data: StepFailedData


class StepSkippedEvent(_StepEnvelope):
    type: Literal["step.skipped"]
    data: StepSkippedData


class StepRestoredEvent(_StepEnvelope):
    type: Literal["step.restored"]
    data: StepRestoredData


class CacheHitEvent(_StepEnvelope):
    type: Literal["cache.hit"]
    data: CacheHitData


class CacheRemoteHitEvent(_StepEnvelope):
    type: Literal["cache.remote_hit"]
    data: CacheRemoteHitData


class CacheRemoteWaitEvent(_StepEnvelope):
    type: Literal["cache.remote_wait"]
    data: CacheRemoteWaitData


class CacheMissEvent(_StepEnvelope):
    type: Literal["cache.miss"]
    data: CacheMissData


class LlmRequestEvent(_StepEnvelope):
    type: Literal["llm.request"]
    data: LlmRequestData


class LlmResponseEvent(_StepEnvelope):
    type: Literal["llm.response"]
    data: LlmResponseData


class LlmRetryEvent(_StepEnvelope):
    type: Literal["llm.retry"]
    data: LlmRetryData


class LlmFollowupEvent(_StepEnvelope):
    type: Literal["llm.followup"]
    data: LlmFollowupData


class LlmFallbackEvent(_StepEnvelope):
    type: Literal["llm.fallback"]
    data: LlmFallbackData


class LlmBatchSubmittedEvent(_StepEnvelope):
    type: Literal["llm.batch.submitted"]
    data: LlmBatchSubmittedData


class LlmBatchResumedEvent(_StepEnvelope):
    type: Literal["llm.batch.resumed"]
    data: LlmBatchResumedData


class LlmBatchEndedEvent(_StepEnvelope):
    type: Literal["llm.batch.ended"]
    data: LlmBatchEndedData


class LlmBatchFallbackEvent(_StepEnvelope):
    type: Literal["llm.batch.fallback"]
    data: LlmBatchFallbackData


class LlmBatchIgnoredEvent(_StepEnvelope):
    type: Literal["llm.batch.ignored"]
    data: LlmBatchIgnoredData


class CircuitOpenedEvent(_StepEnvelope):
    type: Literal["circuit.opened"]
    data: CircuitOpenedData


class CircuitClosedEvent(_StepEnvelope):
    type: Literal["circuit.closed"]
    data: CircuitClosedData


class FileWrittenEvent(_StepEnvelope):
    type: Literal["file.written"]
    data: FileWrittenData


class FileRemovedEvent(_StepEnvelope):
    type: Literal["file.removed"]
    data: FileRemovedData


class FileKeptEvent(_StepEnvelope):
    type: Literal["file.kept"]
    data: FileKeptData


class FileUndeclaredWriteEvent(_StepEnvelope):
    type: Literal["file.undeclared_write"]
    data: FileUndeclaredWriteData


AnyEvent = Annotated[
    JobStartedEvent
    | JobReplannedEvent
    | JobFinishedEvent
    | PlanFailedEvent
    | LockFailedEvent
    | StepStartedEvent
    | StepSucceededEvent
    | StepFailedEvent
    | StepSkippedEvent
    | StepRestoredEvent
    | CacheHitEvent
    | CacheRemoteHitEvent
    | CacheRemoteWaitEvent
    | CacheMissEvent
    | CacheRemoteSkippedEvent
    | LlmRequestEvent
    | LlmResponseEvent
    | LlmRetryEvent
    | LlmFollowupEvent
    | LlmFallbackEvent
    | LlmBatchSubmittedEvent
    | LlmBatchResumedEvent
    | LlmBatchEndedEvent
    | LlmBatchFallbackEvent
    | LlmBatchIgnoredEvent
    | CircuitOpenedEvent
    | CircuitClosedEvent
    | FileWrittenEvent
    | FileRemovedEvent
    | FileKeptEvent
    | FileUndeclaredWriteEvent,
    Field(discriminator="type"),
]
EVENT_MODELS: tuple[type[BaseModel], ...] = get_args(get_args(AnyEvent)[0])
"""Every envelope model, one per `type` literal (`job.*` ends share one)."""


class EventModel(RootModel[AnyEvent]):
    """One line of `events.jsonl`; `step` is null for job-level events."""

    model_config = ConfigDict(title="orch event")
