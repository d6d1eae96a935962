"""The schema's documentation, generated from its definitions (`seqcast.store.schema`): the Markdown schema
document, a dbt `sources.yml`, and the column comments PostgreSQL stores.

    python -m seqcast.store.docs docs/      # writes docs/schema.md and docs/dbt/sources.yml

A test checks that the committed files are what this generates.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from seqcast.store import schema

#: dbt's freshness rule: a monthly pipeline that has not published for over a month is late.
FRESHNESS = {"warn_after": {"count": 35, "period": "day"}, "error_after": {"count": 62, "period": "day"}}


def comment_statements() -> list[sa.schema.ExecutableDDLElement]:
    """The statements that set every table's and column's description as its comment (PostgreSQL)."""
    out: list[sa.schema.ExecutableDDLElement] = []
    for table in schema.metadata.sorted_tables:
        if table.comment:
            out.append(sa.schema.SetTableComment(table))
        out.extend(sa.schema.SetColumnComment(c) for c in table.columns if c.comment)
    return out


def _view_columns() -> dict[str, list[str]]:
    """Each view's columns, as SQLite reports them for the schema built in memory."""
    engine = sa.create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            schema.metadata.create_all(conn)
            for name, body in schema.VIEWS.items():
                conn.exec_driver_sql(f"CREATE VIEW {name} AS {body}")
            inspector = sa.inspect(conn)
            return {name: [c["name"] for c in inspector.get_columns(name)] for name in schema.VIEWS}
    finally:
        engine.dispose()


def _type(column: sa.Column[Any]) -> str:
    return str(column.type.compile(dialect=sa.create_engine("sqlite://").dialect)).lower()


def described() -> list[dict[str, Any]]:
    """Every table and view: name, kind, description, key and columns (name, type, description)."""
    out: list[dict[str, Any]] = []
    for table in schema.metadata.sorted_tables:
        if table.name == schema.meta_table.name:
            continue
        out.append(
            {
                "name": str(table.name),
                "kind": "table",
                "description": table.comment or "",
                "key": schema.keys(table.name),
                "columns": [
                    {
                        "name": str(c.name),
                        "type": _type(c),
                        "description": c.comment or "",
                        "nullable": bool(c.nullable),
                    }
                    for c in table.columns
                ],
            }
        )
    columns = _view_columns()
    for name, (description, base, extra) in schema.VIEW_DOCS.items():
        docs: list[dict[str, Any]] = []
        for column in columns[name]:
            type_ = ""
            if column in extra:
                text = extra[column]
            elif base is not None and column in base.columns:
                text = base.columns[column].comment or ""
                type_ = _type(base.columns[column])
            else:
                raise KeyError(f"view {name}: column {column} has no description")
            docs.append({"name": column, "type": type_, "description": text, "nullable": True})
        out.append({"name": name, "kind": "view", "description": description, "key": schema.keys(name),
                    "columns": docs})  # fmt: skip
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def schema_markdown() -> str:
    """The schema document: every table and view, its key, and what each column means and in which unit."""
    lines = [
        "# Tables and views",
        "",
        "Generated from `seqcast/store/schema.py` by `python -m seqcast.store.docs docs/`; do not edit by hand.",
        "Periods are dates (the first of the month); timestamps are UTC. On PostgreSQL the same descriptions",
        "are the tables' and columns' comments. A dbt source definition is in `docs/dbt/sources.yml`.",
        "",
    ]
    for item in described():
        lines += [f"## `{item['name']}` ({item['kind']})", "", item["description"], ""]
        lines += [f"Key: {', '.join(f'`{k}`' for k in item['key'])}", ""]
        lines += ["| column | type | meaning |", "| --- | --- | --- |"]
        for c in item["columns"]:
            type_ = c["type"] + ("" if c["nullable"] or not c["type"] else ", not null")
            lines.append(f"| `{c['name']}` | {type_} | {_cell(c['description'])} |")
        lines.append("")
    return "\n".join(lines)


def dbt_sources() -> str:
    """A dbt `sources.yml` naming every table and view, with descriptions, keys and a freshness rule."""
    tables = []
    for item in described():
        entry: dict[str, Any] = {"name": item["name"], "description": item["description"]}
        if item["name"] == "pipeline_runs":
            entry["loaded_at_field"] = "finished_at"
            entry["freshness"] = FRESHNESS
        elif item["name"] in ("latest_forecasts", "latest_metrics"):
            entry["loaded_at_field"] = "published_at"
            entry["freshness"] = FRESHNESS
        entry["columns"] = []
        for c in item["columns"]:
            column: dict[str, Any] = {"name": c["name"], "description": c["description"]}
            tests = ["not_null"] if c["name"] in item["key"] else []
            if tests:
                column["data_tests"] = tests
            entry["columns"].append(column)
        tables.append(entry)
    document = {
        "version": 2,
        "sources": [
            {
                "name": "seqcast",
                "description": "Monthly forecasts, their holdout metrics and the forecast ledger, published by "
                "seqcast (docs/schema.md).",
                "tables": tables,
            }
        ],
    }
    header = "# Generated from seqcast/store/schema.py by `python -m seqcast.store.docs docs/`; do not edit.\n"
    return header + str(yaml.safe_dump(document, sort_keys=False, width=110, allow_unicode=True))


def write(folder: Path) -> list[Path]:
    """Write `schema.md` and `dbt/sources.yml` under `folder`."""
    (folder / "dbt").mkdir(parents=True, exist_ok=True)
    written = [folder / "schema.md", folder / "dbt" / "sources.yml"]
    written[0].write_text(schema_markdown())
    written[1].write_text(dbt_sources())
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(path)
