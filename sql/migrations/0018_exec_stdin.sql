-- `platform exec --stdin`: what the command reads on its stdin (at most 512 KiB; NULL: /dev/null).
ALTER TABLE core.exec_requests ADD COLUMN stdin bytea;
