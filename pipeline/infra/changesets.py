"""Change sets and stack events as a person reads them (pure): change rows, a summary, the root cause of a failure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# CloudFormation's two ways of saying a change set would change nothing.
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")


DONE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE"}


@dataclass(frozen=True)
class Change:
    action: str  # Add, Modify, Remove, Import, Dynamic
    logical_id: str
    resource_type: str
    replacement: str = ""  # True, False, Conditional (Modify only)

    def line(self) -> str:
        mark = {"Add": "+", "Modify": "~", "Remove": "-"}.get(self.action, "*")
        replaced = (
            f"  (replacement: {self.replacement})" if self.action == "Modify" and self.replacement else ""
        )
        return f"{mark} {self.action:<7} {self.logical_id:<26} {self.resource_type}{replaced}"

    def to_json(self) -> dict[str, str]:
        return {
            "action": self.action,
            "logicalId": self.logical_id,
            "type": self.resource_type,
            "replacement": self.replacement,
        }


def changes_from(api_changes: Iterable[dict[str, Any]]) -> list[Change]:
    """DescribeChangeSet's Changes as plain rows, in the order CloudFormation gave them."""
    rows = []
    for item in api_changes:
        change = item.get("ResourceChange", {})
        if item.get("Type", "Resource") != "Resource" or not change:
            continue
        rows.append(
            Change(
                action=change.get("Action", "?"),
                logical_id=change.get("LogicalResourceId", "?"),
                resource_type=change.get("ResourceType", "?"),
                replacement=str(change.get("Replacement", "")),
            )
        )
    return rows


def summary(changes: Sequence[Change]) -> list[str]:
    """What a change set will do, one line per resource and a count; replacements called out."""
    if not changes:
        return ["no resource changes (parameters or outputs only)"]
    counts = {a: sum(1 for c in changes if c.action == a) for a in ("Add", "Modify", "Remove")}
    head = ", ".join(f"{n} to {a.lower()}" for a, n in counts.items() if n) or f"{len(changes)} changes"
    replaced = [c.logical_id for c in changes if c.replacement == "True"]
    if replaced:
        head += f"; REPLACES {', '.join(replaced)}"
    return [head, *(c.line() for c in changes)]


def is_no_change(status: str, reason: str) -> bool:
    return status == "FAILED" and any(words in reason for words in NO_CHANGES)


def event_line(event: Mapping[str, Any]) -> str:
    at = event.get("Timestamp")
    stamp = at.strftime("%H:%M:%S") if isinstance(at, datetime) else str(at or "")[11:19]
    reason = event.get("ResourceStatusReason") or ""
    return f"{stamp}  {event.get('LogicalResourceId', '?'):<26} {event.get('ResourceStatus', '?')}" + (
        f"  {reason}" if reason else ""
    )


def root_cause(events: Iterable[Mapping[str, Any]]) -> str | None:
    """The first resource that failed (events oldest first); others only report cancellation."""
    for event in events:
        reason = event.get("ResourceStatusReason") or ""
        if str(event.get("ResourceStatus", "")).endswith("_FAILED") and "cancelled" not in reason.lower():
            return f"{event.get('LogicalResourceId')} ({event.get('ResourceType')}) {event['ResourceStatus']}: {reason}"
    return None


def failure_message(stack: str, status: str, events: Iterable[Mapping[str, Any]]) -> str:
    cause = root_cause(events) or "no resource reported a failure"
    if status == "ROLLBACK_COMPLETE":
        after = "CloudFormation rolled the creation back (the next setup replaces the empty stack)"
    elif status == "UPDATE_ROLLBACK_COMPLETE":
        after = "CloudFormation rolled the stack back to what it was before"
    elif status.endswith("ROLLBACK_FAILED"):
        after = f"and the rollback failed too ({status}): look at the stack in the CloudFormation console"
    elif status == "DELETE_FAILED":
        after = "the stack is not deleted (DELETE_FAILED): remove the cause and run teardown again"
    else:
        after = f"the stack is {status}"
    return f"{stack}: {cause}; {after}"
