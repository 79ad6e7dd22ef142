-- Each run records the process that owns it (a token naming its lock file in
-- `<database>.owners/`), so a run is failed as abandoned only when its process is gone.
ALTER TABLE refresh_runs ADD COLUMN owner TEXT;
