-- PULSE schema, version 1: the seed's tables (names and meanings kept) with the SPEC section 6
-- corrections, then the tables PULSE TUI adds. Every statement is idempotent (IF NOT EXISTS) so
-- the same script creates a new file and adopts a seed-only file; columns added to seed tables
-- are declared here too and added to existing tables by migrations.py (they all have defaults).

-- ---------------------------------------------------------------- seed tables (corrected)
CREATE TABLE IF NOT EXISTS sites (
  id TEXT PRIMARY KEY,
  name TEXT,
  domain TEXT,
  created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS events (
  event_id TEXT PRIMARY KEY,
  site_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  timestamp_ms INTEGER NOT NULL,
  session_id TEXT NOT NULL,
  user_id TEXT,
  url TEXT,
  referrer TEXT,
  country TEXT,
  device_type TEXT,
  created_at INTEGER NOT NULL,
  FOREIGN KEY (site_id) REFERENCES sites(id)
);
CREATE INDEX IF NOT EXISTS idx_events_site_timestamp ON events(site_id, timestamp_ms DESC);
CREATE INDEX IF NOT EXISTS idx_events_session ON events(session_id);
CREATE INDEX IF NOT EXISTS idx_events_user ON events(user_id);
-- added: cohort criteria read event_type, country and device_type per (site, user) from
-- this covering index, and count each user's events on a site (pulse_tui/cohorts/compiler.py)
CREATE INDEX IF NOT EXISTS idx_events_site_user
  ON events(site_id, user_id, event_type, country, device_type);

CREATE TABLE IF NOT EXISTS sessions (
  session_id TEXT PRIMARY KEY,
  site_id TEXT NOT NULL,
  user_id TEXT,
  first_event_at INTEGER NOT NULL,
  last_event_at INTEGER NOT NULL,
  event_count INTEGER DEFAULT 1,
  created_at INTEGER NOT NULL,
  FOREIGN KEY (site_id) REFERENCES sites(id)
);

CREATE TABLE IF NOT EXISTS users (
  user_id TEXT PRIMARY KEY,
  site_id TEXT,
  name TEXT,
  email TEXT,
  company TEXT,
  plan TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS cohorts (
  cohort_id TEXT PRIMARY KEY,
  site_id TEXT NOT NULL,
  name TEXT NOT NULL,
  description TEXT,
  criteria TEXT NOT NULL, -- JSON
  status TEXT DEFAULT 'active',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  kind TEXT NOT NULL DEFAULT 'criteria', -- added: 'criteria' | 'static' (SPEC 9)
  FOREIGN KEY (site_id) REFERENCES sites(id)
);

CREATE TABLE IF NOT EXISTS cohort_members (
  member_id TEXT PRIMARY KEY,
  cohort_id TEXT NOT NULL,
  session_id TEXT,
  user_id TEXT,
  joined_at INTEGER NOT NULL,
  last_seen_at INTEGER NOT NULL,
  is_active BOOLEAN DEFAULT 1,
  FOREIGN KEY (cohort_id) REFERENCES cohorts(cohort_id)
);
CREATE INDEX IF NOT EXISTS idx_cohort_members_cohort ON cohort_members(cohort_id);
CREATE INDEX IF NOT EXISTS idx_cohort_members_session ON cohort_members(session_id);
-- added: membership refresh matches rows by (cohort, user); counts read is_active from it
CREATE INDEX IF NOT EXISTS idx_cohort_members_cohort_user
  ON cohort_members(cohort_id, user_id, is_active);

CREATE TABLE IF NOT EXISTS cohort_retention_snapshots (
  snapshot_id TEXT PRIMARY KEY,
  cohort_id TEXT NOT NULL,
  site_id TEXT NOT NULL,
  week_number INTEGER NOT NULL,
  cohort_size INTEGER NOT NULL,
  returning_users INTEGER NOT NULL,
  retention_rate REAL NOT NULL,
  captured_at INTEGER NOT NULL,
  eligible INTEGER NOT NULL DEFAULT 0, -- added: members whose window k has ended
  UNIQUE(cohort_id, week_number),
  FOREIGN KEY (cohort_id) REFERENCES cohorts(cohort_id)
);

CREATE TABLE IF NOT EXISTS alert_rules (
  rule_id TEXT PRIMARY KEY,
  site_id TEXT NOT NULL,
  name TEXT NOT NULL,
  condition TEXT NOT NULL, -- JSON
  notification_type TEXT NOT NULL,
  notification_config TEXT NOT NULL, -- JSON
  status TEXT DEFAULT 'active',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'ok', -- added: ok | firing | error
  last_value REAL,                  -- added
  last_evaluated_at INTEGER,        -- added
  last_error TEXT                   -- added
);
CREATE INDEX IF NOT EXISTS idx_alert_rules_site ON alert_rules(site_id);

CREATE TABLE IF NOT EXISTS webhook_endpoints (
  id TEXT PRIMARY KEY,
  site_id TEXT NOT NULL,
  url TEXT NOT NULL,
  events TEXT NOT NULL, -- JSON array
  active BOOLEAN DEFAULT 1,
  secret TEXT,
  headers TEXT, -- JSON
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_webhook_endpoints_site ON webhook_endpoints(site_id);

CREATE TABLE IF NOT EXISTS import_jobs (
  id TEXT PRIMARY KEY,
  site_id TEXT NOT NULL,
  type TEXT NOT NULL, -- events, users, cohort_members
  status TEXT DEFAULT 'uploading',
  file_name TEXT NOT NULL,
  file_size INTEGER NOT NULL,
  total_records INTEGER,
  processed_records INTEGER DEFAULT 0,
  failed_records INTEGER DEFAULT 0,
  errors TEXT, -- JSON array
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  completed_at INTEGER,
  duplicate_records INTEGER NOT NULL DEFAULT 0, -- added (SPEC 9)
  source_path TEXT,                 -- added: where the file was when the job started
  result_path TEXT,                 -- added: where it went (processed/ or failed/)
  checkpoint_rows INTEGER NOT NULL DEFAULT 0,   -- added: data rows done (committed)
  checkpoint_offset INTEGER NOT NULL DEFAULT 0, -- added: byte offset after those rows
  checkpoint_line INTEGER NOT NULL DEFAULT 1,   -- added: physical line reached
  message TEXT                      -- added: why a job failed, in one line
);
CREATE INDEX IF NOT EXISTS idx_import_jobs_status ON import_jobs(status);

-- rejected rows of an import (the Jobs pane and NAME.errors.csv read these)
CREATE TABLE IF NOT EXISTS import_rejects (
  job_id TEXT NOT NULL,
  line INTEGER NOT NULL,
  column_name TEXT,
  value TEXT,
  reason TEXT NOT NULL,
  FOREIGN KEY (job_id) REFERENCES import_jobs(id)
);
CREATE INDEX IF NOT EXISTS idx_import_rejects_job ON import_rejects(job_id, line);

CREATE TABLE IF NOT EXISTS export_jobs (
  id TEXT PRIMARY KEY,
  site_id TEXT NOT NULL,
  type TEXT NOT NULL, -- report, metrics, audience
  name TEXT NOT NULL,
  format TEXT DEFAULT 'csv',
  filters TEXT, -- JSON
  status TEXT DEFAULT 'pending',
  file_url TEXT,
  scheduled TEXT, -- JSON {frequency, next_run}
  created_at INTEGER NOT NULL,
  completed_at INTEGER,
  error TEXT -- added: last failure, one line
);
CREATE INDEX IF NOT EXISTS idx_export_jobs_status ON export_jobs(status);

-- ---------------------------------------------------------------- added tables
CREATE TABLE IF NOT EXISTS export_runs (
  id INTEGER PRIMARY KEY,
  export_id TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  finished_at INTEGER,
  status TEXT NOT NULL DEFAULT 'running', -- running | completed | failed
  file_path TEXT,
  rows INTEGER,
  error TEXT
);
CREATE INDEX IF NOT EXISTS idx_export_runs_export ON export_runs(export_id, started_at);

CREATE TABLE IF NOT EXISTS alert_history (
  id INTEGER PRIMARY KEY,
  rule_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  value REAL,
  threshold REAL,
  state TEXT NOT NULL,
  message TEXT
);
CREATE INDEX IF NOT EXISTS idx_alert_history_rule ON alert_history(rule_id, at);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
  id TEXT PRIMARY KEY,             -- the webhook-id header; never sent twice once delivered
  endpoint_id TEXT NOT NULL,
  event_type TEXT NOT NULL,
  payload TEXT NOT NULL,           -- the JSON body, exactly as signed
  status TEXT NOT NULL DEFAULT 'pending', -- pending | delivered | failed
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_status_code INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL,
  delivered_at INTEGER
);
CREATE INDEX IF NOT EXISTS idx_webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);

-- one row per lease name; the worker renews it, a dead holder's row expires
CREATE TABLE IF NOT EXISTS worker_lease (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  pid INTEGER,
  host TEXT,
  import_dir TEXT,
  acquired_at INTEGER NOT NULL,
  renewed_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);

-- the worker's periodic jobs: last run, duration and outcome (the Jobs pane shows it)
CREATE TABLE IF NOT EXISTS scheduler_jobs (
  name TEXT PRIMARY KEY,
  last_run_at INTEGER,
  last_duration_ms INTEGER,
  last_outcome TEXT,
  next_run_at INTEGER
);

-- key/value state of derived data (high-water marks, versions)
CREATE TABLE IF NOT EXISTS pulse_meta (
  key TEXT PRIMARY KEY,
  value TEXT
);

-- first event per site and user; cleanup never touches it (retention stays right)
CREATE TABLE IF NOT EXISTS user_first_seen (
  site_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  first_seen_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL,
  PRIMARY KEY (site_id, user_id)
) WITHOUT ROWID;

-- ---------------------------------------------------------------- rollups (derived from events)
-- day = timestamp_ms / 86400000 (UTC day number); hour = timestamp_ms / 3600000
CREATE TABLE IF NOT EXISTS rollup_daily (
  site_id TEXT NOT NULL,
  day INTEGER NOT NULL,
  events INTEGER NOT NULL,
  PRIMARY KEY (site_id, day)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rollup_hourly (
  site_id TEXT NOT NULL,
  hour INTEGER NOT NULL,
  events INTEGER NOT NULL,
  PRIMARY KEY (site_id, hour)
) WITHOUT ROWID;

-- distinct users and sessions per day, so range distincts stay exact
CREATE TABLE IF NOT EXISTS rollup_daily_users (
  site_id TEXT NOT NULL,
  day INTEGER NOT NULL,
  user_id TEXT NOT NULL,
  events INTEGER NOT NULL,
  PRIMARY KEY (site_id, day, user_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rollup_daily_sessions (
  site_id TEXT NOT NULL,
  day INTEGER NOT NULL,
  session_id TEXT NOT NULL,
  PRIMARY KEY (site_id, day, session_id)
) WITHOUT ROWID;

-- events per day and dimension value; dim is event_type, url, referrer, country or device_type,
-- value '' stands for NULL or empty
CREATE TABLE IF NOT EXISTS rollup_daily_dims (
  site_id TEXT NOT NULL,
  dim TEXT NOT NULL,
  value TEXT NOT NULL,
  day INTEGER NOT NULL,
  events INTEGER NOT NULL,
  PRIMARY KEY (site_id, dim, day, value)
) WITHOUT ROWID;

-- exact distinct counts over any day range (reports): rollup_presence says on which days an
-- entity (user_id; session_id for dim 'session') was seen per key, with its previous day for the
-- same key; rollup_distinct_gaps counts those rows per (key, day, gap = day - prev_day, or
-- 1000000000 when there is no earlier day). Distinct entities over [F, T] =
-- sum(n) WHERE day BETWEEN F AND T AND gap > day - F (each entity counted on its first day in
-- the range), so 90-day distincts read days x gaps rows, never users. Keys: dim 'user' and
-- 'session' with value ''; and every rollup_daily_dims dimension with its value (users only).
CREATE TABLE IF NOT EXISTS rollup_presence (
  site_id TEXT NOT NULL,
  dim TEXT NOT NULL,
  value TEXT NOT NULL,
  entity TEXT NOT NULL,
  day INTEGER NOT NULL,
  prev_day INTEGER,
  PRIMARY KEY (site_id, dim, value, entity, day)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS rollup_distinct_gaps (
  site_id TEXT NOT NULL,
  dim TEXT NOT NULL,
  value TEXT NOT NULL,
  day INTEGER NOT NULL,
  gap INTEGER NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (site_id, dim, value, day, gap)
) WITHOUT ROWID;

-- ---------------------------------------------------------------- retention (store/retention.py)
-- weekly acquisition-cohort retention as last snapshotted (the retention grid reads it): one row
-- per site, cohort week (its Monday, YYYY-MM-DD) and week_number k whose week had ended when
-- captured (week 0 always); returning_users = users of the cohort with an event in week k.
CREATE TABLE IF NOT EXISTS acquisition_retention (
  site_id TEXT NOT NULL,
  cohort_week TEXT NOT NULL,
  week_number INTEGER NOT NULL,
  size INTEGER NOT NULL,
  returning_users INTEGER NOT NULL,
  captured_at INTEGER NOT NULL,
  PRIMARY KEY (site_id, cohort_week, week_number)
) WITHOUT ROWID;
