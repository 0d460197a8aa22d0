-- flowq schema version 5: workers seen recently.
-- Each running worker keeps one row: written when it starts and on its heartbeat
-- cadence (not per job), deleted when it stops. Rows of workers not seen for a day are
-- deleted by the next worker that records itself. The dashboard and flowq doctor read it.
-- Every statement ends with ';' at the end of a line (the migrator splits on that).

CREATE TABLE IF NOT EXISTS flowq_workers (
    worker_id TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    workflows TEXT[] NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    last_seen_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (worker_id)
);
