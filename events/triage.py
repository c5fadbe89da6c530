"""Triage writes, shared by the API and the admin: group assignment, renaming and deletion.

Every change is recorded in the admin history (LogEntry) with the user who made it, whichever way it came.
"""

from contextlib import contextmanager

from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import QuerySet
from django.http import Http404
from psycopg2 import errors as pg_errors

from events.batches import in_transaction_retrying, lock_bases_sql
from events.models import DEFAULT_GROUP_ID, EventBase, EventGroup
from events.quoting import ITEMS_LISTED, listed

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
        messages = [
            f"Event base {base_id} is assigned to more than one group ({', '.join(map(str, groups))}): send one."
            for base_id, groups in conflicts[:ITEMS_LISTED]
        ]
        if len(conflicts) > ITEMS_LISTED:
            messages.append(
                f"... and {len(conflicts) - ITEMS_LISTED} more event bases assigned to more than one group."
            )
        raise TriageInvalid({"event_id": messages})
    wanted = {base_id: groups.pop() for base_id, groups in named.items()}
    return in_transaction_retrying(lambda cursor: _assign(cursor, wanted, user, via), RACES)


def _assign(cursor, wanted: dict[int, int], user, via: str) -> int:
    # The bases are locked first, in the order a capture locks a batch's bases (events.batches), so the
    # two never wait on each other in a cycle. Sent in any other order, an assignment and a capture
    # deadlocked, and PostgreSQL ended one of them: a 503 when it was this one.
    cursor.execute(lock_bases_sql("b.id = ANY(%s::bigint[])"), [list(wanted)])
    known_bases = {row[0] for row in cursor.fetchall()}
    known_groups = _keep_groups(cursor, set(wanted.values()))
    errors = {}
    if unknown := sorted(set(wanted) - known_bases):
        errors["event_id"] = [f"Unknown event base ids: {listed(unknown)}."]
    if unknown := sorted(set(wanted.values()) - set(known_groups)):
        errors["group_id"] = [f"Unknown group ids: {listed(unknown)}."]
    if errors:
        raise TriageInvalid(errors)
    # One statement for the whole batch, on the rows locked above; rows already in their group are left alone.
    moves = """
        UPDATE events_eventbase AS b SET event_group_id = v.group_id
        FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, group_id)
        WHERE b.id = v.id AND b.event_group_id <> v.group_id
        RETURNING b.id, v.group_id
    """
    return _move(cursor, moves, [list(wanted), list(wanted.values())], known_groups, user, via)


# Bases moved per transaction by the bulk moves. A capture of a base that is being moved waits for the
# move's transaction; in batches it waits for one batch at most, not for a million rows (prune_events
# works in batches for the same reason).
MOVE_BATCH = 5_000


def assign_selection(bases: QuerySet, group_id: int, user, *, via: str = "admin") -> int:
    """Move every base `bases` selects to the group without reading their ids into Python (the admin's
    action over a whole filtered list: 100,000 bases took 13 s and 220 MB when every id and history entry
    went through Python), in ranges of ids of MOVE_BATCH bases, each range its own transaction with its
    history (none without a user); returns how many moved."""
    total, after = 0, 0
    while True:
        # Each range starts where the last ended, in id order, and the selection is read within it: the move
        # reads the table once, however many ranges it takes.
        candidates = bases.exclude(event_group_id=group_id).filter(pk__gt=after)
        window, params = candidates.order_by("pk").values("pk")[:MOVE_BATCH].query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT max(id) FROM ({window}) AS batch(id)", params)
            (last,) = cursor.fetchone()
        if last is None:
            return total
        in_range, params = candidates.filter(pk__lte=last).order_by().values("pk").query.sql_with_params()

        def work(cursor, in_range=in_range, params=params) -> int:
            known_groups = _keep_groups(cursor, {group_id})
            if not known_groups:
                raise TriageInvalid({"group_id": [f"Unknown group ids: {group_id}."]})
            # Locked in a capture's order, as _assign locks its bases, before any row is changed.
            locked = f"locked AS MATERIALIZED ({lock_bases_sql(f'b.id IN ({in_range})')}), "
            moves = """
                UPDATE events_eventbase AS b SET event_group_id = %s FROM locked
                WHERE b.id = locked.id AND b.event_group_id <> %s
                RETURNING b.id, b.event_group_id
            """
            return _move(cursor, moves, [*params, group_id, group_id], known_groups, user, via, before=locked)

        total += in_transaction_retrying(work, RACES)
        after = last


def _keep_groups(cursor, group_ids: set[int]) -> dict[int, str]:
    """{id: name} of the groups that exist, kept from deletion until the transaction ends (delete_group locks
    its group before it moves the group's bases, so it waits, and then moves these too)."""
    cursor.execute(
        "SELECT id, name FROM events_eventgroup WHERE id = ANY(%s::bigint[]) FOR KEY SHARE", [list(group_ids)]
    )
    return dict(cursor.fetchall())


def _move(cursor, moves: str, params: list, groups: dict[int, str], user, via: str, before: str = "") -> int:
    """Run `moves` (an UPDATE of bases RETURNING their id and new group id, after the common table
    expressions `before`) and write each moved base's history entry in the same statement; returns how
    many bases moved."""
    history = ""
    if user is not None and user.is_authenticated:
        history = f"""
            , logged AS (
                INSERT INTO {LogEntry._meta.db_table}
                    (action_time, user_id, content_type_id, object_id, object_repr, action_flag, change_message)
                SELECT now(), %s, %s, moved.id::text, 'event base #' || moved.id, {CHANGE}, m.message
                FROM moved JOIN unnest(%s::bigint[], %s::text[]) AS m(group_id, message) ON m.group_id = moved.group_id
            )
        """
        params = [
            *params,
            user.pk,
            ContentType.objects.get_for_model(EventBase).pk,
            list(groups),
            [f"Assigned to group {name!r} (#{group_id}) via {via}." for group_id, name in groups.items()],
        ]
    cursor.execute(f"WITH {before}moved(id, group_id) AS ({moves}){history} SELECT count(*) FROM moved", params)
    return cursor.fetchone()[0]


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
    # Its bases move in batches first (no entry of history each: the deletion's entry counts them).
    moved = assign_selection(EventBase.objects.filter(event_group=group), DEFAULT_GROUP_ID, None, via=via)

    def work(cursor) -> int:
        # Bases assigned to it since are locked first, as _assign locks its bases, then the group, as _assign
        # locks it: an assignment to it that has already found it commits first, and its bases move here too.
        cursor.execute(lock_bases_sql("b.event_group_id = %s"), [group.pk])
        cursor.execute("SELECT id FROM events_eventgroup WHERE id = %s FOR UPDATE", [group.pk])
        late = EventBase.objects.filter(event_group=group).update(event_group_id=DEFAULT_GROUP_ID)
        message = f"Deleted via {via}; {moved + late} bases moved to group 0."
        record_history(user, EventGroup, [(group.pk, group.name, message)], DELETION)
        group.delete()
        return moved + late

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
