"""Named, ordered schema migrations, recorded in the database (table schema_migrations).

Append new migrations to MIGRATIONS; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

Migration = tuple[str, Callable[[sqlite3.Connection], None]]


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run statements one by one: executescript() would COMMIT the open transaction."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement!r}")


def _m001_initial(conn: sqlite3.Connection) -> None:
    _run_script(
        conn,
        """
        CREATE TABLE spaces (
            name TEXT PRIMARY KEY,
            created_at REAL NOT NULL
        );
        CREATE TABLE memories (
            rowid INTEGER PRIMARY KEY,
            space TEXT NOT NULL,
            id TEXT NOT NULL,
            content TEXT NOT NULL,
            embedding BLOB,
            confidence REAL NOT NULL,
            activation REAL NOT NULL DEFAULT 0,
            decay_rate REAL NOT NULL DEFAULT 0,
            memory_type INTEGER NOT NULL DEFAULT 0,
            state INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            last_access REAL NOT NULL,
            updated_at REAL NOT NULL,
            suppressed INTEGER NOT NULL DEFAULT 0,
            tags TEXT NOT NULL DEFAULT '[]',
            metadata TEXT NOT NULL DEFAULT '{}',
            UNIQUE (space, id)
        );
        CREATE INDEX memories_space_state ON memories (space, state);
        CREATE VIRTUAL TABLE memories_fts USING fts5(
            content, content='memories', content_rowid='rowid',
            tokenize='porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
            INSERT INTO memories_fts (rowid, content) VALUES (new.rowid, new.content);
        END;
        CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, content)
                VALUES ('delete', old.rowid, old.content);
        END;
        CREATE TRIGGER memories_au AFTER UPDATE OF content ON memories
        WHEN old.content IS NOT new.content BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, content)
                VALUES ('delete', old.rowid, old.content);
            INSERT INTO memories_fts (rowid, content) VALUES (new.rowid, new.content);
        END;
        CREATE TABLE associations (
            space TEXT NOT NULL,
            source TEXT NOT NULL,
            target TEXT NOT NULL,
            type INTEGER NOT NULL DEFAULT 0,
            strength REAL NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (space, source, target)
        ) WITHOUT ROWID;
        CREATE INDEX associations_target ON associations (space, target);
        """
    )


def _m002_edges(conn: sqlite3.Connection) -> None:
    """Spreading activation's own index: every association in both directions between
    memory rowids, kept in step by triggers. Integer keys make a hop a few compact
    B-tree look-ups instead of two text-keyed ones per memory. Where both a -> b and
    b -> a exist, the stronger carries activation (as spreading always did)."""
    _run_script(
        conn,
        """
        CREATE TABLE edges (
            src INTEGER NOT NULL,
            dst INTEGER NOT NULL,
            strength REAL NOT NULL,
            PRIMARY KEY (src, dst)
        ) WITHOUT ROWID;
        CREATE TRIGGER associations_edges_ai AFTER INSERT ON associations BEGIN
            INSERT INTO edges (src, dst, strength)
                SELECT s.rowid, t.rowid, new.strength FROM memories s, memories t
                WHERE s.space = new.space AND s.id = new.source
                  AND t.space = new.space AND t.id = new.target
                ON CONFLICT (src, dst) DO UPDATE SET strength = max(strength, excluded.strength);
            INSERT INTO edges (src, dst, strength)
                SELECT t.rowid, s.rowid, new.strength FROM memories s, memories t
                WHERE s.space = new.space AND s.id = new.source
                  AND t.space = new.space AND t.id = new.target
                ON CONFLICT (src, dst) DO UPDATE SET strength = max(strength, excluded.strength);
        END;
        CREATE TRIGGER associations_edges_au AFTER UPDATE OF strength ON associations BEGIN
            INSERT INTO edges (src, dst, strength)
                SELECT s.rowid, t.rowid, new.strength FROM memories s, memories t
                WHERE s.space = new.space AND s.id = new.source
                  AND t.space = new.space AND t.id = new.target
                ON CONFLICT (src, dst) DO UPDATE SET strength = max(strength, excluded.strength);
            INSERT INTO edges (src, dst, strength)
                SELECT t.rowid, s.rowid, new.strength FROM memories s, memories t
                WHERE s.space = new.space AND s.id = new.source
                  AND t.space = new.space AND t.id = new.target
                ON CONFLICT (src, dst) DO UPDATE SET strength = max(strength, excluded.strength);
        END;
        CREATE TRIGGER associations_edges_ad AFTER DELETE ON associations BEGIN
            DELETE FROM edges
                WHERE src = (SELECT rowid FROM memories WHERE space = old.space
                             AND id = old.source)
                  AND dst = (SELECT rowid FROM memories WHERE space = old.space
                             AND id = old.target);
            DELETE FROM edges
                WHERE src = (SELECT rowid FROM memories WHERE space = old.space
                             AND id = old.target)
                  AND dst = (SELECT rowid FROM memories WHERE space = old.space
                             AND id = old.source);
        END;
        CREATE TRIGGER memories_edges_ad AFTER DELETE ON memories BEGIN
            DELETE FROM edges WHERE dst = old.rowid
                AND src IN (SELECT dst FROM edges WHERE src = old.rowid);
            DELETE FROM edges WHERE src = old.rowid;
        END;
        INSERT INTO edges (src, dst, strength)
            SELECT s.rowid, t.rowid, a.strength FROM associations a
            JOIN memories s ON s.space = a.space AND s.id = a.source
            JOIN memories t ON t.space = a.space AND t.id = a.target
            WHERE true
            ON CONFLICT (src, dst) DO UPDATE SET strength = max(strength, excluded.strength);
        INSERT INTO edges (src, dst, strength)
            SELECT t.rowid, s.rowid, a.strength FROM associations a
            JOIN memories s ON s.space = a.space AND s.id = a.source
            JOIN memories t ON t.space = a.space AND t.id = a.target
            WHERE true
            ON CONFLICT (src, dst) DO UPDATE SET strength = max(strength, excluded.strength);
        """
    )


# The full-text index's triggers (as migration 001 made them), for the migrations that
# re-create them.
_FTS_TRIGGERS = """
        CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN
            INSERT INTO memories_fts (rowid, content) VALUES (new.rowid, new.content);
        END;
        CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, content)
                VALUES ('delete', old.rowid, old.content);
        END;
        CREATE TRIGGER memories_au AFTER UPDATE OF content ON memories
        WHEN old.content IS NOT new.content BEGIN
            INSERT INTO memories_fts (memories_fts, rowid, content)
                VALUES ('delete', old.rowid, old.content);
            INSERT INTO memories_fts (rowid, content) VALUES (new.rowid, new.content);
        END;
"""


def _m003_fts_postings_only(conn: sqlite3.Connection) -> None:
    """The full-text index keeps which memories hold a word and nothing more
    (detail=none): recall reads postings only (engine/text.py), never positions or
    columns, and without them an insert is about 12% cheaper and a store of 200,000
    memories about 10% smaller. Rebuilt from the memories table; the triggers are
    re-created as they were."""
    _run_script(
        conn,
        """
        DROP TRIGGER memories_ai;
        DROP TRIGGER memories_ad;
        DROP TRIGGER memories_au;
        DROP TABLE memories_fts;
        CREATE VIRTUAL TABLE memories_fts USING fts5(
            content, content='memories', content_rowid='rowid', detail=none,
            tokenize='porter unicode61 remove_diacritics 2'
        );
        INSERT INTO memories_fts (memories_fts) VALUES ('rebuild');
        """ + _FTS_TRIGGERS,
    )


_MEMORY_COLUMNS = """content, embedding, confidence, activation, decay_rate, memory_type,
    state, created_at, last_access, updated_at, suppressed, tags, metadata"""


def _m004_memory_keys(conn: sqlite3.Connection) -> None:
    """Memories are found by a 64-bit key of (space, id) (model.memory_key, SQL function
    engram_key) under a unique index, instead of a unique index of (space, id) itself:
    ids are long and random, and that index made each commit of a bulk load rewrite
    three to four times as many pages (about a third of an insert's cost at 1M
    memories). The table is rebuilt with its rowids (the FTS index and the edges refer to
    them); the association triggers look memories up by key, so a connection that writes
    associations needs engram_key (Store registers it on each of its connections)."""
    _run_script(
        conn,
        f"""
        DROP TRIGGER associations_edges_ai;
        DROP TRIGGER associations_edges_au;
        DROP TRIGGER associations_edges_ad;
        DROP TRIGGER memories_edges_ad;
        DROP TRIGGER memories_ai;
        DROP TRIGGER memories_ad;
        DROP TRIGGER memories_au;
        CREATE TABLE memories_keyed (
            rowid INTEGER PRIMARY KEY,
            space TEXT NOT NULL,
            id TEXT NOT NULL,
            key INTEGER NOT NULL,
            content TEXT NOT NULL,
            embedding BLOB,
            confidence REAL NOT NULL,
            activation REAL NOT NULL DEFAULT 0,
            decay_rate REAL NOT NULL DEFAULT 0,
            memory_type INTEGER NOT NULL DEFAULT 0,
            state INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            last_access REAL NOT NULL,
            updated_at REAL NOT NULL,
            suppressed INTEGER NOT NULL DEFAULT 0,
            tags TEXT NOT NULL DEFAULT '[]',
            metadata TEXT NOT NULL DEFAULT '{{}}'
        );
        INSERT INTO memories_keyed (rowid, space, id, key, {_MEMORY_COLUMNS})
            SELECT rowid, space, id, engram_key(space, id), {_MEMORY_COLUMNS} FROM memories;
        DROP TABLE memories;
        ALTER TABLE memories_keyed RENAME TO memories;
        CREATE UNIQUE INDEX memories_key ON memories (key);
        CREATE INDEX memories_space_state ON memories (space, state);
        {_FTS_TRIGGERS}
        CREATE TRIGGER associations_edges_ai AFTER INSERT ON associations BEGIN
            INSERT INTO edges (src, dst, strength)
                SELECT s.rowid, t.rowid, new.strength FROM memories s, memories t
                WHERE s.key = engram_key(new.space, new.source) AND s.id = new.source
                  AND t.key = engram_key(new.space, new.target) AND t.id = new.target
                ON CONFLICT (src, dst) DO UPDATE SET strength = max(strength, excluded.strength);
            INSERT INTO edges (src, dst, strength)
                SELECT t.rowid, s.rowid, new.strength FROM memories s, memories t
                WHERE s.key = engram_key(new.space, new.source) AND s.id = new.source
                  AND t.key = engram_key(new.space, new.target) AND t.id = new.target
                ON CONFLICT (src, dst) DO UPDATE SET strength = max(strength, excluded.strength);
        END;
        CREATE TRIGGER associations_edges_au AFTER UPDATE OF strength ON associations BEGIN
            INSERT INTO edges (src, dst, strength)
                SELECT s.rowid, t.rowid, new.strength FROM memories s, memories t
                WHERE s.key = engram_key(new.space, new.source) AND s.id = new.source
                  AND t.key = engram_key(new.space, new.target) AND t.id = new.target
                ON CONFLICT (src, dst) DO UPDATE SET strength = max(strength, excluded.strength);
            INSERT INTO edges (src, dst, strength)
                SELECT t.rowid, s.rowid, new.strength FROM memories s, memories t
                WHERE s.key = engram_key(new.space, new.source) AND s.id = new.source
                  AND t.key = engram_key(new.space, new.target) AND t.id = new.target
                ON CONFLICT (src, dst) DO UPDATE SET strength = max(strength, excluded.strength);
        END;
        CREATE TRIGGER associations_edges_ad AFTER DELETE ON associations BEGIN
            DELETE FROM edges
                WHERE src = (SELECT rowid FROM memories
                             WHERE key = engram_key(old.space, old.source) AND id = old.source)
                  AND dst = (SELECT rowid FROM memories
                             WHERE key = engram_key(old.space, old.target) AND id = old.target);
            DELETE FROM edges
                WHERE src = (SELECT rowid FROM memories
                             WHERE key = engram_key(old.space, old.target) AND id = old.target)
                  AND dst = (SELECT rowid FROM memories
                             WHERE key = engram_key(old.space, old.source) AND id = old.source);
        END;
        CREATE TRIGGER memories_edges_ad AFTER DELETE ON memories BEGIN
            DELETE FROM edges WHERE dst = old.rowid
                AND src IN (SELECT dst FROM edges WHERE src = old.rowid);
            DELETE FROM edges WHERE src = old.rowid;
        END;
        """
    )


def _m005_stat_counters(conn: sqlite3.Connection) -> None:
    """Totals for `stats` kept as memories are written, by triggers in the writing
    transaction, so that stats reads a few counter rows instead of scanning millions of
    memories (8 s at 3M). memory_counts: count and sums per (space, type, state,
    suppressed); memory_bounds: oldest and newest created_at of each space's visible
    memories (a bound whose memory left is marked stale and recomputed for that space
    when read); association_counts: associations per space. Filled once from the rows."""
    _run_script(
        conn,
        """
        CREATE TABLE memory_counts (
            space TEXT NOT NULL,
            memory_type INTEGER NOT NULL,
            state INTEGER NOT NULL,
            suppressed INTEGER NOT NULL,
            n INTEGER NOT NULL,
            sum_confidence REAL NOT NULL,
            sum_activation REAL NOT NULL,
            PRIMARY KEY (space, memory_type, state, suppressed)
        ) WITHOUT ROWID;
        INSERT INTO memory_counts
            SELECT space, memory_type, state, suppressed, count(*), total(confidence),
                   total(activation)
            FROM memories GROUP BY space, memory_type, state, suppressed;
        CREATE TABLE memory_bounds (
            space TEXT PRIMARY KEY,
            oldest REAL,
            newest REAL,
            stale INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        INSERT INTO memory_bounds (space, oldest, newest)
            SELECT space, min(created_at), max(created_at) FROM memories
            WHERE suppressed = 0 GROUP BY space;
        CREATE TABLE association_counts (
            space TEXT PRIMARY KEY,
            n INTEGER NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO association_counts SELECT space, count(*) FROM associations GROUP BY space;
        CREATE TRIGGER memory_counts_ai AFTER INSERT ON memories BEGIN
            INSERT INTO memory_counts VALUES (new.space, new.memory_type, new.state,
                new.suppressed, 1, new.confidence, new.activation)
            ON CONFLICT DO UPDATE SET n = n + 1,
                sum_confidence = sum_confidence + excluded.sum_confidence,
                sum_activation = sum_activation + excluded.sum_activation;
            INSERT INTO memory_bounds (space, oldest, newest)
                SELECT new.space, new.created_at, new.created_at WHERE new.suppressed = 0
            ON CONFLICT DO UPDATE SET oldest = min(oldest, excluded.oldest),
                newest = max(newest, excluded.newest) WHERE stale = 0;
        END;
        CREATE TRIGGER memory_counts_ad AFTER DELETE ON memories BEGIN
            UPDATE memory_counts SET n = n - 1, sum_confidence = sum_confidence - old.confidence,
                sum_activation = sum_activation - old.activation
            WHERE space = old.space AND memory_type = old.memory_type AND state = old.state
              AND suppressed = old.suppressed;
            UPDATE memory_bounds SET stale = 1
            WHERE space = old.space AND old.suppressed = 0
              AND (old.created_at <= oldest OR old.created_at >= newest);
        END;
        CREATE TRIGGER memory_counts_au AFTER UPDATE OF space, memory_type, state, suppressed,
            confidence, activation, created_at ON memories BEGIN
            UPDATE memory_counts SET n = n - 1, sum_confidence = sum_confidence - old.confidence,
                sum_activation = sum_activation - old.activation
            WHERE space = old.space AND memory_type = old.memory_type AND state = old.state
              AND suppressed = old.suppressed;
            INSERT INTO memory_counts VALUES (new.space, new.memory_type, new.state,
                new.suppressed, 1, new.confidence, new.activation)
            ON CONFLICT DO UPDATE SET n = n + 1,
                sum_confidence = sum_confidence + excluded.sum_confidence,
                sum_activation = sum_activation + excluded.sum_activation;
            UPDATE memory_bounds SET stale = 1
            WHERE space = old.space AND old.suppressed = 0
              AND (new.suppressed = 1 OR new.space IS NOT old.space
                   OR new.created_at IS NOT old.created_at)
              AND (old.created_at <= oldest OR old.created_at >= newest);
            INSERT INTO memory_bounds (space, oldest, newest)
                SELECT new.space, new.created_at, new.created_at WHERE new.suppressed = 0
            ON CONFLICT DO UPDATE SET oldest = min(oldest, excluded.oldest),
                newest = max(newest, excluded.newest) WHERE stale = 0;
        END;
        CREATE TRIGGER association_counts_ai AFTER INSERT ON associations BEGIN
            INSERT INTO association_counts VALUES (new.space, 1)
            ON CONFLICT DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER association_counts_ad AFTER DELETE ON associations BEGIN
            UPDATE association_counts SET n = n - 1 WHERE space = old.space;
        END;
        """
    )


def _m006_vector_log(conn: sqlite3.Connection) -> None:
    """What the vector indexer follows (engine/indexer.py): every insert, delete and change
    of a memory's content, embedding or visibility appends its rowid to `vector_log`, in
    the writing transaction, so the index (a cache of SQLite, saved with the last sequence
    it holds) catches up after a crash by replaying the log past its watermark. `vectors`
    holds the vectors the server computed for memories sent without one (float16; a
    memory's own embedding stays in `memories.embedding`); a change of content drops it.
    Existing memories are logged once so that an older store gets indexed."""
    _run_script(
        conn,
        """
        CREATE TABLE vector_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            rid INTEGER NOT NULL,
            space TEXT NOT NULL
        );
        CREATE TABLE vectors (
            rid INTEGER PRIMARY KEY,
            model TEXT NOT NULL,
            vec BLOB NOT NULL
        );
        CREATE TRIGGER memories_vlog_ai AFTER INSERT ON memories BEGIN
            INSERT INTO vector_log (rid, space) VALUES (NEW.rowid, NEW.space);
        END;
        CREATE TRIGGER memories_vlog_au AFTER UPDATE OF content, embedding, suppressed
        ON memories BEGIN
            DELETE FROM vectors WHERE rid = NEW.rowid AND NEW.content IS NOT OLD.content;
            INSERT INTO vector_log (rid, space) VALUES (NEW.rowid, NEW.space);
        END;
        CREATE TRIGGER memories_vlog_ad AFTER DELETE ON memories BEGIN
            DELETE FROM vectors WHERE rid = OLD.rowid;
            INSERT INTO vector_log (rid, space) VALUES (OLD.rowid, OLD.space);
        END;
        INSERT INTO vector_log (rid, space) SELECT rowid, space FROM memories;
        """,
    )


def _m007_space_dims(conn: sqlite3.Connection) -> None:
    """A space holds one dimension: `space_dims` records it, decided by the first vector
    committed to the space, in the writing transaction (so it survives kill -9 and two
    first writers cannot both win). A memory's own embedding sets it in op_remember
    (engine/writes.py), which refuses a vector of another dimension; a vector the server
    computed sets it by the trigger below (`vectors` holds float16, two bytes a value).
    An older store gets the dimension of each space's oldest vector, as its index did:
    the indexer took vectors in rowid order and skipped those of another dimension."""
    _run_script(
        conn,
        """
        CREATE TABLE space_dims (
            space TEXT PRIMARY KEY,
            dim INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TRIGGER vectors_dim_ai AFTER INSERT ON vectors BEGIN
            INSERT OR IGNORE INTO space_dims (space, dim)
                SELECT space, length(NEW.vec) / 2 FROM memories WHERE rowid = NEW.rid;
        END;
        INSERT INTO space_dims (space, dim)
            SELECT space, dim FROM (
                SELECT m.space AS space, min(m.rowid),
                       CASE WHEN m.embedding IS NOT NULL THEN length(m.embedding) / 4
                            ELSE length(v.vec) / 2 END AS dim
                FROM memories m LEFT JOIN vectors v ON v.rid = m.rowid
                WHERE m.embedding IS NOT NULL OR v.vec IS NOT NULL
                GROUP BY m.space);
        """,
    )


def _m008_fts_usermerge(conn: sqlite3.Connection) -> None:
    """FTS5's 'merge' command merges two b-trees of a level, not four (its usermerge
    option, kept in the index's config table): engine/textmerge.py merges the full-text
    index down to at most one b-tree a level once writes are quiet."""
    conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('usermerge', 2)")


def _m009_space_dims_taken_over(conn: sqlite3.Connection) -> None:
    """Until this version the indexer stored a text-only memory's computed vector with
    INSERT OR REPLACE, and a trigger's statements take the conflict policy of the one that
    fired them: vectors_dim_ai's INSERT OR IGNORE replaced the dimension of a space of its
    memories' own vectors (an upstream client's 768) with the model's, and the client's
    next vector was refused. Such a space records the dimension of its computed vectors
    while its oldest own vector has another: it gets that one back, the computed vectors
    of another dimension than their space's go, and each of its memories is logged for the
    indexer, which indexes the space again at the recorded dimension."""
    _run_script(
        conn,
        """
        CREATE TEMP TABLE oldest_own AS
            SELECT space, length(embedding) / 4 AS dim FROM (
                SELECT space, embedding, min(rowid) FROM memories
                WHERE embedding IS NOT NULL GROUP BY space);
        CREATE TEMP TABLE taken_over AS
            SELECT d.space AS space, o.dim AS dim FROM space_dims d
                JOIN oldest_own o ON o.space = d.space
            WHERE o.dim != d.dim
              AND EXISTS (SELECT 1 FROM vectors v JOIN memories m ON m.rowid = v.rid
                          WHERE m.space = d.space AND length(v.vec) / 2 = d.dim);
        UPDATE space_dims
            SET dim = (SELECT t.dim FROM taken_over t WHERE t.space = space_dims.space)
            WHERE space IN (SELECT space FROM taken_over);
        DELETE FROM vectors WHERE rid IN (
            SELECT m.rowid FROM taken_over t JOIN memories m ON m.space = t.space)
            AND length(vec) / 2 != (SELECT t.dim FROM taken_over t JOIN memories m
                                    ON m.space = t.space WHERE m.rowid = vectors.rid);
        INSERT INTO vector_log (rid, space)
            SELECT rowid, space FROM memories WHERE space IN (SELECT space FROM taken_over);
        DROP TABLE oldest_own;
        DROP TABLE taken_over;
        """,
    )


def _m010_visible_index(conn: sqlite3.Connection) -> None:
    """Recall asks which of a few dozen rowids are visible memories of a space many times
    a call (the full-text seeds' cut, the vector index's candidates), and the seed cut
    breaks ties by confidence and key: an index of (space, suppressed, rowid, confidence,
    key) answers both from its own pages, about 40 bytes a memory, instead of a random
    page of the table for each (engine/rows.py `visible`)."""
    conn.execute("CREATE INDEX memories_visible ON memories "
                 "(space, suppressed, rowid, confidence, key)")


def _m011_own_vectors_supersede(conn: sqlite3.Connection) -> None:
    """A memory's own embedding supersedes the vector the server computed for its text: a
    memory that was stored as text and later sent with its embedding (the same text) kept
    both, and what reads a memory's vector had to read its row to learn which one counts.
    The trigger now drops the computed vector when an own embedding arrives, and such
    pairs already stored lose theirs."""
    _run_script(
        conn,
        """
        DROP TRIGGER memories_vlog_au;
        CREATE TRIGGER memories_vlog_au AFTER UPDATE OF content, embedding, suppressed
        ON memories BEGIN
            DELETE FROM vectors WHERE rid = NEW.rowid
                AND (NEW.content IS NOT OLD.content OR NEW.embedding IS NOT NULL);
            INSERT INTO vector_log (rid, space) VALUES (NEW.rowid, NEW.space);
        END;
        DELETE FROM vectors WHERE rid IN (
            SELECT v.rid FROM vectors v JOIN memories m ON m.rowid = v.rid
            WHERE m.embedding IS NOT NULL);
        """,
    )


def _m012_visible_index_ranks(conn: sqlite3.Connection) -> None:
    """Ranking a recall's candidates needs each one's stored confidence, decay rate and
    last access: with those in the index of visible memories, only the answer's memories
    have their rows read (engine/rows.py `Lookup`), not the few dozen candidates'."""
    _run_script(
        conn,
        """
        DROP INDEX memories_visible;
        CREATE INDEX memories_visible ON memories
            (space, suppressed, rowid, confidence, key, decay_rate, last_access);
        """,
    )


def _m013_store_identity(conn: sqlite3.Connection) -> None:
    """A random id for this database, which the vector index records where it is saved:
    an index put beside another database (another store's copied in, a store restored from
    another machine) is then told apart however far its log has run (engine/vectors.py)."""
    _run_script(
        conn,
        """
        CREATE TABLE store_identity (id TEXT NOT NULL);
        INSERT INTO store_identity (id) VALUES (lower(hex(randomblob(16))));
        """,
    )


MIGRATIONS: list[Migration] = [
    ("001_initial", _m001_initial),
    ("002_edges", _m002_edges),
    ("003_fts_postings_only", _m003_fts_postings_only),
    ("004_memory_keys", _m004_memory_keys),
    ("005_stat_counters", _m005_stat_counters),
    ("006_vector_log", _m006_vector_log),
    ("007_space_dims", _m007_space_dims),
    ("008_fts_usermerge", _m008_fts_usermerge),
    ("009_space_dims_taken_over", _m009_space_dims_taken_over),
    ("010_visible_index", _m010_visible_index),
    ("011_own_vectors_supersede", _m011_own_vectors_supersede),
    ("012_visible_index_ranks", _m012_visible_index_ranks),
    ("013_store_identity", _m013_store_identity),
]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied = []
    for version, (name, fn) in enumerate(MIGRATIONS, start=1):
        if version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            fn(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)
