"""Fixed SQL on the game's hot paths, run as prepared statements on PostgreSQL.

Django's PostgreSQL backend binds parameters on the client and never prepares, so PostgreSQL
parses and plans every statement again: for the game's short statements planning cost more than
running them (next photo: 0.39 ms of backend CPU per call, 0.05 ms prepared). These helpers run a
fixed SQL string (placeholders `%s`) through a server-binding psycopg cursor on Django's own
connection and transaction, prepared once per connection. Errors are Django's (IntegrityError...).
Other databases, and any run that logs queries (DEBUG, CaptureQueriesContext), go through Django's
cursor instead, so nothing is hidden from the query log. Behind a pooler in transaction mode
(pgbouncer), where a prepared statement may not outlive its transaction, set
`APPAREAL_PREPARED_SQL=0` in the environment (settings.APPAREAL_PREPARED_SQL).

`combine` and `execute_together` send several data-modifying statements in one round trip.
"""
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections


def fetch(sql: str, params=()) -> list[tuple]:
    return _run(sql, params, rows=True)


def execute(sql: str, params=()) -> None:
    _run(sql, params, rows=False)


def _run(sql: str, params, *, rows: bool):
    connection = connections[DEFAULT_DB_ALIAS]  # the wrapper itself, not the proxy: fewer lookups
    if connection.vendor != "postgresql" or connection.queries_logged or not getattr(settings, "APPAREAL_PREPARED_SQL", True):
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if rows else None
    import psycopg

    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    raw = connection.connection
    if raw.prepare_threshold is None:
        # Django switches preparing off (None) for the sake of poolers; with a threshold that is
        # never reached only the explicit prepare=True below prepares (Django's own cursors bind
        # on the client and never prepare).
        raw.prepare_threshold = 2**31 - 1
    # One cursor kept per connection: a new cursor looks up a loader for every result column again
    # (a third of the client's CPU for the vote's 20 columns).
    cursor = getattr(raw, "_appareal_cursor", None)
    if cursor is None or cursor.closed:
        cursor = raw._appareal_cursor = psycopg.Cursor(raw)
    with connection.wrap_database_errors:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchall() if rows else None


def combine(statements: list[tuple[str, list]]) -> tuple[str, list]:
    """PostgreSQL: n statements as one, `WITH w0 AS (...), ... <last statement>`; the result is the
    last statement's (e.g. its RETURNING). PostgreSQL runs every data-modifying WITH clause exactly
    once, referenced or not; all see one snapshot, so they must not touch the same row twice."""
    if len(statements) == 1:
        return statements[0]
    ctes = ", ".join(f"w{i} AS ({sql})" for i, (sql, _) in enumerate(statements[:-1]))
    return f"WITH {ctes} {statements[-1][0]}", [p for _, params in statements for p in params]


def execute_together(statements: list[tuple[str, list]]) -> None:
    """Runs data-modifying statements that return nothing, in one round trip on PostgreSQL
    (`combine`): one round trip instead of n on the hot path of every vote. Other databases
    (SQLite in development) run them one by one. Prepared (above): a vote's statement
    has only a few shapes (number of awards, flag changes)."""
    if connection.vendor == "postgresql" and len(statements) > 1:
        statements = [combine(statements)]
    for sql, params in statements:
        execute(sql, params)
