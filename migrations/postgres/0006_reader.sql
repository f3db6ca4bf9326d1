-- A read-only role for dashboards and ad-hoc queries (Grafana's datasource logs in as a member
-- of it): SELECT on every table tickcast has made or makes later in this schema, nothing else.
-- It cannot log in itself; grant it to a login role (docker compose does, see
-- monitoring/postgres/initdb/10-reader.sh; elsewhere docs/production.md). Roles belong to the
-- whole server: the role is made once and shared by every tickcast database on it. Where the
-- migrating user may not create roles (some managed services), the migration says so and goes
-- on; an administrator makes the role and runs the grants below.
do $$
begin
    if not exists (select from pg_roles where rolname = 'tickcast_reader') then
        begin
            create role tickcast_reader nologin;
        exception
            -- Another database's migration made it meanwhile.
            when duplicate_object or unique_violation then null;
            when insufficient_privilege then
                raise notice 'tickcast_reader not made: % may not create roles', current_user;
                return;
        end;
    end if;
    execute format('grant usage on schema %I to tickcast_reader', current_schema());
    execute format('grant select on all tables in schema %I to tickcast_reader', current_schema());
    execute format(
        'alter default privileges in schema %I grant select on tables to tickcast_reader',
        current_schema()
    );
end
$$;
