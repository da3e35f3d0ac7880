"""Alembic's ``env.py`` for every service's migration history.

Alembic runs this file for ``alembic.command.upgrade`` and ``stamp``; the
only caller is ``subsidy.platform.migrations``, which hands over, in
``config.attributes``, the connection (already inside the one transaction
that holds the migration lock) and the service's own version table. There is
no ``alembic.ini`` and no URL here on purpose: run migrations with
``subsidy migrate --service NAME``, which takes the lock and knows each
service's version table; the bare ``alembic`` command would do neither.
"""

from alembic import context

_attributes = context.config.attributes
if "connection" not in _attributes:
    raise RuntimeError(
        "the subsidy migrations run through `subsidy migrate --service intake|payout|notify` "
        "(subsidy.platform.migrations), not the alembic command: it takes the migration lock "
        "and knows each service's version table"
    )

context.configure(
    connection=_attributes["connection"],
    version_table=_attributes["version_table"],
    # PostgreSQL and SQLite both roll DDL back: the pending migrations and
    # the version row commit together or not at all (the caller's transaction).
    transactional_ddl=True,
    on_version_apply=_attributes["on_version_apply"],
)
with context.begin_transaction():
    context.run_migrations()
