"""flowq: durable workflows and a job queue for Python on PostgreSQL or SQLite."""

from __future__ import annotations

from flowq.client import App as App
from flowq.clock import Clock as Clock
from flowq.context import Context as Context
from flowq.context import JobInfo as JobInfo
from flowq.current import current_context as current_context
from flowq.durations import Duration as Duration
from flowq.errors import ContextError as ContextError
from flowq.errors import DatabaseBusyError as DatabaseBusyError
from flowq.errors import DatabaseError as DatabaseError
from flowq.errors import DatabaseRefusedError as DatabaseRefusedError
from flowq.errors import DatabaseUnavailableError as DatabaseUnavailableError
from flowq.errors import DependencyError as DependencyError
from flowq.errors import FlowqError as FlowqError
from flowq.errors import JobFailedError as JobFailedError
from flowq.errors import NonDeterminismError as NonDeterminismError
from flowq.errors import NonRetryableError as NonRetryableError
from flowq.errors import PayloadError as PayloadError
from flowq.errors import RegistrationError as RegistrationError
from flowq.errors import ScheduleError as ScheduleError
from flowq.errors import SchemaError as SchemaError
from flowq.errors import SerializationError as SerializationError
from flowq.errors import StepError as StepError
from flowq.errors import TokenError as TokenError
from flowq.errors import UnawaitedCallError as UnawaitedCallError
from flowq.errors import UnknownWorkflowError as UnknownWorkflowError
from flowq.errors import ValidationError as ValidationError
from flowq.hooks import HookEvent as HookEvent
from flowq.models import BatchDepRef as BatchDepRef
from flowq.models import CronSchedule as CronSchedule
from flowq.models import DependsOn as DependsOn
from flowq.models import ErrorEntry as ErrorEntry
from flowq.models import EventType as EventType
from flowq.models import FailureReason as FailureReason
from flowq.models import Job as Job
from flowq.models import JobEvent as JobEvent
from flowq.models import JobStatus as JobStatus
from flowq.models import RetryPolicy as RetryPolicy
from flowq.models import ScheduleStatus as ScheduleStatus
from flowq.models import StepRecord as StepRecord
from flowq.models import TagQuery as TagQuery
from flowq.models import Token as Token
from flowq.models import TokenResult as TokenResult
from flowq.models import TokenStatus as TokenStatus
from flowq.models import batch_dep_ref as batch_dep_ref
from flowq.options import JobOptions as JobOptions
from flowq.options import JobSpec as JobSpec
from flowq.registry import Registry as Registry
from flowq.registry import Workflow as Workflow
from flowq.registry import WorkflowOptions as WorkflowOptions
from flowq.registry import default_registry as default_registry
from flowq.registry import schedule as schedule
from flowq.registry import workflow as workflow
from flowq.steps import Step as Step
from flowq.steps import step as step
from flowq.supervisor import Supervisor as Supervisor
from flowq.supervisor import SupervisorResult as SupervisorResult
from flowq.system_clock import SystemClock as SystemClock
from flowq.worker import Worker as Worker
from flowq.worker import WorkerOptions as WorkerOptions
from flowq.workflow_ref import WorkflowRef as WorkflowRef
from flowq.workflow_ref import workflow_ref as workflow_ref

__version__ = "0.1.0.dev0"

__all__ = [
    "App",
    "BatchDepRef",
    "Clock",
    "Context",
    "ContextError",
    "CronSchedule",
    "DatabaseBusyError",
    "DatabaseError",
    "DatabaseRefusedError",
    "DatabaseUnavailableError",
    "DependencyError",
    "DependsOn",
    "Duration",
    "ErrorEntry",
    "EventType",
    "FailureReason",
    "FlowqError",
    "HookEvent",
    "Job",
    "JobEvent",
    "JobFailedError",
    "JobInfo",
    "JobOptions",
    "JobSpec",
    "JobStatus",
    "NonDeterminismError",
    "NonRetryableError",
    "PayloadError",
    "RegistrationError",
    "Registry",
    "RetryPolicy",
    "ScheduleError",
    "ScheduleStatus",
    "SchemaError",
    "SerializationError",
    "Step",
    "StepError",
    "StepRecord",
    "Supervisor",
    "SupervisorResult",
    "SystemClock",
    "TagQuery",
    "Token",
    "TokenError",
    "TokenResult",
    "TokenStatus",
    "UnawaitedCallError",
    "UnknownWorkflowError",
    "ValidationError",
    "Worker",
    "WorkerOptions",
    "Workflow",
    "WorkflowOptions",
    "WorkflowRef",
    "batch_dep_ref",
    "current_context",
    "default_registry",
    "schedule",
    "step",
    "workflow",
    "workflow_ref",
]
