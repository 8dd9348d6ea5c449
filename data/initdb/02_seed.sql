-- Seed rows for the lessons; inserted only into an empty table, so re-running changes nothing.
INSERT INTO mytable (name)
SELECT seed.name
FROM (VALUES ('Ada'), ('Grace'), ('Edsger'), ('Barbara'), ('Donald')) AS seed(name)
WHERE NOT EXISTS (SELECT 1 FROM mytable);
