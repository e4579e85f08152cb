"""The vote as one PostgreSQL function, version 2: every rule is an argument (PostgreSQL only).

Migration 0003 wrote the rules into the SQL (the points table, the voter kinds, MAD's 1.4826, the
outlier flag's test, votes still needed), a second copy of `labeling.consensus` and
`labeling.scoring` that a change in Python would have left behind. Here the functions take the
rules as arguments, and `labeling.services.vote_function` passes them from the Python rules on
every call:

- `labeling_consensus(ages, min_votes, mad_scale, min_years)`: the median/MAD outlier rule and the
  mean, sample std and se of `labeling.consensus.compute_consensus` (mad_scale =
  `ConsensusRule.mad_scale`);
- `labeling_points_for_error(error, bounds, inclusive, points, otherwise)`:
  `labeling.scoring.points_for_error` over `POINTS_TABLE` given as arrays;
- `labeling_cast_vote(...)`: the whole vote in one round trip (row lock, the photo's votes,
  consensus, kept flags, the consensus cache, the scores that became due = `settle_scores` with
  `check_from` = the new vote's position, ledger rows and totals), with the voter kinds that count
  and earn (`labeling.scoring.NON_COUNTING_KINDS`, `EARNING_KINDS`) as arrays. It answers
  `others_kept` (the caller computes `votes_still_needed`) and, for a dropped vote of a player not
  yet flagged, the counts of the player's latest `flag_window` votes (the caller applies
  `OutlierFlagRule.due` and sets the flag).

The arithmetic is the pure cores' (whole-number sums, one correctly rounded division or square
root each): floats are bit-identical. tests/labeling/test_vote_function.py plays random vote
sequences through both paths and compares every row, and proves that a changed Python table
changes what the function awards. status: 201 stored; 401 the API token given is no longer this
active player's; 403 own photo; 404 no such active photo; 409 already voted. Nothing is written
unless status is 201.
"""
from importlib import import_module

from django.db import migrations

CONSENSUS_FUNCTION = r"""
CREATE OR REPLACE FUNCTION labeling_consensus(
    ages int[], min_votes int, mad_scale float8, min_years float8,
    OUT n_votes int, OUT n_kept int, OUT mean float8, OUT std float8, OUT se float8, OUT kept bool[]
) LANGUAGE plpgsql AS $$
DECLARE
    n int := coalesce(array_length(ages, 1), 0);
    half int := n / 2;
    sorted float8[];
    center float8;
    mad float8;
    lim float8;
    total bigint;
    squares bigint;
BEGIN
    n_votes := n;
    IF n < min_votes THEN
        kept := array_fill(true, ARRAY[n]);
        SELECT count(*), sum(a), sum(a * a) INTO n_kept, total, squares FROM unnest(ages) a;
    ELSE
        -- median, as labeling.consensus.median: the middle one, or the mean of the two middle ones
        sorted := ARRAY(SELECT a FROM unnest(ages) a ORDER BY a);
        center := CASE WHEN n % 2 = 1 THEN sorted[half + 1] ELSE (sorted[half] + sorted[half + 1]) / 2 END;
        sorted := ARRAY(SELECT abs(a - center) FROM unnest(ages) a ORDER BY 1);
        mad := CASE WHEN n % 2 = 1 THEN sorted[half + 1] ELSE (sorted[half] + sorted[half + 1]) / 2 END;
        -- mad_scale = ConsensusRule.mad_scale (mad_k x 1.4826, computed in Python), as kept_flags does
        lim := greatest(mad_scale * mad, min_years);
        SELECT array_agg(abs(a - center) <= lim ORDER BY i), count(*) FILTER (WHERE abs(a - center) <= lim),
               sum(a) FILTER (WHERE abs(a - center) <= lim), sum(a * a) FILTER (WHERE abs(a - center) <= lim)
          INTO kept, n_kept, total, squares
          FROM unnest(ages) WITH ORDINALITY t(a, i);
    END IF;
    IF n_kept = 0 THEN
        RETURN;  -- mean, std, se stay NULL
    END IF;
    mean := total::float8 / n_kept::float8;
    IF n_kept = 1 THEN
        std := 0.0;
    ELSE
        -- exact integer numerator n*sum(x^2) - (sum x)^2 = n(n-1) * sample variance
        std := sqrt((n_kept * squares - total * total)::float8 / (n_kept::bigint * (n_kept - 1))::float8);
    END IF;
    se := std / sqrt(n_kept::float8);
END $$;
"""

POINTS_FUNCTION = r"""
CREATE OR REPLACE FUNCTION labeling_points_for_error(
    error float8, bounds float8[], inclusive bool[], points int[], otherwise int
) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    -- labeling.scoring.points_for_error, over labeling.scoring.POINTS_TABLE given as three arrays
    FOR b IN 1 .. coalesce(array_length(bounds, 1), 0) LOOP
        IF error < bounds[b] OR (inclusive[b] AND error = bounds[b]) THEN
            RETURN points[b];
        END IF;
    END LOOP;
    RETURN otherwise;
END $$;
"""

CAST_VOTE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION labeling_cast_vote(
    voter bigint, photo bigint, new_age int, now timestamptz,
    min_votes int, mad_scale float8, min_years float8, min_others int,
    point_bounds float8[], point_inclusive bool[], point_values int[], points_otherwise int,
    default_kind text, non_counting_kinds text[], earning_kinds text[], flag_window int,
    token text,
    OUT status int, OUT vote_id bigint, OUT kept bool, OUT earns bool, OUT points int, OUT others_kept int,
    OUT voter_kind text, OUT owner_id bigint,
    OUT n_votes int, OUT n_kept int, OUT apparent_age float8, OUT apparent_age_std float8, OUT apparent_age_se float8,
    OUT real_age int, OUT show_real_age bool, OUT predicted_apparent_age float8,
    OUT award_users bigint[], OUT award_votes bigint[], OUT award_points int[], OUT award_against float8[],
    OUT flag_recent int, OUT flag_dropped int
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    already_flagged bool;
    ids bigint[];
    voters bigint[];
    ages int[];
    kinds text[];
    flags bool[];
    awarded bool[];
    n int;
    i int;
    new_counts bool;
    counting_ages int[];
    counting_total int;
    everyone record;
    new_flags bool[];
    others record;
    position_in_counting int[];
    j int;
    award_week date;
    players bigint[];
    have_totals int;
    have_week_totals int;
BEGIN
    -- With an API token (labeling.fast_vote, which remembers which player a token was): the token
    -- must still be that active player's, checked in the vote's own transaction. 401: nothing written.
    IF token IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id
         WHERE t.key = token AND t.user_id = voter AND u.is_active
    ) THEN
        status := 401;
        RETURN;
    END IF;
    -- The row lock serialises the votes on one photo (see labeling.services.votes).
    SELECT p.owner_id, p.n_votes, p.n_kept, p.apparent_age, p.apparent_age_std, p.apparent_age_se,
           p.real_age, p.show_real_age, p.predicted_apparent_age, pr.kind, coalesce(pr.flagged_outlier, false)
      INTO owner_id, n_votes, n_kept, apparent_age, apparent_age_std, apparent_age_se,
           real_age, show_real_age, predicted_apparent_age, voter_kind, already_flagged
      FROM labeling_photo p LEFT JOIN labeling_playerprofile pr ON pr.user_id = voter
     WHERE p.id = photo AND p.status = 'active'
       FOR UPDATE OF p;
    IF NOT FOUND THEN
        status := 404;
        RETURN;
    END IF;
    IF owner_id = voter THEN
        status := 403;
        RETURN;
    END IF;
    voter_kind := coalesce(voter_kind, default_kind);  -- no profile: the default kind
    earns := voter_kind = ANY(earning_kinds);
    new_counts := NOT voter_kind = ANY(non_counting_kinds);

    SELECT array_agg(v.id ORDER BY v.id), array_agg(v.voter_id ORDER BY v.id), array_agg(v.age ORDER BY v.id),
           array_agg(v.voter_kind ORDER BY v.id), array_agg(v.kept ORDER BY v.id),
           array_agg(EXISTS (SELECT 1 FROM leaderboard_pointsaward a WHERE a.vote_id = v.id) ORDER BY v.id)
      INTO ids, voters, ages, kinds, flags, awarded
      FROM labeling_vote v WHERE v.photo_id = photo;
    IF voter = ANY(voters) THEN
        status := 409;
        RETURN;
    END IF;

    -- The photo's votes in id order, the new one last (its id comes with the INSERT below).
    ids := ids || NULL::bigint;
    voters := voters || voter;
    ages := ages || new_age;
    kinds := kinds || voter_kind;
    awarded := awarded || false;
    n := array_length(ids, 1);

    -- The consensus of the counting votes (everyone but the model) and their kept flags.
    position_in_counting := array_fill(0, ARRAY[n]);
    counting_ages := '{}';
    FOR i IN 1 .. n LOOP
        IF NOT kinds[i] = ANY(non_counting_kinds) THEN
            counting_ages := counting_ages || ages[i];
            position_in_counting[i] := array_length(counting_ages, 1);
        END IF;
    END LOOP;
    counting_total := coalesce(array_length(counting_ages, 1), 0);
    -- (Called as an assignment, PL/pgSQL's "simple expression": planned once, no executor start-up.)
    everyone := labeling_consensus(counting_ages, min_votes, mad_scale, min_years);
    new_flags := everyone.kept;
    kept := new_counts AND new_flags[position_in_counting[n]];

    INSERT INTO labeling_vote (photo_id, voter_id, age, voter_kind, kept, created_at)
    VALUES (photo, voter, new_age, voter_kind, kept, now)
    ON CONFLICT DO NOTHING  -- a bulk writer that bypassed the row lock got there first
    RETURNING id INTO vote_id;
    IF vote_id IS NULL THEN
        status := 409;
        RETURN;
    END IF;
    ids[n] := vote_id;

    IF new_counts THEN
        -- Kept flags that changed with this vote (usually none), then the cached consensus.
        -- (votes that do not count are never kept)
        UPDATE labeling_vote v SET kept = NOT t.was_kept
          FROM unnest(ids[1:n - 1], flags, position_in_counting[1:n - 1]) t(id, was_kept, c)
         WHERE v.id = t.id AND t.was_kept <> (t.c > 0 AND new_flags[t.c]);
        n_votes := everyone.n_votes;
        n_kept := everyone.n_kept;
        apparent_age := everyone.mean;
        apparent_age_std := everyone.std;
        apparent_age_se := everyone.se;
        UPDATE labeling_photo
           SET n_votes = everyone.n_votes, n_kept = everyone.n_kept, apparent_age = everyone.mean,
               apparent_age_std = everyone.std, apparent_age_se = everyone.se
         WHERE id = photo;
    END IF;

    -- Scoring (labeling.scoring.settle_scores, check_from = the new vote's position): every vote
    -- that earns points and is not scored yet is scored against the consensus of all the other
    -- counting votes, once that keeps at least min_others of them.
    award_users := '{}';
    award_votes := '{}';
    award_points := '{}';
    award_against := '{}';
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN NOT kinds[i] = ANY(earning_kinds) OR awarded[i];
        CONTINUE WHEN counting_total - (position_in_counting[i] > 0)::int < min_others AND i < n;
        IF position_in_counting[i] > 0 THEN
            j := position_in_counting[i];
            others := labeling_consensus(counting_ages[1:j - 1] || counting_ages[j + 1:], min_votes, mad_scale, min_years);
        ELSE
            others := everyone;
        END IF;
        IF counting_total - (position_in_counting[i] > 0)::int >= min_others AND others.n_kept >= min_others THEN
            award_users := award_users || voters[i];
            award_votes := award_votes || ids[i];
            award_against := award_against || others.mean;
            award_points := award_points || labeling_points_for_error(
                abs(ages[i]::float8 - others.mean), point_bounds, point_inclusive, point_values, points_otherwise);
            IF i = n THEN
                points := award_points[array_length(award_points, 1)];
            END IF;
        ELSIF i = n THEN
            others_kept := others.n_kept;  -- for labeling.scoring.votes_still_needed
        END IF;
    END LOOP;

    IF array_length(award_users, 1) > 0 THEN
        award_week := date_trunc('week', now AT TIME ZONE 'UTC')::date;
        players := ARRAY(SELECT DISTINCT u FROM unnest(award_users) u ORDER BY u);
        -- The totals rows, created with 0 points where missing (a 0 is no level: no level lock) in
        -- statements of their own, before any increment (see leaderboard.services._totals_statements).
        -- Usually they all exist: checking costs less than the inserts and their level triggers.
        SELECT (SELECT count(*) FROM leaderboard_playertotal t WHERE t.user_id = ANY(players)),
               (SELECT count(*) FROM leaderboard_playerweektotal w WHERE w.user_id = ANY(players) AND w.week = award_week)
          INTO have_totals, have_week_totals;
        IF have_totals < cardinality(players) THEN
            INSERT INTO leaderboard_playertotal (user_id, points)
            SELECT u, 0 FROM unnest(players) u ORDER BY u
            ON CONFLICT (user_id) DO NOTHING;
        END IF;
        IF have_week_totals < cardinality(players) THEN
            INSERT INTO leaderboard_playerweektotal (user_id, week, points)
            SELECT u, award_week, 0 FROM unnest(players) u ORDER BY u
            ON CONFLICT (user_id, week) DO NOTHING;
        END IF;
        INSERT INTO leaderboard_pointsaward (user_id, reason, points, photo_id, vote_id, scored_against, awarded_at, week)
        SELECT u, 'vote', p, photo, v, a, now, award_week FROM unnest(award_users, award_votes, award_points, award_against) t(u, v, p, a);
        -- Increments as plain UPDATEs (the rows exist): only the levels' UPDATE trigger fires. Rows
        -- and levels are locked in the order every writer uses: all-time totals in user order, their
        -- levels, weekly totals in user order, their levels.
        IF cardinality(players) = 1 THEN  -- the usual case: one award (the votes on a photo are all by different players)
            UPDATE leaderboard_playertotal t SET points = t.points + award_points[1] WHERE t.user_id = players[1];
            UPDATE leaderboard_playerweektotal w SET points = w.points + award_points[1]
             WHERE w.user_id = players[1] AND w.week = award_week;
        ELSE
            -- (An UPDATE with a join locks in no set order: the rows are locked in order first.)
            PERFORM 1 FROM leaderboard_playertotal t WHERE t.user_id = ANY(players) ORDER BY t.user_id FOR UPDATE;
            UPDATE leaderboard_playertotal t SET points = t.points + g.p
              FROM (SELECT u, sum(p) AS p FROM unnest(award_users, award_points) x(u, p) GROUP BY u) g
             WHERE t.user_id = g.u;
            PERFORM 1 FROM leaderboard_playerweektotal w WHERE w.user_id = ANY(players) AND w.week = award_week
              ORDER BY w.user_id FOR UPDATE;
            UPDATE leaderboard_playerweektotal w SET points = w.points + g.p
              FROM (SELECT u, sum(p) AS p FROM unnest(award_users, award_points) x(u, p) GROUP BY u) g
             WHERE w.user_id = g.u AND w.week = award_week;
        END IF;
    END IF;

    -- Only a dropped vote can push a player over the share: then the counts of the player's latest
    -- votes, for labeling.consensus.OutlierFlagRule.due (decided, and the flag set, by the caller).
    IF new_counts AND NOT already_flagged AND NOT kept THEN
        SELECT count(*), count(*) FILTER (WHERE NOT r.kept) INTO flag_recent, flag_dropped
          FROM (SELECT v.kept FROM labeling_vote v WHERE v.voter_id = voter ORDER BY v.created_at DESC LIMIT flag_window) r;
    END IF;
    status := 201;
END $$;
"""



OLD_FUNCTIONS = (
    "labeling_cast_vote(bigint, bigint, int, timestamptz, int, float8, float8, int, int, float8, text)",
    "labeling_consensus(int[], int, float8, float8)",
)


def replace_functions(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # other databases (SQLite in development) keep the Python path
    for signature in OLD_FUNCTIONS:
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {signature}")
    for sql in (CONSENSUS_FUNCTION, POINTS_FUNCTION, CAST_VOTE_FUNCTION):
        schema_editor.execute(sql, params=None)  # no placeholders: `%` is modulo here


def restore_version_1(apps, schema_editor):
    """Back to 0003: drop these and create 0003's functions again."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        "DROP FUNCTION IF EXISTS labeling_cast_vote(bigint, bigint, int, timestamptz, int, float8, float8, int, "
        "float8[], bool[], int[], int, text, text[], text[], int, text)"
    )
    schema_editor.execute("DROP FUNCTION IF EXISTS labeling_points_for_error(float8, float8[], bool[], int[], int)")
    schema_editor.execute("DROP FUNCTION IF EXISTS labeling_consensus(int[], int, float8, float8)")
    import_module("labeling.migrations.0003_cast_vote_function").create_functions(apps, schema_editor)


class Migration(migrations.Migration):

    dependencies = [("labeling", "0003_cast_vote_function")]

    operations = [migrations.RunPython(replace_functions, restore_version_1)]
