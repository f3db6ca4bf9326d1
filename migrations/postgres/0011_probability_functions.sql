-- The probabilities of `GET /api/v1/probability` in SQL, for dashboards: the same formulas as
-- `consumers/src/forecast/touch.rs`, term for term, so a Grafana panel shows what the API says.

-- The complementary error function (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
create or replace function tickcast_erfc(x double precision) returns double precision
language sql immutable strict parallel safe as $$
    select case when x >= 0 then r else 2 - r end
    from (
        select t * exp(-z * z - 1.26551223
                       + t * (1.00002368
                       + t * (0.37409196
                       + t * (0.09678418
                       + t * (-0.18628806
                       + t * (0.27886807
                       + t * (-1.13520398
                       + t * (1.48851587
                       + t * (-0.82215223 + t * 0.17087277))))))))) as r
        -- Beyond 26 the result is below 1e-294 either way; capped there, exp never underflows
        -- (which Postgres reports as an error).
        from (select 1 / (1 + 0.5 * least(abs(x), 26)) as t, least(abs(x), 26) as z) a
    ) b
$$;

-- The standard normal distribution function.
create or replace function tickcast_norm_cdf(x double precision) returns double precision
language sql immutable strict parallel safe as $$
    select 0.5 * tickcast_erfc(-x / sqrt(2::double precision))
$$;

-- The probability that the close is at or above `level`, from a forecast's nine quantiles
-- (levels 0.025 … 0.975): the normal score interpolated linearly in log price between them,
-- extended along the outer segments with width beyond them. NULL without usable quantiles
-- (a version 1 forecast has none) or for a level that is not positive.
create or replace function tickcast_probability_above(q double precision[], level double precision)
returns double precision
language plpgsql immutable parallel safe as $$
declare
    z constant double precision[] := array[
        -1.959963984540, -1.644853626951, -1.281551565545, -0.674489750196, 0,
        0.674489750196, 1.281551565545, 1.644853626951, 1.959963984540];
    x double precision[] := array[]::double precision[];
    y double precision;
    w double precision;
    s double precision;
    i int;
begin
    if q is null or level is null or not (level > 0 and level < 'Infinity')
       or coalesce(array_length(q, 1), 0) <> 9 then
        return null;
    end if;
    for i in 1..9 loop
        if q[i] is null or not (q[i] > 0 and q[i] < 'Infinity') or (i > 1 and q[i] < q[i - 1]) then
            return null;
        end if;
        x := x || ln(q[i]);
    end loop;
    y := ln(level);
    if x[1] = x[9] then
        return case when y <= x[1] then 1 else 0 end;
    end if;
    if y < x[1] then
        for i in 1..8 loop
            w := x[i + 1] - x[i];
            if w > 0 then s := z[i] + (y - x[i]) / w * (z[i + 1] - z[i]); exit; end if;
        end loop;
    elsif y > x[9] then
        for i in reverse 8..1 loop
            w := x[i + 1] - x[i];
            if w > 0 then s := z[i] + (y - x[i]) / w * (z[i + 1] - z[i]); exit; end if;
        end loop;
    else
        for i in 1..8 loop
            w := x[i + 1] - x[i];
            if x[i] <= y and y <= x[i + 1] and w > 0 then
                s := z[i] + (y - x[i]) / w * (z[i + 1] - z[i]);
                exit;
            end if;
        end loop;
        if s is null then
            -- On quantiles of zero width: what lies at or above starts at the lowest of them.
            for i in 1..9 loop
                if x[i] = y then s := z[i]; exit; end if;
            end loop;
        end if;
    end if;
    return 1 - tickcast_norm_cdf(s);
end
$$;

-- The probability that the price reaches `level` before a forecast's target bar closes: the
-- reflection principle on its drift ln(point / last) and spread ln(hi95 / point) / z95, then
-- its touch calibration p = sigmoid(alpha + beta * logit p0) when it has one. NULL without a
-- usable 95% band.
create or replace function tickcast_probability_touch(
    last double precision, point double precision, hi95 double precision,
    alpha double precision, beta double precision, level double precision)
returns double precision
language plpgsql immutable parallel safe as $$
declare
    mu double precision;
    s double precision;
    a double precision;
    e double precision;
    p double precision;
begin
    if last is null or point is null or hi95 is null or level is null
       or not (last > 0 and point > 0 and level > 0) or not (hi95 / point > 1)
       or not (hi95 / point < 'Infinity') then
        return null;
    end if;
    mu := ln(point / last);
    s := ln(hi95 / point) / 1.959963984540;
    a := ln(level / last);
    if a = 0 then
        p := 1;
    else
        if a < 0 then a := -a; mu := -mu; end if;
        e := 2 * a * mu / (s * s);
        p := tickcast_norm_cdf((mu - a) / s)
             + case when e > 700 then 1 when e < -700 then 0
                    else exp(e) * tickcast_norm_cdf((-a - mu) / s) end;
        p := least(greatest(p, 0), 1);
    end if;
    if p = 0 or p = 1 or alpha is null or beta is null then
        return p;
    end if;
    p := least(greatest(p, 1e-4), 1 - 1e-4);
    e := -(alpha + beta * ln(p / (1 - p)));
    return case when e > 700 then 0 when e < -700 then 1 else 1 / (1 + exp(e)) end;
end
$$;
