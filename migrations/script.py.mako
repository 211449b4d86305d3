"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from pathlib import Path

from pgjobs.migrate import run_sql_file

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None

# This revision's SQL, beside it: <this file's name>.upgrade.sql and .downgrade.sql.
# Describe what the upgrade makes of the schema in migrations/schema.sql too.
SQL = f"versions/{Path(__file__).stem}"


def upgrade() -> None:
    run_sql_file(f"{SQL}.upgrade.sql")


def downgrade() -> None:
    run_sql_file(f"{SQL}.downgrade.sql")
