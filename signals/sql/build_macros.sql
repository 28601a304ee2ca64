-- The build's macros, created before its steps run (bench/bench_build.py's floor uses them too).
-- build_normalize(x): whitespace runs to one space, then trimmed (the one text normalization);
-- the regex runs only on texts that have a run to collapse, and trim (which decodes the
-- whole text) only on texts that start or end with a space (anchored checks are cheap).
CREATE OR REPLACE TEMP MACRO build_normalize(x) AS
    CASE WHEN contains(x, '  ') OR contains(x, chr(10)) OR contains(x, chr(9)) OR contains(x, chr(13))
              OR contains(x, chr(12))
         THEN trim(regexp_replace(x, '\s+', ' ', 'g'))
         WHEN regexp_matches(x, '^\pZ') OR regexp_matches(x, '\pZ$') THEN trim(x)
         ELSE x END;
