-- The blog post's table. Run by the kit's own server (as myuser, in mydatabase) and by the
-- official postgres image from /docker-entrypoint-initdb.d (as POSTGRES_USER, in POSTGRES_DB).
CREATE TABLE IF NOT EXISTS mytable (
    id   serial PRIMARY KEY,
    name text   NOT NULL
);
