-- A finished message's row (input, trace, response, attempt log) passes 2 KB, so
-- PostgreSQL compresses it as it writes the attempt's end. With the default pglz
-- that compression was ~6 % of the server's CPU under accept load; lz4 does the
-- same work several times faster. Servers built without lz4 (or older than 14)
-- keep pglz.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE messages
        ALTER COLUMN input SET COMPRESSION lz4,
        ALTER COLUMN trace SET COMPRESSION lz4,
        ALTER COLUMN response SET COMPRESSION lz4,
        ALTER COLUMN attempt_log SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'lz4 compression is not available; messages keep pglz';
END
$$;
