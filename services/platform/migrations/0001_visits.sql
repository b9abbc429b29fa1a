-- The visit counter. The app also makes it at startup, for stacks that ran
-- before migrations existed; IF NOT EXISTS makes this one a no-op there.
SET lock_timeout = '5s';
CREATE TABLE IF NOT EXISTS visits (id int PRIMARY KEY, count bigint NOT NULL DEFAULT 0);
INSERT INTO visits (id) VALUES (1) ON CONFLICT (id) DO NOTHING;
