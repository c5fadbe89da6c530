"""Triage writes, shared by the API and the admin: group assignment, renaming and deletion.

Every change is recorded in the admin history (LogEntry) with the user who made it, whichever way it came.
"""

from contextlib import contextmanager

from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.http import Http404
from psycopg2 import errors as pg_errors

from events.batches import in_transaction_retrying, lock_bases_sql
from events.models import DEFAULT_GROUP_ID, EventBase, EventGroup

RACES = (pg_errors.DeadlockDetected,)


class TriageInvalid(Exception):
    def __init__(self, detail: dict):
        self.detail = detail
        super().__init__(detail)


def assign_groups(assignments: list[tuple[int, int]], user, *, via: str = "API") -> int:
    """Move each base to its group, all or nothing; returns how many bases changed group. A base named
    twice must be named with the same group: which of two groups was meant can't be guessed."""
    named: dict[int, set[int]] = {}
    for base_id, group_id in assignments:
        named.setdefault(base_id, set()).add(group_id)
    if conflicts := sorted((base_id, sorted(groups)) for base_id, groups in named.items() if len(groups) > 1):
        raise TriageInvalid(
            {
                "event_id": [
                    f"Event base {base_id} is assigned to more than one group "
                    f"({', '.join(map(str, groups))}): send one."
                    for base_id, groups in conflicts
                ]
            }
        )
    wanted = {base_id: groups.pop() for base_id, groups in named.items()}
    return in_transaction_retrying(lambda cursor: _assign(cursor, wanted, user, via), RACES)


def _assign(cursor, wanted: dict[int, int], user, via: str) -> int:
    # The bases are locked first, in the order a capture locks a batch's bases (events.batches), so the
    # two never wait on each other in a cycle. Sent in any other order, an assignment and a capture
    # deadlocked, and PostgreSQL ended one of them: a 503 when it was this one.
    cursor.execute(lock_bases_sql("b.id = ANY(%s::bigint[])"), [list(wanted)])
    known_bases = {row[0] for row in cursor.fetchall()}
    # The groups are kept from deletion until this commits (delete_group locks its group before it moves the
    # group's bases, so it waits, and then moves these too); a group deleted already is unknown here.
    cursor.execute(
        "SELECT id, name FROM events_eventgroup WHERE id = ANY(%s::bigint[]) FOR KEY SHARE",
        [list(set(wanted.values()))],
    )
    known_groups = dict(cursor.fetchall())
    errors = {}
    if unknown := sorted(set(wanted) - known_bases):
        errors["event_id"] = [f"Unknown event base ids: {', '.join(map(str, unknown))}."]
    if unknown := sorted(set(wanted.values()) - set(known_groups)):
        errors["group_id"] = [f"Unknown group ids: {', '.join(map(str, unknown))}."]
    if errors:
        raise TriageInvalid(errors)
    # One statement for the whole batch, on the rows locked above; rows already in their group are left alone.
    cursor.execute(
        """
        UPDATE events_eventbase AS b SET event_group_id = v.group_id
        FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, group_id)
        WHERE b.id = v.id AND b.event_group_id <> v.group_id
        RETURNING b.id, v.group_id
        """,
        [list(wanted), list(wanted.values())],
    )
    changed = cursor.fetchall()
    record_history(
        user,
        EventBase,
        [
            (base_id, f"event base #{base_id}", f"Assigned to group {known_groups[g]!r} (#{g}) via {via}.")
            for base_id, g in changed
        ],
        CHANGE,
    )
    return len(changed)


@contextmanager
def group_kept(group: EventGroup):
    """A transaction in which `group` can't be deleted, for saving a change to it; Http404 when it is gone
    already. Django's save inserts a row when its update finds none: a group deleted between reading and
    saving it would come back."""
    with transaction.atomic():
        if not EventGroup.objects.select_for_update().filter(pk=group.pk).exists():
            raise Http404(f"Group {group.pk} has been deleted.")
        yield


def delete_group(group: EventGroup, user, *, via: str = "API") -> int:
    """Delete a group after moving its bases to group 0; returns how many bases moved."""
    if group.pk == DEFAULT_GROUP_ID:
        raise TriageInvalid({"detail": "Group 0 (default) cannot be deleted."})

    def work(cursor) -> int:
        # The group's bases locked first, as _assign locks its bases, then the group, as _assign locks it:
        # an assignment to it that has already found it commits first, and its bases are moved below too.
        cursor.execute(lock_bases_sql("b.event_group_id = %s"), [group.pk])
        cursor.execute("SELECT id FROM events_eventgroup WHERE id = %s FOR UPDATE", [group.pk])
        moved = EventBase.objects.filter(event_group=group).update(event_group_id=DEFAULT_GROUP_ID)
        record_history(
            user, EventGroup, [(group.pk, group.name, f"Deleted via {via}; {moved} bases moved to group 0.")], DELETION
        )
        group.delete()
        return moved

    return in_transaction_retrying(work, RACES)


def record_history(user, model, entries: list[tuple[int, str, str]], action_flag: int) -> None:
    """Admin history entries (object id, its name, message) by `user`; nothing for an anonymous change."""
    if not entries or user is None or not user.is_authenticated:
        return
    content_type = ContentType.objects.get_for_model(model)
    LogEntry.objects.bulk_create(
        LogEntry(
            user_id=user.pk,
            content_type=content_type,
            object_id=str(object_id),
            object_repr=representation[:200],
            action_flag=action_flag,
            change_message=message,
        )
        for object_id, representation, message in entries
    )
