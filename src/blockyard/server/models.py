"""Pydantic models of the API (they make the OpenAPI schema at /docs useful)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

JSONDict = dict[str, Any]


class _Open(BaseModel):
    """A model that keeps keys it does not declare (Mage-format records)."""

    model_config = ConfigDict(extra="allow")


# ----------------------------------------------------------------------- status
class DatabaseStatus(BaseModel):
    dialect: str
    reachable: bool
    error: Optional[str] = None


class RunCounts(BaseModel):
    queued: int = 0
    running: int = 0


class StatusOut(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    workspace: str
    role: str
    auth: bool = Field(description="True when /api requests need `Authorization: Bearer <token>`.")
    database: DatabaseStatus
    scheduler_heartbeat_age: Optional[float] = Field(
        None, description="Seconds since a scheduler last beat (any process); null if none ever did."
    )
    workers: int = Field(description="Live workers (any process) claiming runs from this database.")
    worker_slots: int = Field(0, description="Runs those workers can execute at the same time.")
    local_workers: int = Field(0, description="Concurrent runs of the worker in this process (0: none).")
    runs: RunCounts


# ------------------------------------------------------------ projects/pipelines
class ProjectOut(BaseModel):
    name: str
    path: str = Field(description="Folder relative to the workspace root.")
    pipelines: list[str]


class ProjectCreate(BaseModel):
    name: str = Field(description="The project's folder name (one level, no '/').")


class PipelineCreate(BaseModel):
    uuid: str = Field(description="The pipeline's folder name under pipelines/.")
    name: Optional[str] = None
    description: Optional[str] = None
    tags: list[str] = Field(default_factory=list)


class PipelinePatch(BaseModel):
    name: Optional[str] = Field(None, description="New display name (not empty).")
    description: Optional[str] = Field(None, description="New description; \"\" or null clears it.")
    tags: Optional[list[str]] = Field(None, description="Replaces the tags.")


class PipelineSummary(BaseModel):
    project: str
    uuid: str
    name: str
    description: Optional[str] = None
    type: str = "python"
    tags: list[Any] = []
    blocks: int = 0


class BlockOut(BaseModel):
    uuid: str
    name: str
    type: str
    language: str = "python"
    group: str = "blocks"
    upstream_blocks: list[str] = []
    downstream_blocks: list[str] = []
    configuration: JSONDict = {}
    retry_config: Optional[JSONDict] = None
    timeout: Optional[float] = None
    dynamic: bool = False
    reduce_output: bool = False
    file_path: Optional[str] = Field(None, description="Code file relative to the workspace root.")


class PipelineOut(BaseModel):
    project: str
    uuid: str
    name: str
    description: Optional[str] = None
    type: str = "python"
    tags: list[Any] = []
    variables: JSONDict = {}
    retry_config: Optional[JSONDict] = None
    blocks: list[BlockOut] = []
    callbacks: list[BlockOut] = []
    conditionals: list[BlockOut] = []
    widgets: list[BlockOut] = []


class VariablesIn(BaseModel):
    variables: JSONDict


class CodeOut(BaseModel):
    block_uuid: str
    path: str = Field(description="File relative to the workspace root.")
    language: str
    code: str


class CodeIn(BaseModel):
    code: str


class BlockCreate(BaseModel):
    uuid: str = Field(description="Block uuid; '/' makes subfolders (e.g. tuning/sklearn).")
    type: str = Field(description="data_loader, transformer, data_exporter, custom, sensor, ...")
    upstream_blocks: list[str] = []
    code: Optional[str] = Field(None, description="File content; the type's template when omitted.")
    name: Optional[str] = None
    language: str = "python"
    configuration: Optional[JSONDict] = None
    after: Optional[str] = Field(None, description="Insert it right after this block (default: last).")


class BlockPatch(BaseModel):
    uuid: Optional[str] = Field(None, description="New uuid: renames the block and moves its file.")
    upstream_blocks: Optional[list[str]] = Field(None, description="Replaces the upstream list.")


class EdgeIn(BaseModel):
    upstream: str
    downstream: str


# ------------------------------------------------------------------------- runs
class RunOut(BaseModel):
    id: int
    project: str
    pipeline_uuid: str
    status: str
    variables: JSONDict = {}
    execution_date: Optional[datetime] = None
    created_at: Optional[datetime] = None
    started_at: Optional[datetime] = None
    completed_at: Optional[datetime] = None
    error: Optional[str] = None
    error_details: Optional[JSONDict] = None
    trigger_id: Optional[int] = None
    backfill_id: Optional[int] = None
    block_count: int = 0
    metrics: Optional[JSONDict] = None
    retry_of: Optional[int] = Field(None, description="The run this one retries.")
    resume_count: int = Field(0, description="Times the run was resumed after its worker was lost.")
    cancel_requested_at: Optional[datetime] = None
    block: Optional[str] = Field(None, description="Only this block runs (with `with_upstream`: and its ancestors).")
    with_upstream: bool = False
    cache: Optional[bool] = Field(None, description="The run's cache setting (null: the pipeline's).")


class RunList(BaseModel):
    runs: list[RunOut]
    total: int
    limit: int
    offset: int


class RunCreate(BaseModel):
    variables: JSONDict = Field(default_factory=dict, description="Runtime variables (override the pipeline's).")
    schedule_name: Optional[str] = Field(
        None, max_length=255,
        description="Mage's trigger_pipeline: the run is filed under the pipeline's trigger of this name "
                    "(created as an active API trigger when missing).")
    execution_date: Optional[datetime] = None
    block: Optional[str] = Field(
        None, description="Run only this block, on the stored outputs of its upstream blocks "
                          "(with `with_upstream`: the block and every block it depends on).")
    with_upstream: bool = Field(False, description="With `block`: run its upstream blocks (transitively) first.")
    cache: Optional[bool] = Field(
        None, description="true: reuse the outputs of earlier block runs with the same cache key "
                          "(code, attached and imported files, configuration, variables, inputs); "
                          "false: run every block; null (default): as the pipeline's `cache:` says "
                          "(every block runs unless the pipeline or block sets cache: true).")


class BlockRunOut(BaseModel):
    id: int
    pipeline_run_id: int
    block_uuid: str
    base_block_uuid: Optional[str] = None
    status: str
    attempts: int = 0
    started_at: Optional[datetime] = None
    completed_at: Optional[datetime] = None
    error: Optional[str] = None
    traceback: Optional[str] = None
    cache_hit: bool = False
    output_ref: Optional[str] = None
    digest: Optional[str] = None
    tests: Optional[list[Any]] = None
    metrics: Optional[JSONDict] = None
    dynamic_index: Optional[int] = None
    has_log: bool = False


class OutputEntry(BaseModel):
    name: str
    codec: str
    bytes: Optional[int] = None
    summary: Any = None
    sample: Any = None


class OutputsOut(BaseModel):
    run_id: int
    block_uuid: str
    source: Optional[str] = Field(None, description="run/block the outputs were stored by (a cache hit points at an earlier run).")
    digest: Optional[str] = None
    outputs: list[OutputEntry]


# --------------------------------------------------------------- triggers/backfills
class TriggerIn(_Open):
    """A trigger in Mage's triggers.yaml format; keys not listed here are kept."""

    name: Optional[str] = None
    project: Optional[str] = None
    pipeline_uuid: Optional[str] = None
    schedule_type: Optional[str] = Field(None, description="time, event or api.")
    schedule_interval: Optional[str] = Field(None, description="@once, @hourly, @daily, ... or a cron expression.")
    start_time: Optional[Any] = None
    status: Optional[str] = Field(None, description="active or inactive.")
    variables: Optional[JSONDict] = None


class TriggerOut(_Open):
    id: int
    name: Optional[str] = None
    project: Optional[str] = None
    pipeline_uuid: Optional[str] = None
    schedule_type: Optional[str] = None
    schedule_interval: Optional[str] = None
    status: Optional[str] = None
    variables: Optional[JSONDict] = None


class BackfillCreate(BaseModel):
    pipeline: str = Field(description="project/pipeline, or a pipeline uuid unique in the workspace.")
    start: datetime
    end: datetime
    interval: str = Field(description="hour, day, week or month (also h/d/w/m, hourly, daily, ...).")
    units: int = Field(1, ge=1, le=10_000, description="Intervals between two runs.")
    name: Optional[str] = None
    variables: JSONDict = Field(default_factory=dict,
                                description="On top of these each run gets interval_start_datetime / interval_end_datetime.")


class BackfillOut(_Open):
    id: int
    status: Optional[str] = None


# ------------------------------------------------------------------ Mage compat
class MagePipelineRunIn(BaseModel):
    variables: JSONDict = Field(default_factory=dict)


class MageTriggerIn(BaseModel):
    pipeline_run: MagePipelineRunIn = Field(default_factory=MagePipelineRunIn)


class MagePipelineRunOut(BaseModel):
    id: int
    pipeline_uuid: str
    project: str
    pipeline_schedule_id: Optional[int] = None
    status: str
    variables: JSONDict = {}
    execution_date: Optional[datetime] = None
    created_at: Optional[datetime] = None
    started_at: Optional[datetime] = None
    completed_at: Optional[datetime] = None


class MageTriggerOut(BaseModel):
    pipeline_run: MagePipelineRunOut


class MageBlockRunSpec(BaseModel):
    pipeline_uuid: str = Field(description="project/pipeline or a pipeline uuid unique in the workspace.")
    block_uuid: str
    variables: JSONDict = Field(default_factory=dict)


class MageBlockRunIn(BaseModel):
    run: MageBlockRunSpec


class MageBlockRunResult(BaseModel):
    pipeline_run_id: Optional[int] = None
    pipeline_uuid: str
    project: str
    block_uuid: str
    status: str
    mode: Literal["block", "pipeline"] = Field(
        description="block: the block ran alone on its upstream blocks' stored outputs; "
        "pipeline: some upstream output was missing, so the whole pipeline ran."
    )
    variables: JSONDict = {}
    output: Any = Field(None, description="The block's output as JSON (tuple outputs as a list).")
    error: Optional[str] = None


class MageBlockRunOut(BaseModel):
    run: MageBlockRunResult


class ErrorOut(BaseModel):
    detail: str
