"""content hash by meaning

Duplicates are now told from conflicts by meaning (a `time` as an instant, numbers by value, a
null attribute as absent), so the stored hash of every event is computed again from its stored
envelope with the new rule; otherwise an event stored before the upgrade and sent again with the
same meaning would be refused as a conflict. Data only; the schema does not change.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import sqlalchemy as sa
from alembic import op

from service.domain.envelope import content_hash

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 5000


def upgrade() -> None:
    conn = op.get_bind()
    after = 0
    while rows := conn.execute(
        sa.text(
            "SELECT seq, envelope::text AS envelope FROM events WHERE seq > :after "
            "ORDER BY seq LIMIT :n"
        ),
        {"after": after, "n": PAGE},
    ).all():
        conn.execute(
            sa.text(
                "UPDATE events e SET content_hash = t.h FROM unnest(CAST(:seq AS bigint[]), "
                "CAST(:h AS bytea[])) AS t(seq, h) WHERE e.seq = t.seq"
            ),
            {
                "seq": [r.seq for r in rows],
                "h": [content_hash(orjson.loads(r.envelope)) for r in rows],
            },
        )
        after = rows[-1].seq


def downgrade() -> None:
    # The old hashes compared bytes; nothing needs them back.
    pass
