"""Reading what the PostgreSQL sink keeps: the alert and coverage history (the monthly report), the open
alerts (the work lists) and the figures views. The sink itself (``connectors.postgres_sink``) only writes."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from infra.errors import InputError
from infra.postgres import connect
from schemas.models import AlertRecord, CoverageRecord


class SinkHistory:
    """A read-only view of one sink schema; it never creates or migrates anything."""

    def __init__(self, dsn: str, schema: str = "enrollbridge") -> None:
        self.connection = connect(dsn)
        found = self.connection.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'alert_current'",
            (schema,),
        ).fetchone()
        if found is None:
            self.connection.close()
            raise InputError(
                f"PostgreSQL schema {schema!r} holds no enrollbridge sink tables (run `enrollbridge sink`)"
            )
        self.connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        self.connection.commit()

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> SinkHistory:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def history(self, pool: str, coverage_year: int) -> tuple[list[CoverageRecord], list[AlertRecord]]:
        """Every coverage record of a pool and year, and every record of the alerts that were in the pool
        at some point (an alert follows the student between pools), in the order they were written."""
        where = {"pool": pool, "year": coverage_year}
        coverage = self.connection.execute(
            "SELECT record FROM coverage_transition WHERE pool = %(pool)s AND coverage_year = %(year)s "
            "ORDER BY source_partition, source_offset", where,
        ).fetchall()  # fmt: skip
        alerts = self.connection.execute(
            "SELECT record FROM alert_transition WHERE coverage_year = %(year)s AND alert_id IN "
            "(SELECT alert_id FROM alert_transition WHERE pool = %(pool)s AND coverage_year = %(year)s) "
            "ORDER BY source_partition, source_offset", where,
        ).fetchall()  # fmt: skip
        self.connection.commit()
        return (
            [CoverageRecord.model_validate(row[0]) for row in coverage],
            [AlertRecord.model_validate(row[0]) for row in alerts],
        )

    def open_alerts(self, pool: str | None = None, coverage_year: int | None = None) -> list[AlertRecord]:
        """Alerts whose current state is OPEN, optionally for one pool and year."""
        rows = self.connection.execute(
            "SELECT record FROM alert_current WHERE status = 'OPEN' AND (%(pool)s::text IS NULL OR pool = %(pool)s) "
            "AND (%(year)s::int IS NULL OR coverage_year = %(year)s) ORDER BY alert_id",
            {"pool": pool, "year": coverage_year},
        ).fetchall()
        self.connection.commit()
        return [AlertRecord.model_validate(row[0]) for row in rows]

    def figures(self, coverage_year: int, pool: str, by: tuple[str, ...] = ("county",)) -> list[dict[str, Any]]:
        """Coverage figures and open alerts by kind for a pool and year, grouped by the given columns
        (any of county, school_code, school_type; empty for the whole pool)."""
        allowed = {"county", "school_code", "school_type"}
        if not set(by) <= allowed:
            raise ValueError(f"group by {sorted(allowed)} only")
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in by) if by else sql.SQL("")
        select = sql.SQL(", ").join([*(sql.Identifier(c) for c in by)]) + sql.SQL(", ") if by else sql.SQL("")
        group = sql.SQL("GROUP BY ") + columns if by else sql.SQL("")
        query = sql.SQL(
            "SELECT {select} sum(on_roster)::bigint AS on_roster, sum(registered)::bigint AS registered, "
            "sum(covered)::bigint AS covered FROM coverage_figures WHERE coverage_year = %s AND pool = %s {group} "
            "ORDER BY 1"
        ).format(select=select, group=group)
        with self.connection.cursor(row_factory=psycopg.rows.dict_row) as cursor:
            rows = cursor.execute(query, (coverage_year, pool)).fetchall()
            opened = sql.SQL(
                "SELECT {select} kind, sum(open)::bigint AS open FROM open_alert_figures "
                "WHERE coverage_year = %s AND pool = %s GROUP BY {columns} kind"
            ).format(select=select, columns=columns + sql.SQL(", ") if by else sql.SQL(""))
            open_rows = cursor.execute(opened, (coverage_year, pool)).fetchall()
        self.connection.commit()
        for row in rows:
            row["rate"] = round(row["covered"] / row["on_roster"], 4) if row["on_roster"] else None
            row["open_alerts"] = {r["kind"]: r["open"] for r in open_rows if all(r[c] == row[c] for c in by)}
        return rows
